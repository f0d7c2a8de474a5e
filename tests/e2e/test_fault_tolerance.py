"""Faults injected for real into local swarms run with dag.test(): a manager killed with
SIGKILL mid-swarm, tasks that fail once (per-task retries), and an Airflow retry that
finds the managers of an earlier try still running."""

from __future__ import annotations

import json
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
    """Task `victim` SIGKILLs its manager on its first run, then lingers; every task counts
    its starts and its completed runs outside the swarm root."""
    return (
        f'echo start >> {counters}/<id>.starts; '
        f'if [ <arg0> = {victim} ] && [ ! -e {counters}/killed ]; then '
        f'  touch {counters}/killed; read -r pid host < "$LOCUSTS_SWARM_ROOT"/exec/pid_r0m0; kill -9 "$pid"; sleep 30; '
        'fi; '
        'sleep 0.2; echo <arg0> > out_<id>.txt; '
        f'echo done >> {counters}/<id>.completed'
    )


def ledger_of(tmp_path: Path) -> dict:
    (root,) = (tmp_path / "swarms").iterdir()
    return json.loads((root / "exec" / "ledger.json").read_text())


def test_killed_manager_tasks_are_rescheduled_and_finished_tasks_keep_their_result(run_dag, tmp_path):
    counters = tmp_path / "counters"
    counters.mkdir()
    dag = args_swarm_dag(
        "kill9_reschedule", tmp_path, kill_manager_command(counters, victim=12), n=40,
        processes=2, heartbeat_interval=1, heartbeat_timeout=5, max_reschedules=1,
    )
    result = run_dag(dag)

    assert result.task_states() == {"swarm": "success"}
    assert result.xcom("swarm", key="succeeded") == [str(i) for i in range(40)] and result.xcom("swarm", key="failed") == []
    assert [r["kind"] for r in ledger_of(tmp_path)["rounds"]] == ["start", "reschedule"]
    for i in range(40):
        # Nothing that finished ran again; the victim ran twice (killed once, then rescheduled).
        assert (counters / f"{i}.completed").read_text().count("done") == 1, i
        assert (tmp_path / "out" / f"out_{i}.txt").read_text() == f"{i}\n"
    assert (counters / "12.starts").read_text().count("start") == 2


def test_without_reschedules_unfinished_tasks_fail_with_manager_lost(run_dag, tmp_path):
    counters = tmp_path / "counters"
    counters.mkdir()
    dag = args_swarm_dag(
        "kill9_no_reschedule", tmp_path, kill_manager_command(counters, victim=12), n=40,
        processes=2, heartbeat_interval=1, heartbeat_timeout=5, max_reschedules=0, max_failed_fraction=1.0,
    )
    result = run_dag(dag)

    assert result.task_states() == {"swarm": "success"}
    summary = result.xcom("swarm")
    failed = set(result.xcom("swarm", key="failed"))
    succeeded = result.xcom("swarm", key="succeeded")
    assert "12" in failed
    assert failed == {str(i) for i in range(40)} - set(succeeded)
    for task_id in failed:
        assert "manager was lost" in summary["reasons"][task_id]
        assert not (tmp_path / "out" / f"out_{task_id}.txt").exists()
    for task_id in succeeded:
        assert (counters / f"{task_id}.completed").exists()


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


def test_a_try_finds_the_running_managers_of_an_earlier_try_and_does_not_start_them_again(run_dag, tmp_path):
    from airflow_provider_locusts.swarm.engine import EngineOptions, SwarmEngine
    from airflow_provider_locusts.swarm.shell import LocalShell
    from airflow_provider_locusts.swarm.spec import build_spec

    counters = tmp_path / "counters"
    counters.mkdir()
    command = f'echo run >> {counters}/<id>; sleep 0.3; echo <arg0> > out_<id>.txt'
    dag = args_swarm_dag("resume_live", tmp_path, command, n=12, processes=2, swarm_id="resume-live")
    # An earlier try that started the swarm and died before deferring: the same engine
    # calls the operator makes, on the same swarm root.
    spec = build_spec(command=command, args=[[i] for i in range(12)], outputs=["out_<id>.txt"], output_dir=tmp_path / "out", processes=2)
    engine = SwarmEngine(spec, "resume-live", str(tmp_path / "swarms" / "resume-live"), LocalShell(), EngineOptions(heartbeat_interval=10))
    round_ = engine.prepare_round()
    engine.start(round_)

    result = run_dag(dag)

    assert result.xcom("swarm", key="succeeded") == [str(i) for i in range(12)]
    assert len(ledger_of(tmp_path)["rounds"]) == 1
    for i in range(12):
        assert (counters / str(i)).read_text().count("run") == 1
