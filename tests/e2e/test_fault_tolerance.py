"""Faults injected for real into local swarms run with dag.test(): a manager killed with
SIGKILL mid-swarm, tasks that fail once (per-task retries), and an Airflow retry that
finds the managers of an earlier try still running."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest
from airflow.sdk import DAG

from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator

pytestmark = pytest.mark.e2e


def args_swarm_dag(dag_id: str, tmp_path: Path, command: str, n: int, **kwargs) -> DAG:
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        LocustsSwarmOperator(
            task_id="swarm",
            deferrable=True,
            args=[[i] for i in range(n)],
            command=command,
            outputs=["out_<id>.txt"],
            output_dir=str(tmp_path / "out"),
            work_root=str(tmp_path / "swarms"),
            poll_interval=0.3,
            **kwargs,
        )
    return dag


def kill_manager_command(counters: Path, victim: int) -> str:
    """Every task counts its starts and its completed runs outside the swarm root.

    Task `victim`, on its first run, records its own shell (pid and start time, so a reused
    pid cannot pass for it), SIGKILLs its manager and lingers 30 s: an orphaned attempt
    of a lost manager. On a later run (a reschedule) it first records whether that orphan
    was still there: `gone` or `alive (state S)` in `orphan_at_rerun`. A zombie is gone: it
    has exited, and may wait a while for a parent to reap it (init is slow to reap here).
    """
    return (
        f'echo start >> {counters}/<id>.starts; '
        f'if [ <arg0> = {victim} ] && [ ! -e {counters}/killed ]; then '
        f'  touch {counters}/killed; '
        f'  read -r -a stat < /proc/$BASHPID/stat; echo "$BASHPID ${{stat[21]}}" > {counters}/orphan; '
        '  read -r pid host < "$LOCUSTS_SWARM_ROOT"/exec/pid_r0m0; kill -9 "$pid"; sleep 30; '
        f'elif [ <arg0> = {victim} ]; then '
        f'  read -r opid ostart < {counters}/orphan; '
        '  if read -r -a stat 2>/dev/null < /proc/$opid/stat && [ "${stat[21]}" = "$ostart" ] && [ "${stat[2]}" != Z ]; '
        f'  then echo "alive (state ${{stat[2]}})"; else echo gone; fi > {counters}/orphan_at_rerun; '
        'fi; '
        'sleep 0.2; echo <arg0> > out_<id>.txt; '
        f'echo done >> {counters}/<id>.completed'
    )


def ledger_of(tmp_path: Path) -> dict:
    (root,) = (tmp_path / "swarms").iterdir()
    return json.loads((root / "exec" / "ledger.json").read_text())


def manifest_of(summary: dict) -> dict[str, dict]:
    return {m["id"]: m for m in map(json.loads, Path(summary["manifest"]).read_text().splitlines())}


@pytest.fixture
def orphans(tmp_path):
    """Teardown: stops the victim's orphan and its `sleep` if the fence failed to (its process
    group, the lost manager's; only while the victim's recorded shell, same pid and start
    time, is still in it)."""
    yield
    record = tmp_path / "counters" / "orphan"
    if not record.exists():
        return
    pid, start = record.read_text().split()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        if fields[19] == start:
            os.killpg(int(fields[2]), signal.SIGKILL)
    except (FileNotFoundError, ProcessLookupError):
        pass


def test_killed_manager_tasks_are_rescheduled_and_finished_tasks_keep_their_result(run_dag, tmp_path, orphans):
    counters = tmp_path / "counters"
    counters.mkdir()
    dag = args_swarm_dag(
        "kill9_reschedule", tmp_path, kill_manager_command(counters, victim=12), n=40,
        processes=1, heartbeat_interval=1, heartbeat_timeout=5, max_reschedules=1,
    )
    result = run_dag(dag)

    assert result.task_states() == {"swarm": "success"}
    assert result.xcom("swarm", key="succeeded") == [str(i) for i in range(40)] and result.xcom("swarm", key="failed") == []
    assert [r["kind"] for r in ledger_of(tmp_path)["rounds"]] == ["start", "reschedule"]
    # The lost manager's orphaned attempt was stopped before its task ran again.
    at_rerun = (counters / "orphan_at_rerun").read_text()
    assert at_rerun == "gone\n", f"the orphan still ran when its task was rescheduled: {at_rerun.strip()}"
    for i in range(40):
        # Nothing that finished ran again; the victim ran twice (killed once, then rescheduled).
        assert (counters / f"{i}.completed").read_text().count("done") == 1, i
        assert (tmp_path / "out" / f"out_{i}.txt").read_text() == f"{i}\n"
    assert (counters / "12.starts").read_text().count("start") == 2
    # Tasks 0-11 had ended before the victim started (one at a time, in order): they ran once, in round 0.
    manifest = manifest_of(result.xcom("swarm"))
    for i in range(12):
        assert (counters / f"{i}.starts").read_text().count("start") == 1, i
        assert manifest[str(i)]["attempts"] == 1, i


def test_without_reschedules_unfinished_tasks_fail_with_manager_lost(run_dag, tmp_path, orphans):
    counters = tmp_path / "counters"
    counters.mkdir()
    dag = args_swarm_dag(
        "kill9_no_reschedule", tmp_path, kill_manager_command(counters, victim=12), n=40,
        processes=1, heartbeat_interval=1, heartbeat_timeout=5, max_reschedules=0, max_failed_fraction=1.0,
    )
    result = run_dag(dag)

    assert result.task_states() == {"swarm": "success"}
    assert [r["kind"] for r in ledger_of(tmp_path)["rounds"]] == ["start"]
    summary = result.xcom("swarm")
    succeeded, failed = set(result.xcom("swarm", key="succeeded")), set(result.xcom("swarm", key="failed"))
    completed = {str(i) for i in range(40) if (counters / f"{i}.completed").exists()}
    # One task at a time, in order: tasks 0-11 had ended when the victim killed the manager,
    # alone; it never finished and nothing after it started.
    assert completed == {str(i) for i in range(12)}
    # A task that finished before the loss keeps its success and its output...
    assert succeeded == completed, f"finished tasks that lost their success: {sorted(completed - succeeded, key=int)}"
    manifest = manifest_of(summary)
    for task_id in succeeded:
        assert manifest[task_id]["state"] == "succeeded" and manifest[task_id]["exit_code"] == 0, manifest[task_id]
        assert (tmp_path / "out" / f"out_{task_id}.txt").read_text() == f"{task_id}\n"
    # ...and every other task failed because its manager was lost.
    assert failed == {str(i) for i in range(12, 40)}
    assert summary["reasons"]["12"] == "never finished: its manager was lost (r0m0: dead)"
    for task_id in failed - {"12"}:
        assert summary["reasons"][task_id] == "never started: its manager was lost (r0m0: dead)", (task_id, summary["reasons"][task_id])
        assert not (tmp_path / "out" / f"out_{task_id}.txt").exists()


def test_task_retries_rerun_a_failed_task_inside_its_manager(run_dag, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    command = (
        f'if [ $((<arg0> % 5)) -eq 0 ] && [ ! -e {marks}/<id> ]; then touch {marks}/<id>; exit 9; fi; '
        'echo ok > out_<id>.txt'
    )
    dag = args_swarm_dag("task_retries", tmp_path, command, n=20, processes=3, task_retries=1)
    result = run_dag(dag)

    summary = result.xcom("swarm")
    assert summary["failed_count"] == 0 and result.xcom("swarm", key="failed") == []
    manifest = {m["id"]: m for m in map(json.loads, Path(summary["manifest"]).read_text().splitlines())}
    for i in range(20):
        assert manifest[str(i)]["attempts"] == (2 if i % 5 == 0 else 1)
        assert manifest[str(i)]["exit_code"] == 0
    assert len(ledger_of(tmp_path)["rounds"]) == 1


def gated(command: str, gate: Path, limit_s: int = 180) -> str:
    """`command` run once `gate` exists; a task whose gate never opens fails after `limit_s`
    (exit 3), so a failed test leaves nothing running."""
    return (
        f'for _ in $(seq {limit_s * 10}); do [ -e {gate} ] && break; sleep 0.1; done; '
        f'[ -e {gate} ] || exit 3; {command}'
    )


def manager_running(root: Path, manager: str) -> int | None:
    """The pid of `manager` if its process is running its script (read from exec/pid_<manager>)."""
    pid = int((root / "exec" / f"pid_{manager}").read_text().split()[0])
    try:
        running = f"manager_{manager}.sh" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    return pid if running else None


def test_a_try_finds_the_running_managers_of_an_earlier_try_and_does_not_start_them_again(run_dag, tmp_path):
    from airflow_provider_locusts.swarm.engine import EngineOptions, SwarmEngine
    from airflow_provider_locusts.swarm.shell import LocalShell
    from airflow_provider_locusts.swarm.spec import build_spec

    from .conftest import OnDeferral

    counters, gate = tmp_path / "counters", tmp_path / "gate"
    counters.mkdir()
    root = tmp_path / "swarms" / "resume-live"
    # Every task waits for the gate, opened only once the operator has looked at the swarm
    # and deferred: the earlier try's manager is certainly still running when it looks.
    command = gated(f'echo run >> {counters}/<id>; sleep 0.1; echo <arg0> > out_<id>.txt', gate)
    dag = args_swarm_dag("resume_live", tmp_path, command, n=12, processes=2, swarm_id="resume-live")
    # An earlier try that started the swarm and died before deferring: the same engine
    # calls the operator makes, on the same swarm root.
    spec = build_spec(command=command, args=[[i] for i in range(12)], outputs=["out_<id>.txt"], output_dir=tmp_path / "out", processes=2)
    engine = SwarmEngine(spec, "resume-live", str(root), LocalShell(), EngineOptions(heartbeat_interval=10))
    engine.start(engine.prepare_round())
    deadline = time.monotonic() + 60
    while not (root / "exec" / "pid_r0m0").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    first_pid = manager_running(root, "r0m0")
    assert first_pid, "the earlier try's manager did not start"

    seen_at_deferral = {}

    def open_gate() -> None:
        seen_at_deferral["manager"] = manager_running(root, "r0m0")
        events = root / "exec" / "events_r0m0"
        seen_at_deferral["ended"] = events.read_text().count(" end ") if events.exists() else 0
        gate.touch()

    opener = OnDeferral("resume_live", "swarm", try_number=1, action=open_gate)
    opener.start()
    try:
        result = run_dag(dag)
    finally:
        gate.touch()
    opener.check()

    # When the operator deferred, the earlier try's manager was running and no task had ended.
    assert seen_at_deferral == {"manager": first_pid, "ended": 0}, (
        f"when the operator deferred, the earlier try's manager (pid {first_pid}) should have been running "
        f"with no task ended: {seen_at_deferral}"
    )
    assert result.xcom("swarm", key="succeeded") == [str(i) for i in range(12)]
    # It was watched, not started again: one round, one manager, launched once, every task run once.
    rounds = ledger_of(tmp_path)["rounds"]
    assert [r["managers"] for r in rounds] == [["r0m0"]], f"a new round was started instead of watching round 0: {rounds}"
    assert sorted(p.name for p in (root / "exec").glob("launched_*")) == ["launched_r0m0"]
    assert (root / "exec" / "pid_r0m0").read_text().split()[0] == str(first_pid)
    for i in range(12):
        assert (counters / str(i)).read_text().count("run") == 1, f"task {i} ran more than once"
        assert (tmp_path / "out" / f"out_{i}.txt").read_text() == f"{i}\n"
