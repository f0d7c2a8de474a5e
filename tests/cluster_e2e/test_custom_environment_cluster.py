"""The Custom Environment on the test cluster (sshd + SLURM on loopback), with dag.test(): SSH copy
mode on SLURM (the tree sent once, replicas made on the host), remote-shared mode, and
output_dir on the host. Tasks run there as the unprivileged `locusts`, where write permission
removed from the read-only part stops a write outright."""

from __future__ import annotations

import json
import shlex
from datetime import timedelta
from pathlib import Path

import pytest
from airflow.sdk import DAG

from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator

from tests.support.trees import HOSTILE_NAMES, change_lists, files_below, fingerprint, make_tree, read_manifest

from .conftest import CONN_ID
from .helpers import START

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

NAMES = [n for n in HOSTILE_NAMES if "\n" not in n] + ["new\nline.txt"]


def make_environment(tmp_path: Path, n: int) -> tuple[Path, Path]:
    tree = make_tree(
        tmp_path / "tree",
        {"conf/app.ini": "greeting=hello\n", "logs/run.log": "start\n", "results/old.txt": "old\n",
         **{f"conf/{name}": f"conf {name}\n" for name in NAMES}},
        ("done", "inbox", "results/sub"),
    )
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(n):
        (inputs / f"item_{i}.txt").write_text(f"item {i}\n")
    return tree, inputs


def environment_operator(tmp_path: Path, tree: Path, inputs: Path, command: str, **kwargs) -> LocustsSwarmOperator:
    return LocustsSwarmOperator(
        task_id="swarm",
        deferrable=True,
        command=command,
        input_dir=str(inputs),
        task_inputs=["item_<id>.txt"],
        environment_dir=str(tree),
        environment_writable=["results", "logs", "done", "inbox"],
        environment_inputs_dir="inbox",
        output_dir=kwargs.pop("output_dir", str(tmp_path / "out")),
        work_root=str(tmp_path / "staging"),
        ssh_conn_id=CONN_ID,
        poll_interval=0.5,
        **kwargs,
    )


PROGRAM = (
    "cat conf/app.ini inbox/item_<id>.txt > results/out_<id>.txt; "
    'echo "task <id>" >> logs/run.log; '
    "mv inbox/item_<id>.txt done/; "
    # Task 1 copies every conf file (hostile names) and deletes one; task 2 makes links.
    "if [ <id> = 1 ]; then for f in conf/*; do cp -- \"$f\" \"results/sub/${f#conf/}\"; done; rm results/old.txt; fi; "
    "if [ <id> = 2 ]; then ln -s /etc/passwd results/x; ln -s ../../.. results/y; fi; "
    # Task 3 tries to change the read-only config: refused, it is not its account's to write.
    "if [ <id> = 3 ]; then echo changed >> conf/app.ini || exit 4; fi"
)


def check_program_results(summary: dict, out_of, tree_before: dict, tree: Path) -> dict:
    """What PROGRAM's 5 tasks must have done; `out_of(i)` gives task i's collected files."""
    # Of the 5 tasks, 3 alone failed (the return value names the failed ones; the lists are under their own keys).
    assert (summary["total"], summary["succeeded_count"], summary["failed_first"]) == (5, 4, ["3"])
    assert summary["reasons"]["3"] == "exit code 4"
    manifest = read_manifest(summary["manifest"])
    for i in (0, 1, 2, 4):
        created = [f"done/item_{i}.txt", f"results/out_{i}.txt"]
        created += [f"results/sub/{n}" for n in NAMES + ["app.ini"]] if i == 1 else []
        created += ["results/x", "results/y"] if i == 2 else []
        changes = change_lists(manifest[str(i)])
        assert changes["created"] == sorted(created)
        assert changes["modified"] == ["logs/run.log"]
        assert changes["deleted"] == sorted([f"inbox/item_{i}.txt"] + (["results/old.txt"] if i == 1 else []))
        expected = {
            f"results/out_{i}.txt": f"greeting=hello\nitem {i}\n".encode(),
            f"done/item_{i}.txt": f"item {i}\n".encode(),
            "logs/run.log": f"start\ntask {i}\n".encode(),
        }
        if i == 1:
            expected.update({f"results/sub/{n}": f"conf {n}\n".encode() for n in NAMES})
            expected["results/sub/app.ini"] = b"greeting=hello\n"
        if i == 2:
            assert changes["not_collected"] == {"results/x": "symbolic link to /etc/passwd", "results/y": "symbolic link to ../../.."}
        assert out_of(i) == expected
    # Task 3: the write was refused (nothing changed), so the task failed on its own exit code.
    assert manifest["3"]["changes"]["modified"] == ["logs/run.log"]
    assert "read_only_changed" not in manifest["3"]["changes"]
    assert fingerprint(tree) == tree_before
    return manifest


def test_ssh_copy_mode_on_slurm_sends_the_tree_once_and_collects_every_change(cluster, run_dag, tmp_path, remote_root, swarm_guard):
    swarm_guard.watch(swarm_id="cluster_environment_slurm")
    tree, inputs = make_environment(tmp_path, 5)
    before = fingerprint(tree)
    marker_dir = cluster.ssh("mktemp -d").stdout.strip()  # the host account's, for task 4's first failure
    command = PROGRAM + f"; if [ <id> = 4 ] && [ ! -e {marker_dir}/once ]; then touch {marker_dir}/once; exit 9; fi"
    with DAG("cluster_environment_slurm", schedule=None, start_date=START, catchup=False) as dag:
        environment_operator(
            tmp_path, tree, inputs, command, remote_root=remote_root, scheduler="slurm", processes=2,
            slurm_options={"cpus_per_task": 1}, max_failed_fraction=0.25, retries=1, retry_delay=timedelta(seconds=0),
        )
    try:
        result = run_dag(dag)
    finally:
        cluster.ssh(f"rm -rf -- {shlex.quote(marker_dir)}", check=False)

    assert result.task_states() == {"swarm": "success"}
    assert result.try_number("swarm") == 2  # task 4 failed on the first try (more than 25 %)
    summary = result.xcom("swarm")
    out = Path(summary["output_dir"])
    check_program_results(summary, lambda i: files_below(out / f"task_{i}"), before, tree)

    root = Path(remote_root) / summary["swarm_id"]
    # SLURM ran the managers; the tree was sent and sealed once: the second try found it sealed.
    assert all(cluster.job_state(j) == "COMPLETED" for j in cluster.ssh(f"cat {root}/exec/jobid_*").stdout.split())
    rounds = json.loads((root / "exec" / "ledger.json").read_text())["rounds"]
    assert [r["tasks"] for r in rounds] == [5, 2]  # the second try: tasks 3 and 4
    assert (root / "environment" / "sealed").stat().st_mtime < rounds[1]["prepared_at"]
    assert not (root / "environment" / "incoming").exists()
    # Read-only files are shared (hard links), not copied per task; no replica is left in a task folder.
    shared_file = root / "environment" / "shared" / "conf" / "app.ini"
    assert shared_file.stat().st_mode & 0o222 == 0 and shared_file.read_text() == "greeting=hello\n"
    assert shared_file.stat().st_uid == int(cluster.ssh("id -u").stdout)
    assert not list(root.glob("work/batch_0/*/replica"))
    assert 1 <= len(list((root / "environment" / "pool").iterdir())) <= 2
    stderr = cluster.ssh(f"cat {root}/work/batch_0/task_3/stderr.txt").stdout
    assert "conf/app.ini: Permission denied" in stderr


def test_remote_shared_mode_runs_the_replicas_in_the_shared_folder(cluster, run_dag, tmp_path, shared_root):
    tree, inputs = make_environment(tmp_path, 5)
    before = fingerprint(tree)
    with DAG("cluster_environment_shared", schedule=None, start_date=START, catchup=False) as dag:
        environment_operator(
            tmp_path, tree, inputs, PROGRAM, remote_root=str(shared_root), shared_root=str(shared_root), processes=3,
            max_failed_fraction=0.25,
        )
    result = run_dag(dag)

    assert result.task_states() == {"swarm": "success"}
    summary = result.xcom("swarm")
    out = Path(summary["output_dir"])
    check_program_results(summary, lambda i: files_below(out / f"task_{i}"), before, tree)
    root = shared_root / summary["swarm_id"]
    # Staged here (as this account), sealed there: the host's account made its own copy to link.
    locusts_uid = int(cluster.ssh("id -u").stdout)
    assert (root / "environment" / "shared" / "conf" / "app.ini").stat().st_uid == locusts_uid
    assert not (root / "environment" / "incoming").exists()
    assert not (tmp_path / "staging").exists()  # nothing copied over SSH


def test_output_dir_on_the_host_collects_the_changes_there(cluster, run_dag, tmp_path, remote_root):
    tree, inputs = make_environment(tmp_path, 5)
    before = fingerprint(tree)
    host_out = f"{remote_root}-out"
    with DAG("cluster_environment_host_out", schedule=None, start_date=START, catchup=False) as dag:
        environment_operator(
            tmp_path, tree, inputs, PROGRAM, remote_root=remote_root, output_dir=host_out, output_dir_on_host=True,
            processes=2, max_failed_fraction=0.25,
        )
    try:
        result = run_dag(dag)
        assert result.task_states() == {"swarm": "success"}
        summary = result.xcom("swarm")
        assert summary["output_dir"] == host_out
        check_program_results(summary, lambda i: files_below(Path(host_out) / f"task_{i}"), before, tree)
        assert not (tmp_path / "out").exists()
        owner = {p.stat().st_uid for p in Path(host_out).rglob("*")}
        assert owner == {int(cluster.ssh("id -u").stdout)}  # moved there by the host's account
    finally:
        cluster.ssh(f"rm -rf -- {shlex.quote(host_out)}", check=False)



def test_a_task_cut_off_with_its_manager_runs_again_in_a_fresh_replica(cluster, tmp_path, remote_root, stand_in_context):
    """The manager and its tasks are killed with SIGKILL on the host (no trap runs: the replicas
    of the two running tasks stay half-changed, their read-only folders without write
    permission, owned by the unprivileged account). The reschedule removes them on the host
    and the two tasks run again, each in a fresh replica."""
    from airflow.sdk.exceptions import TaskDeferred

    from .conftest import wait_until
    from .test_any_worker import run_trigger

    tree, inputs = make_environment(tmp_path, 4)
    gate = f"{remote_root}-gate"
    command = (
        'echo attempt >> logs/run.log; '
        f"case <id> in 0|1) touch {remote_root}-started-<id>; while [ ! -e {gate} ]; do sleep 0.2; done;; esac; "
        "cat logs/run.log > results/out_<id>.txt"
    )

    def operator():
        return environment_operator(tmp_path, tree, inputs, command, remote_root=remote_root, processes=2,
                                    swarm_id="environment-cut", heartbeat_interval=1, heartbeat_timeout=20)

    context = stand_in_context("environment_cut")
    try:
        with pytest.raises(TaskDeferred) as deferred:
            operator().execute(context)
        root = f"{remote_root}/environment-cut"
        wait_until(lambda: cluster.ssh(f"ls {remote_root}-started-* 2>/dev/null | wc -l").stdout.strip() == "2", 60,
                   what="tasks 0 and 1 running")
        pid = cluster.ssh(f"cut -d' ' -f1 {root}/exec/pid_r0m0").stdout.strip()
        cluster.ssh(f"kill -KILL -- -{pid}")
        assert cluster.ssh(f"stat -c %a {root}/work/batch_0/task_0/replica/conf").stdout.strip() == "555"
        event = run_trigger(deferred.value.trigger)
        assert (event["status"], event["lost"]) == ("lost", ["r0m0"])

        with pytest.raises(TaskDeferred) as deferred:
            operator().execute_complete(context, event)
        cluster.ssh(f"touch {gate}")
        event = run_trigger(deferred.value.trigger)
        assert event["status"] == "finished"
        summary = operator().execute_complete(context, event)
    finally:
        cluster.ssh(f"rm -rf -- {gate} {remote_root}-started-*", check=False)

    assert context["ti"].xcoms["succeeded"] == ["0", "1", "2", "3"], summary["reasons"]
    for i in range(4):
        # The tree's line and one attempt's: the killed attempt's line did not survive.
        assert (tmp_path / "out" / f"task_{i}" / "results" / f"out_{i}.txt").read_text() == "start\nattempt\n"
