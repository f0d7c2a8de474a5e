"""engine.cancel() stops a running swarm: its manager and the tasks it is running — and only those:
a reused pid and a done manager are left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from airflow_provider_locusts.swarm.engine import EngineOptions, SwarmEngine
from airflow_provider_locusts.swarm.shell import LocalShell
from airflow_provider_locusts.swarm.progress import assess
from airflow_provider_locusts.swarm.spec import build_spec


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (nobody may reap orphans here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(predicate, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def test_cancel_stops_manager_and_running_tasks(tmp_path, run_swarm_round):
    pids = tmp_path / "pids"
    pids.mkdir()
    # each task records its shell's pid and its sleep's pid, then waits for the sleep
    command = "sleep 30 & printf '%s %s\\n' $$ $! > <arg0>/pid_<id>.tmp && mv <arg0>/pid_<id>.tmp <arg0>/pid_<id>; wait"
    spec = build_spec(command=command, args=[[str(pids)]] * 5, output_dir=tmp_path / "out", processes=2)
    root = tmp_path / "root"
    engine = SwarmEngine(spec, "cancel", str(root), LocalShell(), EngineOptions(heartbeat_interval=1))
    round_ = engine.prepare_round()
    run_swarm_round.started.append(engine)  # teardown cancels it again if this test fails early
    engine.start(round_)

    assert wait_until(lambda: len(list(pids.glob("pid_?"))) == 2, timeout=15), "two tasks should be running"
    pid_file = root / "exec" / "pid_r0m0"
    manager_pid = int(pid_file.read_text().split()[0])
    task_pids = [int(p) for f in pids.glob("pid_?") for p in f.read_text().split()]
    assert alive(manager_pid) and all(alive(p) for p in task_pids)
    assert "manager_r0m0.sh" in Path(f"/proc/{manager_pid}/cmdline").read_bytes().decode()
    heartbeat_pids = []  # the manager's other children (heartbeat loop) must go too
    for child in Path(f"/proc/{manager_pid}/task/{manager_pid}/children").read_text().split():
        heartbeat_pids.append(int(child))

    engine.cancel()

    assert wait_until(lambda: not alive(manager_pid), timeout=10), "manager still running after cancel"
    assert wait_until(lambda: not any(alive(p) for p in task_pids + heartbeat_pids), timeout=10), "tasks still running"
    # no third task was started after the cancel
    time.sleep(0.3)
    assert len(list(pids.glob("pid_?"))) == 2

    # the swarm is now seen as lost; gather says why each task failed
    poll = engine.poll({"r0m0": None})
    assert poll.managers["r0m0"].state == "dead"
    verdict = assess(poll, heartbeat_timeout=30, waited=1)
    assert (verdict.finished, verdict.lost) == (True, ["r0m0"])
    result = engine.gather(lost_reason="swarm cancelled")
    assert result.succeeded == []
    reasons = sorted(result.reasons.values())
    assert reasons == ["never finished: swarm cancelled"] * 2 + ["never started: swarm cancelled"] * 3
    assert not (root / "exec" / "done_r0m0").exists()


def stand_in_group(argv: list[str]) -> subprocess.Popen:
    """A process that leads a process group (and session) of its own with a `sleep` child, as a
    manager does: signalling the group reaches both."""
    return subprocess.Popen(argv, start_new_session=True)


@pytest.mark.parametrize(
    ("done", "runs_manager_script", "signalled"),
    [
        # The positive control: a group running this manager's script is stopped.
        (False, True, True),
        # The manager's pid was reused by an unrelated process group: left alone.
        (False, False, False),
        # A done manager is skipped, whatever its pid now names.
        (True, True, False),
    ],
    ids=["unfinished-manager-stopped", "reused-pid-left-alone", "done-manager-skipped"],
)
def test_cancel_signals_a_process_group_only_for_an_unfinished_manager_still_running_its_script(
    tmp_path, run_swarm_round, done, runs_manager_script, signalled
):
    spec = build_spec(command="true", args=[["x"]], output_dir=tmp_path / "out")
    root = tmp_path / "root"
    engine = SwarmEngine(spec, "cancel2", str(root), LocalShell(), EngineOptions(heartbeat_interval=1))
    run_swarm_round(engine, engine.prepare_round())
    assert (root / "exec" / "done_r0m0").exists()
    # A process group in place of the finished manager's: its leader's command line names the
    # manager's script or not; `sleep 30 & wait` keeps bash from exec-ing the sleep.
    name = "./manager_r0m0.sh" if runs_manager_script else "./unrelated.sh"
    group = stand_in_group(["bash", "-c", "sleep 30 & wait", name])
    try:
        assert wait_until(lambda: len(Path(f"/proc/{group.pid}/task/{group.pid}/children").read_text().split()) == 1, 10)
        (sleeper,) = map(int, Path(f"/proc/{group.pid}/task/{group.pid}/children").read_text().split())
        if not done:
            (root / "exec" / "done_r0m0").unlink()
        (root / "exec" / "pid_r0m0").write_text(f"{group.pid} {os.uname().nodename}\n")

        engine.cancel()

        if signalled:
            assert wait_until(lambda: group.poll() is not None and not alive(sleeper), 15), "the manager's group was not stopped"
        else:
            time.sleep(0.5)
            assert group.poll() is None and alive(sleeper), "cancel signalled a process group it must leave alone"
    finally:
        try:
            os.killpg(group.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        group.wait(timeout=10)


def processes_in(folder: Path) -> list[int]:
    """Live processes whose working directory is inside folder."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if (cwd == str(folder) or cwd.startswith(str(folder) + "/")) and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def test_finished_manager_leaves_no_process_behind(tmp_path, run_swarm_round):
    spec = build_spec(command="printf x > o_<id>", args=[["a"], ["b"]], outputs=["o_<id>"], output_dir=tmp_path / "out")
    root = tmp_path / "root"
    engine = SwarmEngine(spec, "clean", str(root), LocalShell(), EngineOptions(heartbeat_interval=4))
    run_swarm_round(engine, engine.prepare_round())
    assert (root / "exec" / "done_r0m0").exists()
    assert wait_until(lambda: not processes_in(root), timeout=1.5), (
        f"processes left running in the swarm root after its manager finished: {processes_in(root)}"
    )
