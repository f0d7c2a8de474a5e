"""The swarm trigger in a real triggerer (not dag.test): the services of tests/services/conftest.py
run DAGs with LocustsSwarmOperator (local swarm, managers detached with setsid).

- A triggerer that dies (SIGKILL to all its processes, or to its main process only) or is
  stopped (SIGTERM) while the task is deferred does not stop the swarm; a new triggerer
  takes the trigger over, the run ends successfully and the swarm ran one round only.
- Marking the deferred task failed through the REST API makes Airflow (>= 3.3.0) call the
  trigger's on_kill(), which stops the manager and the tasks it runs.
- A triggerer frozen long enough for its trigger to be reassigned calls on_kill() when it
  wakes up (Airflow bug apache/airflow#73454): the trigger sees its task is still
  deferred and does not cancel the swarm the new triggerer watches.

The restart DAGs' tasks wait for a gate file that the test creates only once the new
triggerer owns the trigger: the swarm is certainly still running when the trigger is
taken over, whatever the machine's speed.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.services.conftest import (
    AirflowServices,
    alive,
    cmdline,
    session_members,
    signal_pids,
    stop_swarm_managers,
    wait_gone,
)

pytestmark = pytest.mark.services

TASK = "swarm"
RESTART_TASKS = 30
ON_KILL_TASKS = 4
PROCESSES = 2

DAG_FILE = '''"""DAGs of tests/services/test_triggerer.py (written by the test)."""
import shlex
from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator

BASE = @BASE@


def swarm_dag(dag_id, command, n, **kwargs):
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        LocustsSwarmOperator(
            task_id="swarm",
            deferrable=True,
            args=[[i] for i in range(n)],
            command=command,
            outputs=["out_<id>.txt"],
            output_dir=f"{BASE}/out/{dag_id}",
            work_root=f"{BASE}/swarms/{dag_id}",
            processes=@PROCESSES@,
            poll_interval=1,
            heartbeat_interval=2,
            heartbeat_timeout=30,
            retries=0,
            **kwargs,
        )
    return dag


# Restart DAGs: every task waits for the gate file, then takes half a second.
for how in ("sigkill", "sigkill_main", "sigterm", "sigstop"):
    dag_id = f"locusts_triggerer_{how}"
    gate = shlex.quote(f"{BASE}/gates/{dag_id}")
    globals()[dag_id] = swarm_dag(
        dag_id, f"while [ ! -e {gate} ]; do sleep 0.2; done; sleep 0.5; echo <arg0> > out_<id>.txt", @RESTART_TASKS@
    )

# on_kill DAG: each task records its shell pids and its sleep's pid, then sleeps 60 s.
pids = shlex.quote(f"{BASE}/pids")
locusts_on_kill = swarm_dag(
    "locusts_on_kill",
    f"printf '%s %s\\\\n' \\"$$\\" \\"$BASHPID\\" > {pids}/shell_<id>.tmp && mv {pids}/shell_<id>.tmp {pids}/shell_<id>; "
    f"sleep 60 & printf '%s\\\\n' \\"$!\\" > {pids}/sleep_<id>.tmp && mv {pids}/sleep_<id>.tmp {pids}/sleep_<id>; "
    "wait; echo <arg0> > out_<id>.txt",
    @ON_KILL_TASKS@,
)

# execution_timeout DAG: tasks that would sleep for ten minutes, in a task Airflow gives 20 s.
locusts_execution_timeout = swarm_dag(
    "locusts_execution_timeout",
    f"echo $$ > {pids}/timeout_<id>; sleep 600; echo <arg0> > out_<id>.txt",
    @ON_KILL_TASKS@,
    execution_timeout=timedelta(seconds=20),
)
'''


def write_dags(dags: Path, base: Path) -> None:
    """Called by the airflow_services fixture before the services start."""
    for folder in ("gates", "pids", "out"):
        (base / folder).mkdir(exist_ok=True)
    text = (
        DAG_FILE.replace("@BASE@", repr(str(base)))
        .replace("@PROCESSES@", str(PROCESSES))
        .replace("@RESTART_TASKS@", str(RESTART_TASKS))
        .replace("@ON_KILL_TASKS@", str(ON_KILL_TASKS))
    )
    (dags / "locusts_services_dags.py").write_text(text)


@pytest.fixture
def swarm_of(airflow_services):
    """`swarm_of(dag_id)`: the DAG's swarm root once its manager wrote its pid. Managers
    still running under that DAG's work root are stopped when the test ends."""
    used = []

    def find(dag_id: str) -> Path:
        used.append(dag_id)
        pid_files = airflow_services.wait_for(
            lambda: list((airflow_services.swarms / dag_id).glob("*/exec/pid_r0m0")), 60,
            f"the manager of {dag_id}'s swarm to record its pid", names=("scheduler",),
        )
        return pid_files[0].parent.parent

    yield find
    for dag_id in used:
        stop_swarm_managers(airflow_services.swarms / dag_id)


# --- helpers ---------------------------------------------------------------------------------


def manager_pid(root: Path) -> int:
    return int((root / "exec" / "pid_r0m0").read_text().split()[0])


def events(root: Path) -> list[list[str]]:
    path = root / "exec" / "events_r0m0"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def wait_trigger_running(services: AirflowServices, dag_id: str, run_id: str) -> dict:
    """Wait until the task is deferred, its trigger assigned to a triggerer and polling the
    swarm (its progress line is in the trigger log). Returns the task instance."""
    def ready():
        ti = services.task_instance(dag_id, run_id, TASK)
        if ti["state"] in ("success", "failed", "up_for_retry", "upstream_failed", "skipped", "removed"):
            raise AssertionError(
                f"{dag_id} task ended {ti['state']} before being deferred\n{services.task_log_tail(dag_id, run_id, TASK, 60)}"
            )
        trigger = ti.get("trigger") or {}
        if ti["state"] != "deferred" or not trigger.get("triggerer_id"):
            return None
        if "Swarm " not in services.task_logs(dag_id, run_id, TASK, trigger_only=True):
            return None
        return ti

    return services.wait_for(
        ready, 150, f"{dag_id}/{run_id} to be deferred with its trigger polling in a triggerer",
        extra=lambda: services.task_log_tail(dag_id, run_id, TASK),
    )


def wait_run_state(services: AirflowServices, dag_id: str, run_id: str, timeout: float) -> str:
    def ended():
        state = services.dag_run(dag_id, run_id)["state"]
        return state if state in ("success", "failed") else None

    return services.wait_for(
        ended, timeout, f"the DAG run {dag_id}/{run_id} to end",
        extra=lambda: services.task_log_tail(dag_id, run_id, TASK, 60),
    )


# --- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["sigkill", "sigkill_main", "sigterm"])
def test_swarm_survives_a_triggerer_restart(airflow_services: AirflowServices, swarm_of, how):
    services = airflow_services
    dag_id, run_id = f"locusts_triggerer_{how}", f"restart_{how}"
    services.ensure_triggerer()
    services.wait_for_dag(dag_id)
    services.trigger_dag(dag_id, run_id)
    ti = wait_trigger_running(services, dag_id, run_id)
    old_triggerer_job = ti["trigger"]["triggerer_id"]
    root = swarm_of(dag_id)
    manager = manager_pid(root)
    assert alive(manager), f"manager {manager} of {root} is not running"
    services.wait_for(
        lambda: sum(1 for e in events(root) if e[2] == "start") == PROCESSES, 30,
        f"{PROCESSES} tasks to start (and wait for the gate)", names=("triggerer",),
    )

    # The triggerer goes away: crashed (SIGKILL to each of its processes, the trigger
    # runner subprocess included) or stopped gracefully (SIGTERM).
    triggerer = services.current("triggerer")
    if how == "sigkill":
        services.kill(triggerer, signal.SIGKILL)
    elif how == "sigkill_main":
        # Only the main process dies (as the OOM killer would do it): its trigger runner
        # subprocess loses its supervisor and must go away by itself, without on_kill().
        triggerer.stopped = True
        triggerer.popen.send_signal(signal.SIGKILL)
        triggerer.popen.wait(timeout=10)
        left = wait_gone(triggerer.members, 30)
        assert not left, (
            f"the trigger runner outlived its killed triggerer: {[(p, cmdline(p)) for p in left]}\n{triggerer.tail()}"
        )
    else:
        code = services.stop(triggerer, timeout=40)
        assert code is not None, f"the triggerer did not stop within 40 s of SIGTERM\n{triggerer.tail()}"
    assert not triggerer.members(), "processes of the old triggerer are still running"
    killed_at = time.time()

    # The swarm does not notice: its manager lives on and keeps heartbeating.
    heartbeat = root / "exec" / "heartbeat_r0m0"
    services.wait_for(
        lambda: heartbeat.stat().st_mtime > killed_at, 15,
        "the manager to heartbeat after the triggerer was gone", names=(),
        extra=lambda: f"manager {manager} alive: {alive(manager)}; events: {events(root)}",
    )
    assert alive(manager), f"the manager (pid {manager}) died with the triggerer"
    assert services.task_instance(dag_id, run_id, TASK)["state"] == "deferred"

    # A new triggerer takes the trigger over (after the old one's heartbeat is older than
    # [triggerer] triggerer_health_check_threshold when it was killed; at once when it
    # stopped gracefully, its job having ended).
    services.start_triggerer()

    def taken_over():
        trigger = services.task_instance(dag_id, run_id, TASK).get("trigger") or {}
        owner = trigger.get("triggerer_id")
        return owner if owner not in (None, old_triggerer_job) else None

    services.wait_for(
        taken_over, 120, "a new triggerer to take the swarm's trigger over",
        extra=lambda: services.task_log_tail(dag_id, run_id, TASK),
    )
    assert alive(manager), "the manager should still be waiting for the gate"
    assert not any(e[2] == "end" for e in events(root)), "no task can have finished before the gate opened"

    (services.base / "gates" / dag_id).touch()
    state = wait_run_state(services, dag_id, run_id, 150)
    assert state == "success", services.task_log_tail(dag_id, run_id, TASK, 80)

    ids = [str(i) for i in range(RESTART_TASKS)]
    assert services.xcom(dag_id, run_id, TASK, "succeeded") == ids
    assert services.xcom(dag_id, run_id, TASK, "failed") == []
    summary = services.xcom(dag_id, run_id, TASK)
    assert (summary["total"], summary["succeeded_count"], summary["failed_count"]) == (RESTART_TASKS, RESTART_TASKS, 0)
    out = services.base / "out" / dag_id
    for i in ids:
        assert (out / f"out_{i}.txt").read_text().strip() == i
    assert len(list(out.glob("locusts_manifest.*.jsonl"))) == 1

    # Nothing was restarted: one round, one manager that finished, every task run once,
    # one Airflow try.
    ledger = json.loads((root / "exec" / "ledger.json").read_text())
    assert len(ledger["rounds"]) == 1, ledger
    assert (root / "exec" / "done_r0m0").exists()
    assert not alive(manager)
    starts = sorted(e[1] for e in events(root) if e[2] == "start")
    assert len(starts) == RESTART_TASKS and len(set(starts)) == RESTART_TASKS, starts
    assert services.task_instance(dag_id, run_id, TASK)["try_number"] == 1

    trigger_log = services.task_logs(dag_id, run_id, TASK, trigger_only=True)
    # The trigger ran twice (once in each triggerer) and fired once, from the new triggerer.
    assert trigger_log.count(") starting") == 2, trigger_log[-3000:]
    assert trigger_log.count("Trigger fired event") == 1, trigger_log[-3000:]
    assert "invoking on_kill" not in trigger_log, "a triggerer shutdown must not call the trigger's on_kill()"
    assert "Cancelled swarm" not in trigger_log


def test_marking_the_deferred_task_failed_cancels_the_swarm(airflow_services: AirflowServices, swarm_of):
    services = airflow_services
    dag_id, run_id = "locusts_on_kill", "on_kill"
    pids = services.base / "pids"
    services.ensure_triggerer()
    services.wait_for_dag(dag_id)
    services.trigger_dag(dag_id, run_id)
    wait_trigger_running(services, dag_id, run_id)
    root = swarm_of(dag_id)
    manager = manager_pid(root)
    services.wait_for(
        lambda: len(list(pids.glob("sleep_*"))) == PROCESSES, 30, f"{PROCESSES} tasks to start sleeping", names=(),
        extra=lambda: f"events: {events(root)}",
    )
    task_pids = [int(p) for f in sorted(pids.glob("shell_*")) + sorted(pids.glob("sleep_*")) for p in f.read_text().split()]
    swarm_processes = session_members(manager)  # manager, its ticker, its attempts, their sleeps
    assert manager in swarm_processes and set(task_pids) <= set(swarm_processes), (manager, task_pids, swarm_processes)
    assert all(alive(p) for p in [manager, *task_pids])

    response = services.set_task_state(dag_id, run_id, TASK, "failed")
    assert [ti["state"] for ti in response["task_instances"]] == ["failed"], response

    # Airflow 3.3: the triggerer sees the trigger is no longer wanted (the task left
    # DEFERRED), cancels it with its "user action" message and awaits trigger.on_kill().
    services.wait_for(
        lambda: not any(alive(p) for p in swarm_processes) and not session_members(manager), 60,
        "on_kill() to stop the swarm's manager and its tasks", names=("triggerer",),
        extra=lambda: (
            f"still alive: {[p for p in swarm_processes if alive(p)]}\n"
            f"trigger log:\n{services.task_logs(dag_id, run_id, TASK, trigger_only=True)[-3000:]}"
        ),
    )
    # on_kill() logs once cancel.sh has returned, which can be just after the processes died.
    trigger_log = services.wait_for(
        lambda: (log := services.task_logs(dag_id, run_id, TASK, trigger_only=True)) and "trigger completed" in log and log,
        30, "the cancelled trigger to complete", names=("triggerer",),
        extra=lambda: services.task_logs(dag_id, run_id, TASK, trigger_only=True)[-3000:],
    )
    assert "Trigger cancelled by user action, invoking on_kill" in trigger_log, trigger_log[-3000:]
    assert "Cancelled swarm" in trigger_log, trigger_log[-3000:]

    # The swarm stopped where it was: only the first tasks started, none finished.
    assert len(list(pids.glob("sleep_*"))) == PROCESSES
    assert not list((services.base / "out" / dag_id).glob("out_*.txt"))
    assert not (root / "exec" / "done_r0m0").exists()
    assert wait_run_state(services, dag_id, run_id, 60) == "failed"
    assert services.task_instance(dag_id, run_id, TASK)["state"] == "failed"


def test_trigger_reassigned_away_from_a_paused_triggerer_keeps_the_swarm(airflow_services: AirflowServices, swarm_of):
    """A triggerer frozen (SIGSTOP: a stopped container, a long GC pause) past
    [triggerer] triggerer_health_check_threshold loses its trigger to another triggerer;
    when it wakes up it drops the trigger, which must not cancel the swarm."""
    services = airflow_services
    dag_id, run_id = "locusts_triggerer_sigstop", "reassign"
    first = services.ensure_triggerer()
    services.wait_for_dag(dag_id)
    services.trigger_dag(dag_id, run_id)
    first_job = wait_trigger_running(services, dag_id, run_id)["trigger"]["triggerer_id"]
    root = swarm_of(dag_id)
    manager = manager_pid(root)
    services.wait_for(
        lambda: sum(1 for e in events(root) if e[2] == "start") == PROCESSES, 30, f"{PROCESSES} tasks to start", names=(),
    )
    second = services.start_triggerer()
    frozen = first.members()
    try:
        signal_pids(frozen, signal.SIGSTOP)

        def taken_over():
            trigger = services.task_instance(dag_id, run_id, TASK).get("trigger") or {}
            owner = trigger.get("triggerer_id")
            return owner if owner not in (None, first_job) else None

        services.wait_for(taken_over, 120, "the second triggerer to take the trigger over", names=("triggerer",))
    finally:
        signal_pids(frozen, signal.SIGCONT)
    first_log = trigger_log_of(services, dag_id, run_id, first_job)
    try:
        # The woken triggerer notices the trigger is no longer its own and stops it.
        services.wait_for(
            lambda: "trigger completed" in first_log.read_text(), 60,
            "the woken triggerer to drop the reassigned trigger", names=("triggerer",),
        )
        text = first_log.read_text()
        # Airflow 3.3 calls on_kill() here (apache/airflow#73454); the trigger sees its task
        # is still deferred and leaves the swarm to the triggerer that now watches it.
        if "invoking on_kill" in text:
            assert "leaving it running" in text, text[-2000:]
        assert alive(manager), "the swarm's manager was stopped"
    finally:
        services.stop(first, timeout=5)
        (services.base / "gates" / dag_id).touch()
    assert wait_run_state(services, dag_id, run_id, 150) == "success"
    assert len(json.loads((root / "exec" / "ledger.json").read_text())["rounds"]) == 1
    assert second.running()


def trigger_log_of(services: AirflowServices, dag_id: str, run_id: str, triggerer_job: int) -> Path:
    """The trigger log written by one triggerer (job id) for this task."""
    folder = services.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={TASK}"
    (path,) = folder.glob(f"attempt=*.log.trigger.{triggerer_job}.log")
    return path


def test_execution_timeout_while_deferred_stops_the_swarm_and_fails_the_task(airflow_services: AirflowServices, swarm_of):
    services = airflow_services
    dag_id, run_id = "locusts_execution_timeout", "timeout"
    services.ensure_triggerer()
    services.wait_for_dag(dag_id)
    services.trigger_dag(dag_id, run_id)
    wait_trigger_running(services, dag_id, run_id)
    root = swarm_of(dag_id)
    manager = manager_pid(root)
    pids = services.base / "pids"
    services.wait_for(lambda: len(list(pids.glob("timeout_*"))) == PROCESSES, 30, f"{PROCESSES} tasks to start", names=())
    swarm_processes = session_members(manager)
    started = time.monotonic()

    assert wait_run_state(services, dag_id, run_id, 150) == "failed"
    # Airflow gave up on the deferred task at its execution_timeout: the swarm is stopped,
    # not left running unseen, and the task's log says so.
    services.wait_for(
        lambda: not any(alive(p) for p in swarm_processes), 30, "the swarm's processes to be gone", names=("scheduler",),
        extra=lambda: f"still alive: {[p for p in swarm_processes if alive(p)]}",
    )
    log = services.task_logs(dag_id, run_id, TASK)
    assert "gave up on the deferred task" in log and "the swarm was stopped (r0m0: stopped)" in log, log[-3000:]
    assert time.monotonic() - started < 120
    assert not list((services.base / "out" / dag_id).glob("out_*.txt"))
