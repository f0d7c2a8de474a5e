"""cleanup=True for real, with bash and real files: the swarm root is renamed at once to a hidden
sibling (`.<swarm id>.removing-<10 letters or digits>`) and deleted by a detached process at low
priority that cleanup() does not wait for; a removal that was interrupted is finished by the next
cleanup in the same work root; anything that is not this swarm's root, or not an unfinished
removal of ours, is refused or left untouched.

A gate makes the background removal wait where it matters: an `rm` put first on PATH that, for
the task folders only, waits for a file the test creates (bounded), then runs the real rm."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from airflow_provider_locusts.swarm import engine as engine_module
from airflow_provider_locusts.swarm.engine import EngineOptions, SwarmEngine, remove_folder
from airflow_provider_locusts.swarm.errors import SwarmExecutionError
from airflow_provider_locusts.swarm.shell import CommandResult, LocalShell
from airflow_provider_locusts.swarm.spec import build_spec
from tests.support.processes import alive, proc_stat, wait_until

HIDDEN = re.compile(r"^\.(?P<name>.+)\.removing-[A-Za-z0-9]{10}$")
MARKER = ".locusts_removing"
REMOVAL_TIMEOUT = 60

GATED_RM = """#!/bin/bash
# Test double: waits for $LOCUSTS_TEST_GATE/open (at most 60 s) before removing the task
# folders of a folder being removed (only those: the managers' own rm go straight through).
for a; do
    case $a in
    *.removing-*/work/batch_*)
        echo "$$" >> "$LOCUSTS_TEST_GATE/pids"
        for ((i = 0; i < 600; i++)); do [ -e "$LOCUSTS_TEST_GATE/open" ] && break; sleep 0.1; done
        break ;;
    esac
done
exec /bin/rm "$@"
"""


def run_swarm(work_root: Path, swarm_id: str, run_swarm_round, tasks: int = 40) -> SwarmEngine:
    """A small swarm run and gathered for real in work_root/<swarm_id>, several batch folders."""
    spec = build_spec(command="echo <arg0> > o_<id>.txt", args=[[i] for i in range(tasks)], outputs=["o_<id>.txt"],
                      output_dir=work_root.parent / f"out-{swarm_id}", processes=2, batch_size=10)
    engine = SwarmEngine(spec, swarm_id, str(work_root / swarm_id), LocalShell(), EngineOptions(heartbeat_interval=1))
    run_swarm_round(engine, engine.prepare_round())
    result = engine.gather()
    assert len(result.succeeded) == tasks
    return engine


@pytest.fixture
def gate(tmp_path, monkeypatch):
    """The gated rm on PATH; gate.open() lets removals go on; gate.pids() the rm processes waiting."""
    folder = tmp_path / "gate"
    (folder / "bin").mkdir(parents=True)
    rm = folder / "bin" / "rm"
    rm.write_text(GATED_RM)
    rm.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("LOCUSTS_TEST_GATE", str(folder))

    class Gate:
        def open(self) -> None:
            (folder / "open").touch()

        def pids(self) -> list[int]:
            path = folder / "pids"
            return [int(p) for p in path.read_text().split()] if path.exists() else []

    yield Gate()
    (folder / "open").touch()  # nothing waits on it past the test


def entries(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under folder (links not followed) with what it is or holds."""
    found = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            found[rel] = "-> " + os.readlink(path)
        elif path.is_dir():
            found[rel] = "dir"
        else:
            found[rel] = path.read_text()
    return found


def nice_of(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])  # field 19 of stat(5), counted from the state (field 3)


def test_the_root_is_gone_when_cleanup_returns_and_a_detached_low_priority_process_deletes_it(
    tmp_path, run_swarm_round, gate
):
    swarms = tmp_path / "swarms"
    engine = run_swarm(swarms, "alpha", run_swarm_round)
    root = swarms / "alpha"

    began = time.monotonic()
    removal = engine.cleanup()
    took = time.monotonic() - began

    assert not root.exists()
    hidden = Path(removal.hidden)
    assert hidden.parent == swarms and HIDDEN.match(hidden.name).group("name") == "alpha"
    assert entries(swarms) == [hidden.name]
    assert (hidden / MARKER).read_text() == "locusts: removing alpha\nroot\n"
    assert not removal.in_place and removal.leftovers == 0
    assert "renamed to .alpha.removing-" in removal.line()
    # The deletion runs after cleanup() returned: it is held at the gate, in a session of its own, niced.
    pids = wait_until(gate.pids, 30, 0.05, "the background removal to reach the task folders")
    stat = proc_stat(pids[0])
    assert stat is not None and stat[3] != os.getsid(0)
    assert nice_of(pids[0]) == 19
    assert hidden.is_dir() and took < 10

    gate.open()
    wait_until(lambda: entries(swarms) == [], REMOVAL_TIMEOUT, 0.1, "the hidden root to be deleted")
    # The outputs were collected before: untouched.
    assert (tmp_path / "out-alpha" / "o_39.txt").read_text() == "39\n"


def test_an_interrupted_removal_is_finished_by_the_next_cleanup_in_the_same_work_root(tmp_path, run_swarm_round, gate):
    swarms = tmp_path / "swarms"
    first = run_swarm(swarms, "first", run_swarm_round)
    second = run_swarm(swarms, "second", run_swarm_round)

    removal = first.cleanup()
    pids = wait_until(gate.pids, 30, 0.05, "the background removal to reach the task folders")
    # The host "reboots" mid-removal: the remover's whole process group is killed.
    group = proc_stat(pids[0])[2]
    assert group != os.getpgid(0)
    os.killpg(group, signal.SIGKILL)
    wait_until(lambda: not any(alive(p) for p in gate.pids()), 30, 0.05, "the killed remover to be gone")
    leftover = Path(removal.hidden)
    assert (leftover / MARKER).is_file() and (leftover / "exec" / "ledger.json").is_file()
    assert (leftover / "work").is_dir()

    gate.open()
    again = second.cleanup()
    assert again.leftovers == 1
    assert "1 unfinished earlier removal(s)" in again.line()
    assert not (swarms / "second").exists()
    wait_until(lambda: entries(swarms) == [], REMOVAL_TIMEOUT, 0.1, "both hidden roots to be deleted")


def test_a_folder_not_named_after_the_swarm_or_without_the_ledger_is_refused_and_untouched(tmp_path, run_swarm_round):
    swarms = tmp_path / "swarms"
    engine = run_swarm(swarms, "real", run_swarm_round, tasks=4)
    spec = engine.spec

    # A swarm root, but named otherwise than the swarm: refused before anything runs.
    misnamed = SwarmEngine(spec, "other", str(swarms / "real"), LocalShell(), EngineOptions())
    with pytest.raises(SwarmExecutionError, match="not named after swarm other"):
        misnamed.cleanup()

    # Named after the swarm, but the user's own folder (no ledger, no task table).
    mine = swarms / "mine"
    (mine / "exec").mkdir(parents=True)
    (mine / "exec" / "tasks.jsonl").write_text("my data\n")
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(SwarmExecutionError, match="not a swarm root"):
        SwarmEngine(spec, "mine", str(mine), LocalShell(), EngineOptions()).cleanup()

    # A link named after the swarm, to a real swarm root: the link is not a root.
    (swarms / "linked").symlink_to(swarms / "real")
    with pytest.raises(SwarmExecutionError, match="not a swarm root"):
        SwarmEngine(spec, "linked", str(swarms / "linked"), LocalShell(), EngineOptions()).cleanup()

    # A path whose last component is an option-like name is never read as an option.
    dash = swarms / "-rf"
    dash.mkdir()
    with pytest.raises(SwarmExecutionError, match="not a swarm root"):
        SwarmEngine(spec, "-rf", str(dash), LocalShell(), EngineOptions()).cleanup()

    before = snapshot(swarms)
    assert entries(swarms) == ["-rf", "linked", "mine", "real"]
    assert before["mine/notes.txt"] == "keep me" and "real/exec/ledger.json" in before
    assert not any(MARKER in path for path in before)


def _leftover(folder: Path, marker: str | None, ledger: bool = True, more: bool = True) -> None:
    (folder / "exec").mkdir(parents=True)
    if marker is not None:
        (folder / MARKER).write_text(marker)
    if ledger:
        (folder / "exec" / "ledger.json").write_text('{"swarm_id": "x", "rounds": []}')
    if more:
        (folder / "work" / "batch_0" / "task_1").mkdir(parents=True)
        (folder / "work" / "batch_0" / "task_1" / "data.txt").write_text("data")


def test_only_unfinished_removals_of_ours_are_finished_and_the_users_similar_folders_are_untouched(
    tmp_path, run_swarm_round
):
    swarms = tmp_path / "swarms"
    engine = run_swarm(swarms, "alpha", run_swarm_round, tasks=4)
    elsewhere = tmp_path / "elsewhere"
    # The user's: a similar name without our marker, a suffix not ours, a marker naming another
    # folder, a root's marker without its ledger (but files left), a link, a name not hidden, a
    # marker that is a link, a plain sibling.
    _leftover(swarms / ".alpha.removing-abcdefghij", None)
    _leftover(swarms / ".alpha.removing-short", "locusts: removing alpha\nroot\n")
    _leftover(swarms / ".alpha.removing-ABCDEFGHIJ", "locusts: removing other\nroot\n")
    _leftover(swarms / ".alpha.removing-KLMNOPQRST", "locusts: removing alpha\nroot\n", ledger=False)
    _leftover(elsewhere / "target", "locusts: removing alpha\nroot\n")
    (swarms / ".alpha.removing-0123456789").symlink_to(elsewhere / "target")
    _leftover(swarms / "alpha.removing-abcdefghij", "locusts: removing alpha\nroot\n")
    _leftover(swarms / ".alpha.removing-ZYXWVUTSRQ", None)
    (elsewhere / "marker.txt").write_text("locusts: removing alpha\nroot\n")
    (swarms / ".alpha.removing-ZYXWVUTSRQ" / MARKER).symlink_to(elsewhere / "marker.txt")
    (swarms / "alpha-old").mkdir()
    (swarms / "alpha-old" / "mine.txt").write_text("mine")
    # Ours, interrupted: a local copy's removal, and a root's removal that got past its ledger.
    _leftover(swarms / ".beta.removing-AAAAAAAAAA", "locusts: removing beta\ncopy\n", ledger=False)
    _leftover(swarms / ".gamma.removing-BBBBBBBBBB", "locusts: removing gamma\nroot\n", ledger=False, more=False)
    users = {k: v for k, v in snapshot(swarms).items()
             if k != "alpha" and not k.startswith(("alpha/", ".beta.removing-", ".gamma.removing-"))}
    outside = snapshot(elsewhere)

    removal = engine.cleanup()
    assert removal.leftovers == 2
    ours = {Path(removal.hidden).name, ".beta.removing-AAAAAAAAAA", ".gamma.removing-BBBBBBBBBB"}
    wait_until(lambda: not ours & set(entries(swarms)), REMOVAL_TIMEOUT, 0.1, "our removals to be finished")
    assert snapshot(swarms) == users
    assert snapshot(elsewhere) == outside


def test_a_large_local_copy_is_renamed_away_and_deleted_in_the_background(tmp_path, run_swarm_round, monkeypatch):
    # Copy mode's scratch view, as LocustsHook.engine makes it: removed by close(), never waited
    # for when it holds more task folders than SCRATCH_REMOVED_IN_PLACE (here 10 for 20 tasks).
    monkeypatch.setattr(engine_module, "SCRATCH_REMOVED_IN_PLACE", 10)
    swarms = tmp_path / "swarms"
    engine = run_swarm(swarms, "scratchy", run_swarm_round, tasks=20)
    scratch = tmp_path / "work_root" / "scratchy.abc_123"
    scratch.parent.mkdir()
    subprocess.run(["cp", "-a", "--", str(swarms / "scratchy"), str(scratch)], check=True, timeout=60)
    copy = SwarmEngine.attach(str(swarms / "scratchy"), LocalShell(), local_root=scratch, scratch=True)
    removals = []
    monkeypatch.setattr(engine_module, "remove_folder", lambda *a: removals.append(remove_folder(*a)) or removals[-1])
    copy.close()
    assert not scratch.exists()
    assert len(removals) == 1 and Path(removals[0].hidden).parent == scratch.parent
    wait_until(lambda: entries(scratch.parent) == [], REMOVAL_TIMEOUT, 0.1, "the scratch copy to be deleted")
    assert (swarms / "scratchy" / "exec" / "ledger.json").is_file()  # the root itself stays

    # A scratch view with few task folders goes in place, and at once; an absent one is no error.
    small = tmp_path / "work_root" / "small.xyz"
    for i in range(10):
        (small / "work" / "batch_0" / f"task_{i}").mkdir(parents=True)
    SwarmEngine.attach(str(swarms / "scratchy"), LocalShell(), local_root=small, scratch=True).close()
    assert entries(scratch.parent) == [] and len(removals) == 1
    assert remove_folder(LocalShell(), str(small), "copy").absent


class NobodyShell:
    """LocalShell as the unprivileged user `nobody` (read-only folders then really stop rm)."""

    def reset(self) -> None:
        return None

    def run_script(self, script, args=None, stdin_data=None, timeout=None) -> CommandResult:
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-s", "--", *(args or [])]
        proc = subprocess.run(argv, input=script.encode(), capture_output=True, timeout=timeout or 60, check=False)
        return CommandResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def world_reachable_dir():
    """A folder another user can reach (pytest's tmp_path is under a 0700 folder of root's)."""
    folder = Path(tempfile.mkdtemp(prefix="locusts-cleanup-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    subprocess.run(["chmod", "-R", "u+w", "--", str(folder)], check=False, timeout=60)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_read_only_folders_inside_the_root_are_removed_too_by_an_unprivileged_owner(world_reachable_dir):
    # A Custom Environment's sealed tree is read-only: rm -rf alone cannot empty it.
    swarms = world_reachable_dir / "swarms"
    root = swarms / "sealed"
    (root / "exec").mkdir(parents=True)
    (root / "exec" / "ledger.json").write_text('{"swarm_id": "sealed", "rounds": []}')
    (root / "exec" / "tasks.jsonl").write_text("")
    tree = root / "environment" / "shared" / "lib"
    tree.mkdir(parents=True)
    (tree / "code.py").write_text("x = 1\n")
    (root / "work" / "batch_0" / "task_0").mkdir(parents=True)
    subprocess.run(["chown", "-R", "65534:65534", "--", str(swarms)], check=True, timeout=60)
    for folder in (tree, tree.parent):
        folder.chmod(0o555)

    removal = remove_folder(NobodyShell(), str(root), "root")
    assert not root.exists() and removal.hidden
    wait_until(lambda: entries(swarms) == [], REMOVAL_TIMEOUT, 0.1, "the read-only tree to be deleted")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_a_removal_that_cannot_finish_keeps_its_marker_and_ledger_and_a_later_cleanup_finishes_it(world_reachable_dir):
    # Part of the root belongs to another account: its owner cannot delete it. The removal says
    # so in its marker, keeps what makes it recognisable, and a later cleanup finishes it.
    swarms = world_reachable_dir / "swarms"
    for name in ("stuck", "later"):
        (swarms / name / "exec").mkdir(parents=True)
        (swarms / name / "exec" / "ledger.json").write_text(f'{{"swarm_id": "{name}", "rounds": []}}')
        (swarms / name / "exec" / "tasks.jsonl").write_text("")
        for i in range(3):
            (swarms / name / "work" / "batch_0" / f"task_{i}").mkdir(parents=True)
    foreign = swarms / "stuck" / "shared" / "theirs"
    foreign.mkdir(parents=True)
    (foreign / "data.txt").write_text("not yours")
    subprocess.run(["chown", "-R", "65534:65534", "--", str(swarms)], check=True, timeout=60)
    subprocess.run(["chown", "-R", "0:0", "--", str(foreign)], check=True, timeout=60)

    removal = remove_folder(NobodyShell(), str(swarms / "stuck"), "root")
    hidden = Path(removal.hidden)
    marker = hidden / MARKER
    wait_until(lambda: "unfinished" in marker.read_text(), REMOVAL_TIMEOUT, 0.1, "the removal to give up")
    first, second, note = marker.read_text().splitlines()
    assert (first, second) == ("locusts: removing stuck", "root") and "Permission denied" in note
    assert (hidden / "exec" / "ledger.json").is_file() and (foreign / "data.txt").exists() is False
    assert (hidden / "shared" / "theirs" / "data.txt").read_text() == "not yours"
    assert not (hidden / "work").exists()

    subprocess.run(["chown", "-R", "65534:65534", "--", str(hidden)], check=True, timeout=60)  # the admin steps in
    again = remove_folder(NobodyShell(), str(swarms / "later"), "root")
    assert again.leftovers == 1
    wait_until(lambda: entries(swarms) == [], REMOVAL_TIMEOUT, 0.1, "both removals to be finished")
