"""The Custom Environment, run for real through the engine and the bash managers on this
machine: each task in a replica of a whole tree, its changes found and collected exactly.

The Airflow layer is tested in tests/e2e/test_custom_environment_dag.py, the SSH and SLURM
modes in tests/cluster_e2e/test_custom_environment_cluster.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from airflow_provider_locusts.swarm.engine import EngineOptions, SwarmEngine
from airflow_provider_locusts.swarm.environment import build_environment_spec
from airflow_provider_locusts.swarm.errors import SwarmNoSpaceError
from airflow_provider_locusts.swarm.shell import LocalShell

from tests.support.trees import HOSTILE_NAMES, change_lists, files_below, fingerprint, make_tree, read_manifest

TREE_FILES = {
    "conf/app.ini": "greeting=hello\n",
    "db/big.db": os.urandom(64 * 1024),
    "db/index/part.idx": "index\n",
    "logs/run.log": "start\n",
    "results/old.txt": "old\n",
    "results/keep.txt": "keep\n",
    "README": "the tree\n",
}
TREE_FOLDERS = ("done", "inbox", "results/empty")
WRITABLE = ["results", "logs", "done", "inbox"]


def make_inputs(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"item_{i}.txt").write_text(f"item {i}\n")
    return folder


def environment_engine(tmp_path: Path, command: str, n: int = 6, processes: int = 2, tree: Path | None = None, **kwargs) -> SwarmEngine:
    tree = tree or make_tree(tmp_path / "tree", TREE_FILES, TREE_FOLDERS)
    spec = build_environment_spec(
        environment_dir=tree,
        writable=kwargs.pop("writable", WRITABLE),
        workdir=kwargs.pop("workdir", "."),
        inputs_dir=kwargs.pop("inputs_dir", "inbox"),
        command=command,
        output_dir=tmp_path / "out",
        input_dir=kwargs.pop("input_dir", None) or make_inputs(tmp_path / "in", n),
        task_inputs=kwargs.pop("task_inputs", ["item_<id>.txt"]),
        outputs=kwargs.pop("outputs", None),
        processes=processes,
    )
    options = EngineOptions(heartbeat_interval=1, **kwargs)
    return SwarmEngine(spec, "env", str(tmp_path / "root"), LocalShell(), options)


# Each task reads its config, writes a result, appends to a log, moves its input into done/,
# and (task 2 only) deletes a file and makes a nested folder of results.
PROGRAM = (
    "cat conf/app.ini inbox/item_<id>.txt > results/out_<id>.txt; "
    'echo "task <id>" >> logs/run.log; '
    "mv inbox/item_<id>.txt done/; "
    "if [ <id> = 2 ]; then rm results/old.txt; mkdir -p results/deep/er; echo d > results/deep/er/x.txt; fi"
)


def test_created_modified_and_deleted_files_are_reported_exactly_and_collected(tmp_path, run_swarm_round):
    engine = environment_engine(tmp_path, PROGRAM, n=12, processes=3, outputs=["results/out_<id>.txt"])
    before = fingerprint(tmp_path / "tree")
    round_ = engine.prepare_round()
    run_swarm_round(engine, round_)
    result = engine.gather()

    assert result.failed == []
    assert result.succeeded == [str(i) for i in range(12)]
    manifest = read_manifest(result.manifest)
    out = tmp_path / "out"
    for i in range(12):
        entry = manifest[str(i)]
        created = [f"done/item_{i}.txt", f"results/out_{i}.txt"] + (["results/deep/er/x.txt"] if i == 2 else [])
        assert change_lists(entry) == {
            "created": sorted(created),
            "modified": ["logs/run.log"],
            "deleted": [f"inbox/item_{i}.txt"] + (["results/old.txt"] if i == 2 else []),
        }
        # Each task started from a clean replica, whichever replica of the pool it had: the
        # log holds the tree's line and its own, never another task's.
        assert files_below(out / f"task_{i}") == {
            f"results/out_{i}.txt": f"greeting=hello\nitem {i}\n".encode(),
            "logs/run.log": f"start\ntask {i}\n".encode(),
            f"done/item_{i}.txt": f"item {i}\n".encode(),
            **({"results/deep/er/x.txt": b"d\n"} if i == 2 else {}),
        }
        assert sorted(entry["outputs"]) == sorted(str(out / f"task_{i}" / p) for p in created + ["logs/run.log"])
    assert fingerprint(tmp_path / "tree") == before  # the user's tree, untouched

    # Replicas were reused: at most one per task running at once, each back in the pool.
    pool = list((tmp_path / "root" / "environment" / "pool").iterdir())
    assert 1 <= len(pool) <= 3
    assert not list((tmp_path / "root" / "work").glob("batch_0/*/replica"))


def test_a_task_writing_into_the_read_only_part_fails_naming_the_file_and_a_retry_repairs_the_tree(tmp_path, run_swarm_round):
    """Tasks run as root here, where permissions stop nothing: the change is detected after the
    task. Task 2 adds a file to a read-only folder of its own replica (only it fails); task 3
    rewrites a file every replica shares (it fails, and so do the tasks that start after it,
    on a changed tree). The next try stages the tree again and runs only the failed tasks."""
    assert os.geteuid() == 0 or pytest.skip("shows detection where permissions stop nothing: runs as root")
    counters = tmp_path / "counters"
    counters.mkdir()
    command = (
        f"echo run >> {counters}/<id>; "
        f"if [ ! -e {counters}/<id>.tried ]; then touch {counters}/<id>.tried; "
        "  case <id> in 2) echo new > conf/extra.ini;; 3) echo changed >> conf/app.ini;; 1) chmod g+w db/big.db;; esac; fi; "
        "cat conf/app.ini > results/out_<id>.txt"
    )
    engine = environment_engine(tmp_path, command, n=6, processes=1)
    before = fingerprint(tmp_path / "tree")
    run_swarm_round(engine, engine.prepare_round())
    result = engine.gather()

    assert result.succeeded == ["0"]
    reasons = result.reasons
    assert reasons["1"] == (
        "changed the read-only part of the tree: modified db/big.db (a file every task shares: this task, or one "
        "running at the same time, changed it)"
    )  # a chmod: the file's mode, not its bytes
    assert reasons["3"] == (
        "ran on a changed tree: the shared read-only part had changed before it started (another task of the swarm "
        "changed it): modified db/big.db; changed the read-only part of the tree: modified conf/app.ini (a file every "
        "task shares: this task, or one running at the same time, changed it)"
    )
    assert reasons["2"] == (
        "ran on a changed tree: the shared read-only part had changed before it started (another task of the swarm "
        "changed it): modified db/big.db; changed the read-only part of the tree: created conf/extra.ini"
    )
    for i in ("4", "5"):
        assert reasons[i] == (
            "ran on a changed tree: the shared read-only part had changed before it started (another task of the swarm "
            "changed it): modified conf/app.ini, modified db/big.db"
        )
    manifest = read_manifest(result.manifest)
    assert manifest["2"]["changes"]["read_only_changed"] == {"conf/extra.ini": "created"}
    assert manifest["3"]["changes"]["read_only_changed"] == {"conf/app.ini": "modified"}
    assert manifest["3"]["changes"]["read_only_changed_before"] == {"db/big.db": "modified"}
    assert not (tmp_path / "out" / "task_2").exists()  # a failed task's changes are not collected
    # Task 2's replica stays in its folder, for inspection; the others went back to the pool.
    assert (tmp_path / "root" / "work" / "batch_0" / "task_2" / "replica" / "conf" / "extra.ini").exists()
    assert fingerprint(tmp_path / "tree") == before

    retry = environment_engine(tmp_path, command, n=6, processes=1, tree=tmp_path / "tree", input_dir=tmp_path / "in")
    round_ = retry.prepare_round()
    assert round_.task_count == 5
    run_swarm_round(retry, round_)
    second = retry.gather()
    assert second.failed == []
    runs = {i: (counters / str(i)).read_text().count("run") for i in range(6)}
    assert runs == {0: 1, 1: 2, 2: 2, 3: 2, 4: 2, 5: 2}
    for i in range(6):
        assert (tmp_path / "out" / f"task_{i}" / "results" / f"out_{i}.txt").read_text() == "greeting=hello\n"
    assert fingerprint(tmp_path / "tree") == before


def test_hostile_file_names_inside_the_tree(tmp_path, run_swarm_round):
    names = HOSTILE_NAMES
    files = {f"conf/{n}": f"conf {n}\n" for n in names}
    files.update({f"results/{n}": f"old {n}\n" for n in names})
    tree = make_tree(tmp_path / "tree", files, ("done", "inbox", "logs", "results/-dash dir"))
    before = fingerprint(tree)
    # Task 0 rewrites every results/<name>, deletes one, and writes a new file named after each
    # conf/<name>: the names reach the program only as data (find -print0 | xargs -0).
    program = (
        "find results -maxdepth 1 -type f -print0 | xargs -0 -I{} sh -c 'echo new >> \"$1\"' sh {}; "
        "rm -- 'results/with space.txt'; "
        "find conf -type f -print0 | xargs -0 -I{} sh -c 'cp -- \"$1\" \"results/-dash dir/${1#conf/}.copy\"' sh {}; "
        "echo ok > results/out_<id>.txt"
    )
    engine = environment_engine(tmp_path, program, n=1, processes=1, tree=tree)
    run_swarm_round(engine, engine.prepare_round())
    result = engine.gather()

    assert result.failed == []
    changes = change_lists(read_manifest(result.manifest)["0"])
    assert changes["deleted"] == ["results/with space.txt"]  # its input stayed as it was placed: no change
    assert changes["modified"] == sorted(f"results/{n}" for n in names if n != "with space.txt")
    assert changes["created"] == sorted([f"results/-dash dir/{n}.copy" for n in names] + ["results/out_0.txt"])
    collected = files_below(tmp_path / "out" / "task_0")
    assert collected == {
        **{f"results/{n}": f"old {n}\nnew\n".encode() for n in names if n != "with space.txt"},
        **{f"results/-dash dir/{n}.copy": f"conf {n}\n".encode() for n in names},
        "results/out_0.txt": b"ok\n",
    }
    assert not list(tmp_path.rglob("PWNED*")) and not list(Path("/").glob("PWNED*"))
    assert fingerprint(tree) == before


def test_links_a_task_makes_are_never_followed_when_collecting(tmp_path, run_swarm_round):
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched\n")
    tree = make_tree(tmp_path / "tree", TREE_FILES, TREE_FOLDERS, links={"conf/hosts": "/etc/hosts", "conf/app-link": "app.ini"})
    before = fingerprint(tree)
    program = (
        "ln -s /etc/passwd results/x; ln -s ../../.. results/y; ln -s /etc results/etc; "
        # Links in the task's own folder, where the collection is prepared.
        f'ln -s /etc "$LOCUSTS_TREE/../changes"; ln -sf {victim} "$LOCUSTS_TREE/../changes.nul"; '
        "mkdir results/sub && echo real > results/sub/real.txt; "
        "cat conf/hosts > results/hosts.copy"
    )
    engine = environment_engine(tmp_path, program, n=1, processes=1, tree=tree)
    run_swarm_round(engine, engine.prepare_round())
    result = engine.gather()

    assert result.failed == []
    changes = change_lists(read_manifest(result.manifest)["0"])
    assert changes["created"] == ["results/etc", "results/hosts.copy", "results/sub/real.txt", "results/x", "results/y"]
    assert changes["not_collected"] == {
        "results/etc": "symbolic link to /etc",
        "results/x": "symbolic link to /etc/passwd",
        "results/y": "symbolic link to ../../..",
    }
    assert files_below(tmp_path / "out" / "task_0") == {
        "results/hosts.copy": Path("/etc/hosts").read_bytes(),  # read by the task itself, through the tree's link
        "results/sub/real.txt": b"real\n",
    }
    assert victim.read_text() == "untouched\n"
    assert fingerprint(tree) == before


def test_the_collector_reads_nothing_through_a_link_planted_in_a_task_folder(tmp_path, run_swarm_round):
    """A process the task left behind replaces changes/results by a link to /etc after the task
    ended: gathering refuses it (the task fails, saying so) and reads nothing from /etc."""
    engine = environment_engine(tmp_path, "echo mine > results/passwd", n=1, processes=1)
    run_swarm_round(engine, engine.prepare_round())
    folder = tmp_path / "root" / "work" / "batch_0" / "task_0"
    (folder / "changes" / "results" / "passwd").unlink()
    (folder / "changes" / "results").rmdir()
    os.symlink("/etc", folder / "changes" / "results")
    result = engine.gather()

    assert result.failed == ["0"]
    assert result.reasons["0"] == "results/passwd not collected: it leads through a symbolic link in the task's folder"
    assert not (tmp_path / "out" / "task_0" / "results" / "passwd").exists()


def test_each_attempt_and_each_rescheduled_task_runs_in_a_fresh_replica(tmp_path, run_swarm_round):
    """task_retries: the second attempt does not see what the first wrote. A manager killed with
    SIGKILL mid-task (its replica left read-only, half-changed): the rescheduled task starts clean."""
    gate = tmp_path / "gate"
    command = (
        'echo "attempt" >> logs/run.log; '
        f"if [ <id> = 1 ] && [ ! -e {tmp_path}/failed-once ]; then touch {tmp_path}/failed-once; exit 3; fi; "
        f"if [ <id> = 4 ]; then touch {tmp_path}/4-started; while [ ! -e {gate} ]; do sleep 0.1; done; fi; "
        "cat logs/run.log > results/out_<id>.txt"
    )
    engine = environment_engine(tmp_path, command, n=6, processes=2, task_retries=1)
    round_ = engine.prepare_round()
    engine.start(round_)
    deadline = time.monotonic() + 60
    while not (tmp_path / "4-started").exists():
        assert time.monotonic() < deadline, "task 4 never started"
        time.sleep(0.1)
    pid = int((tmp_path / "root" / "exec" / "pid_r0m0").read_text().split()[0])
    os.killpg(pid, signal.SIGKILL)  # the manager and its tasks: no trap runs
    replica = tmp_path / "root" / "work" / "batch_0" / "task_4" / "replica"
    assert (replica / "conf").stat().st_mode & 0o222 == 0  # left read-only: no trap ran
    engine.cancel(["r0m0"])
    gate.touch()

    retry = SwarmEngine.attach(str(tmp_path / "root"), LocalShell())
    again = retry.reschedule(["r0m0"])
    assert again is not None and again.task_count >= 1
    run_swarm_round(retry, again)
    result = retry.gather()
    assert result.failed == []
    for i in range(6):
        # One line from the tree, one from its own (last) attempt: no earlier attempt's line.
        assert (tmp_path / "out" / f"task_{i}" / "results" / f"out_{i}.txt").read_text() == "start\nattempt\n"
    assert read_manifest(result.manifest)["1"]["attempts"] == 2


def test_a_tree_the_replicas_would_not_fit_is_refused_with_the_figures(tmp_path):
    assert os.geteuid() == 0 or pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "locusts-test", str(small)], check=True)
    try:
        tree = make_tree(tmp_path / "tree", {"db/big.db": os.urandom(1_500_000), "results/r.dat": os.urandom(600_000)}, ("inbox",))
        spec = build_environment_spec(
            environment_dir=tree, writable=["results", "inbox"], workdir=".", inputs_dir="inbox", command="true",
            output_dir=tmp_path / "out", args=[[i] for i in range(8)], processes=4,
        )
        engine = SwarmEngine(spec, "env", str(small / "root"), LocalShell(), EngineOptions(heartbeat_interval=1))
        with pytest.raises(SwarmNoSpaceError) as error:
            engine.prepare_round()
        message = str(error.value)
        assert str(small / "root") in message and "nothing was started" in message
        assert "1 copy of the tree, 2.0 MB" in message and "4 replica(s) at once of 0.6 MB" in message
        assert "about 4.4 MB and" in message and "4.0 MB and" in message  # needed, free
        assert not (small / "root").exists()
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_the_same_swarm_with_another_tree_is_refused(tmp_path, run_swarm_round):
    engine = environment_engine(tmp_path, "echo x > results/out_<id>.txt; [ <id> != 1 ]", n=3, processes=1)
    run_swarm_round(engine, engine.prepare_round())
    assert engine.gather().failed == ["1"]
    (tmp_path / "tree" / "conf" / "app.ini").write_text("changed by the user\n")
    retry = environment_engine(tmp_path, "echo x > results/out_<id>.txt", n=3, processes=1, tree=tmp_path / "tree", input_dir=tmp_path / "in")
    with pytest.raises(Exception, match="changed since this swarm started"):
        retry.prepare_round()
    ledger = json.loads((tmp_path / "root" / "exec" / "ledger.json").read_text())
    assert len(ledger["rounds"]) == 1


def test_a_whole_writable_tree_and_a_task_folder_already_in_output_dir(tmp_path, run_swarm_round):
    out = tmp_path / "out"
    (out / "task_1").mkdir(parents=True)
    (out / "task_1" / "mine.txt").write_text("the user's\n")
    engine = environment_engine(tmp_path, "echo more >> conf/app.ini; rm README; mv inbox/item_<id>.txt .",
                                n=2, writable=["."], inputs_dir="inbox")
    with pytest.raises(Exception, match=r"output_dir already holds .*/out/task_1, where task '1'"):
        engine.prepare_round()
    assert not (tmp_path / "root").exists()  # refused before anything was staged

    (out / "task_1" / "mine.txt").unlink()
    (out / "task_1").rmdir()
    run_swarm_round(engine, engine.prepare_round())
    result = engine.gather()
    assert result.failed == []
    for i in range(2):
        assert change_lists(read_manifest(result.manifest)[str(i)]) == {
            "created": [f"item_{i}.txt"], "modified": ["conf/app.ini"], "deleted": ["README", f"inbox/item_{i}.txt"],
        }
        assert files_below(out / f"task_{i}") == {"conf/app.ini": b"greeting=hello\nmore\n", f"item_{i}.txt": f"item {i}\n".encode()}
