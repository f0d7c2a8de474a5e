"""The Airflow layer on its own: the provider info against Airflow's schema, the trigger's
serialization and its events, and execute_complete for every event a trigger can send.

Swarms here are real (local bash managers); the operator is called directly with a
stand-in task instance (tests/conftest.py StandInTI) where a DAG run cannot produce the case.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from importlib import import_module
from pathlib import Path

import jsonschema
import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_locusts import get_provider_info
from airflow_provider_locusts.exceptions import LocalModeRefusedError, SwarmLostTrackError
from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator
from airflow_provider_locusts.swarm.engine import EngineOptions, SwarmEngine
from airflow_provider_locusts.swarm.handle import HANDLE_XCOM_KEY, SwarmHandle
from airflow_provider_locusts.swarm.shell import LocalShell
from airflow_provider_locusts.swarm.spec import build_spec
from airflow_provider_locusts.swarm.watch import NOT_VISIBLE, POLL_FAILED
from airflow_provider_locusts.triggers.swarm import LocustsSwarmTrigger

pytestmark = pytest.mark.e2e


def test_provider_info_matches_airflows_schema():
    import airflow

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    for section in ("operators", "hooks", "triggers"):
        for entry in info[section]:
            for module in entry["python-modules"]:
                import_module(module)
    assert info["config"]["locusts"]["options"]["work_root"]["default"] is None


# --- a small real swarm to point triggers and the operator at ------------------------------


def started_swarm(tmp_path: Path, command: str, n: int = 3, start: bool = True, **options) -> tuple[SwarmEngine, SwarmHandle]:
    spec = build_spec(command=command, args=[[i] for i in range(n)], outputs=["out_<id>.txt"], output_dir=tmp_path / "out", processes=2)
    root = str(tmp_path / "swarms" / "sw")
    engine = SwarmEngine(spec, "sw", root, LocalShell(), EngineOptions(heartbeat_interval=1, **options))
    round_ = engine.prepare_round()
    if start:
        engine.start(round_)
    handle = SwarmHandle(
        "sw", root, view=root, output_dir=str(spec.output_dir), origin_host=socket.gethostname(), total=n
    ).with_round(round_.number, round_.managers, round_.task_count)
    return engine, handle


def run_trigger(trigger: LocustsSwarmTrigger, timeout: float = 60) -> dict:
    async def first_event():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(asyncio.wait_for(first_event(), timeout))


def trigger_for(handle: SwarmHandle, **kwargs) -> LocustsSwarmTrigger:
    settings = dict(poll_interval=0.2, heartbeat_timeout=10, max_poll_failures=2)
    settings.update(kwargs)
    return LocustsSwarmTrigger(handle=handle.to_dict(), **settings)


def test_trigger_serializes_to_what_rebuilds_it(tmp_path):
    handle = SwarmHandle("sw", "/scratch/sw", ssh_conn_id="hpc", output_dir="/data/out", scheduler="slurm", total=9).with_round(
        2, ["r2m0", "r2m1"], 4
    )
    trigger = trigger_for(handle, offsets={"r2m0": 120}, counts={"started": 3, "finished": 2, "failed": 1})
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(import_module(module), name)(**json.loads(json.dumps(kwargs)))
    assert rebuilt.serialize() == (classpath, kwargs)
    assert rebuilt.handle == handle
    assert kwargs["handle"]["managers"] == ["r2m0", "r2m1"] and kwargs["offsets"] == {"r2m0": 120}


def test_trigger_fires_finished_with_the_handle_when_the_round_ends(tmp_path):
    engine, handle = started_swarm(tmp_path, "echo <arg0> > out_<id>.txt")
    event = run_trigger(trigger_for(handle))
    assert event["status"] == "finished"
    assert (event["finished"], event["failed"], event["total"]) == (3, 0, 3)
    assert SwarmHandle.from_dict(event["handle"]) == handle


def test_trigger_on_a_root_it_cannot_see_ends_in_an_error_event_saying_what_to_do(tmp_path):
    handle = SwarmHandle("sw", str(tmp_path / "nowhere" / "sw"), origin_host=socket.gethostname()).with_round(0, ["r0m0"], 3)
    event = run_trigger(trigger_for(handle))
    assert (event["status"], event["reason"]) == ("error", NOT_VISIBLE)
    assert str(tmp_path / "nowhere" / "sw") in event["message"]
    assert "ssh_conn_id" in event["message"] and "deferrable=False" in event["message"]


def test_trigger_refuses_at_once_to_watch_a_local_swarm_started_on_another_host(tmp_path):
    engine, handle = started_swarm(tmp_path, "sleep 0.2; echo <arg0> > out_<id>.txt")
    elsewhere = SwarmHandle.from_dict({**handle.to_dict(), "origin_host": "worker-a.example"})
    started = time.monotonic()
    event = run_trigger(trigger_for(elsewhere))
    assert time.monotonic() - started < 5
    assert (event["status"], event["reason"]) == ("error", NOT_VISIBLE)
    assert "worker-a.example" in event["message"] and socket.gethostname() in event["message"]
    engine.cancel()


def test_a_poll_that_fails_on_the_host_ends_in_an_error_event_not_an_exception(tmp_path):
    engine, handle = started_swarm(tmp_path, "sleep 30", start=False)
    Path(engine.layout.poll_script).write_text("echo 'poll.sh: disk quota exceeded' >&2; exit 3\n")
    event = run_trigger(trigger_for(handle))
    assert (event["status"], event["reason"]) == ("error", POLL_FAILED)
    assert "disk quota exceeded" in event["message"] and "exit code 3" in event["message"]


# --- execute_complete, one test per event status --------------------------------------------


def operator_for(tmp_path: Path, command: str, n: int = 3, **kwargs) -> LocustsSwarmOperator:
    settings = dict(
        task_id="swarm", command=command, args=[[i] for i in range(n)], outputs=["out_<id>.txt"],
        output_dir=str(tmp_path / "out"), work_root=str(tmp_path / "swarms"), swarm_id="sw", processes=2,
        heartbeat_interval=1, heartbeat_timeout=10, poll_interval=0.2, deferrable=True,
    )
    settings.update(kwargs)
    return LocustsSwarmOperator(**settings)


def event_for(handle: SwarmHandle, status: str, message: str = "", lost=(), reason=None) -> dict:
    return {"status": status, "handle": handle.to_dict(), "lost": list(lost), "message": message, "reason": reason,
            "finished": 0, "failed": 0, "total": handle.round_tasks}


def wait_round_over(engine: SwarmEngine, handle: SwarmHandle, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while engine.live_round() is not None:
        assert time.monotonic() < deadline, "the round did not end"
        time.sleep(0.1)


def test_finished_event_gathers_and_pushes_the_lists(tmp_path, stand_in_context):
    engine, handle = started_swarm(tmp_path, "[ <arg0> != 1 ] && echo <arg0> > out_<id>.txt")
    wait_round_over(engine, handle)
    context = stand_in_context("layer_finished")
    op = operator_for(tmp_path, "unused", max_failed_fraction=0.5)
    summary = op.execute_complete(context, event_for(handle, "finished"))
    assert (summary["succeeded_count"], summary["failed_count"], summary["failed_first"]) == (2, 1, ["1"])
    assert summary["reasons"]["1"] == "exit code 1; missing outputs: out_1.txt"
    assert context["ti"].xcoms["failed"] == ["1"] and context["ti"].xcoms["succeeded"] == ["0", "2"]
    assert (tmp_path / "out" / "out_2.txt").read_text() == "2\n"


def test_do_xcom_push_false_pushes_no_lists(tmp_path, stand_in_context):
    engine, handle = started_swarm(tmp_path, "echo <arg0> > out_<id>.txt")
    wait_round_over(engine, handle)
    context = stand_in_context("layer_no_xcom")
    operator_for(tmp_path, "unused", do_xcom_push=False).execute_complete(context, event_for(handle, "finished"))
    assert "succeeded" not in context["ti"].xcoms and "failed" not in context["ti"].xcoms


def kill_manager(engine: SwarmEngine, manager: str) -> None:
    """SIGKILL a manager once it has started a task (one that never did is diagnosed otherwise)."""
    pid_file = Path(engine.layout.manager_file(manager, "pid"))
    events = Path(engine.layout.manager_file(manager, "events"))
    deadline = time.monotonic() + 15
    while not pid_file.exists() or not pid_file.read_text().strip() or not events.exists() or events.stat().st_size == 0:
        assert time.monotonic() < deadline, "the manager never started a task"
        time.sleep(0.05)
    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)


def test_lost_event_reschedules_the_unfinished_tasks_in_a_new_round(tmp_path, stand_in_context):
    engine, handle = started_swarm(tmp_path, "sleep 30; echo <arg0> > out_<id>.txt")
    kill_manager(engine, "r0m0")
    context = stand_in_context("layer_lost")
    op = operator_for(tmp_path, "sleep 30; echo <arg0> > out_<id>.txt", max_reschedules=1)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute_complete(context, event_for(handle, "lost", "r0m0: dead", lost=["r0m0"]))
    new = deferred.value.trigger.handle
    assert (new.round, new.managers, new.round_tasks) == (1, ("r1m0",), 3)
    assert context["ti"].xcoms[HANDLE_XCOM_KEY]["round"] == 1
    # The orphaned attempts of the lost manager were stopped (fenced) first.
    assert Path(engine.layout.manager_file("r0m0", "cancelled")).exists()
    op.on_kill()


def test_lost_event_without_reschedules_left_fails_the_unfinished_tasks(tmp_path, stand_in_context):
    engine, handle = started_swarm(tmp_path, "sleep 30; echo <arg0> > out_<id>.txt")
    kill_manager(engine, "r0m0")
    context = stand_in_context("layer_lost_final")
    op = operator_for(tmp_path, "unused", max_reschedules=0, max_failed_fraction=1.0)
    summary = op.execute_complete(context, event_for(handle, "lost", "r0m0: dead", lost=["r0m0"]))
    assert context["ti"].xcoms["failed"] == summary["failed_first"] == ["0", "1", "2"]
    assert all(r.startswith("never ") and "its manager was lost (r0m0: dead)" in r for r in summary["reasons"].values())


def test_error_event_on_an_ended_swarm_gathers_what_exists(tmp_path, stand_in_context):
    engine, handle = started_swarm(tmp_path, "echo <arg0> > out_<id>.txt", start=False)
    engine.cancel()  # never started: the round is over, its tasks never ran
    context = stand_in_context("layer_error_ended")
    op = operator_for(tmp_path, "unused", max_failed_fraction=1.0)
    summary = op.execute_complete(context, event_for(handle, "error", "the host could not be polled 9 times", reason="unreachable"))
    assert context["ti"].xcoms["failed"] == summary["failed_first"] == ["0", "1", "2"]
    assert set(summary["reasons"].values()) == {"never started: unknown: lost track of the swarm: the host could not be polled 9 times"}


def test_error_event_on_a_running_swarm_fails_saying_a_retry_resumes_it(tmp_path, stand_in_context):
    engine, handle = started_swarm(tmp_path, "sleep 30")
    context = stand_in_context("layer_error_live")
    with pytest.raises(SwarmLostTrackError, match="It is still running in .*a retry resumes watching it"):
        operator_for(tmp_path, "unused").execute_complete(context, event_for(handle, "error", "boom", reason="unreachable"))
    assert engine.live_round() is not None  # left running for the retry
    engine.cancel()


def test_error_event_of_a_local_swarm_not_visible_stops_it_from_its_own_host(tmp_path, stand_in_context):
    engine, handle = started_swarm(tmp_path, "sleep 30")
    context = stand_in_context("layer_not_visible")
    with pytest.raises(SwarmLostTrackError, match=r"It was stopped \(r0m0: stopped\)"):
        operator_for(tmp_path, "unused").execute_complete(
            context, event_for(handle, "error", "watched from host B.", reason=NOT_VISIBLE)
        )
    assert engine.live_round() is None


def test_airflow_giving_up_on_the_deferred_task_stops_the_swarm(tmp_path, stand_in_context):
    engine, handle = started_swarm(tmp_path, "sleep 30")
    context = stand_in_context("layer_timeout")
    context["ti"].xcom_push(HANDLE_XCOM_KEY, handle.to_dict())
    with pytest.raises(SwarmLostTrackError, match=r"gave up on the deferred task .*the swarm was stopped \(r0m0: stopped\)"):
        operator_for(tmp_path, "unused").resume_execution("__fail__", {"error": "Trigger timeout"}, context)
    assert engine.live_round() is None


def test_local_mode_is_refused_on_a_deployment_that_may_run_steps_elsewhere(tmp_path, stand_in_context, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    op = operator_for(tmp_path, "echo <arg0> > out_<id>.txt")
    with pytest.raises(LocalModeRefusedError, match=r"CeleryExecutor.*ssh_conn_id.*deferrable=False"):
        op.execute(stand_in_context("layer_refused"))
    assert not (tmp_path / "swarms").exists()
    # Watched by the worker that started it, local mode works on any deployment.
    context = stand_in_context("layer_refused")
    summary = operator_for(tmp_path, "echo <arg0> > out_<id>.txt", deferrable=False).execute(context)
    assert (summary["succeeded_count"], context["ti"].xcoms["succeeded"]) == (3, ["0", "1", "2"])


def test_execution_timeout_in_the_worker_stops_the_swarm(run_dag, tmp_path):
    """Not deferrable: Airflow's own timeout interrupts the watch and calls on_kill(), which
    stops the managers and their tasks."""
    from datetime import datetime, timedelta

    from airflow.sdk import DAG

    pids = tmp_path / "pids"
    pids.mkdir()
    with DAG("layer_worker_timeout", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        operator_for(
            tmp_path, f"echo $$ > {pids}/<id>; sleep 600", deferrable=False, execution_timeout=timedelta(seconds=8),
            swarm_id="worker-timeout", poll_interval=0.5,
        )
    started = time.monotonic()
    result = run_dag(dag)
    assert result.task_states() == {"swarm": "failed"}
    assert time.monotonic() - started < 90
    recorded = [int(p.read_text()) for p in pids.iterdir()]
    assert len(recorded) == 2  # two processes: the first two tasks had started

    def alive(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 20
    while any(alive(p) for p in recorded) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [p for p in recorded if alive(p)] == []
    assert (tmp_path / "swarms" / "worker-timeout" / "exec" / "cancelled_r0m0").exists()


def test_a_swarm_that_cannot_be_polled_fails_the_task_with_what_was_known(tmp_path, stand_in_context):
    engine, handle = started_swarm(tmp_path, "[ <arg0> = 0 ] && echo <arg0> > out_<id>.txt || sleep 30")
    deadline = time.monotonic() + 20
    events = Path(engine.layout.manager_file("r0m0", "events"))
    while " 0 end 0 " not in (events.read_text() if events.exists() else ""):
        assert time.monotonic() < deadline, "task 0 did not end"
        time.sleep(0.1)
    poll_script = Path(engine.layout.poll_script)
    poll_script.write_text("echo 'poll.sh: Input/output error' >&2; exit 5\n")  # a broken poll, not a lost connection
    event = run_trigger(trigger_for(handle))
    assert (event["status"], event["reason"]) == ("error", POLL_FAILED)
    context = stand_in_context("layer_unpollable")
    with pytest.raises(SwarmLostTrackError, match=r"Whether it still runs in .* is unknown .*Input/output error.*The manifest holds what was known"):
        operator_for(tmp_path, "unused").execute_complete(context, event)
    manifest = {e["id"]: e for e in map(json.loads, (tmp_path / "out" / "locusts_manifest.sw.jsonl").read_text().splitlines())}
    assert manifest["0"]["state"] == "succeeded" and (tmp_path / "out" / "out_0.txt").read_text() == "0\n"
    assert manifest["1"]["reason"].startswith("never finished: unknown: lost track of the swarm: the swarm's poll failed")
    assert context["ti"].xcoms["succeeded"] == ["0"]
    engine.cancel()
