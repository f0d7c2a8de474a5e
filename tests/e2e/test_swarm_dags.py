"""Swarm DAGs run for real with dag.test(): failures and reasons, the non-deferrable path,
Airflow retries resuming a swarm, bad input refused before staging, branching on failures."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from airflow.sdk import DAG

from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator

from .conftest import raised
from .test_example1_dag import load_example

pytestmark = pytest.mark.e2e

FAILING = {"5": "exit code 7; missing outputs: b_5.txt", "50": "missing outputs: b_50.txt", "99": "exit code 1"}


def make_inputs(folder: Path, n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        (folder / f"in_{i}.txt").write_text(f"value {i}\n")
    (folder / "common.txt").write_text("common\n")
    return folder


def swarm_dag(dag_id: str, tmp_path: Path, command: str, n: int = 101, **operator_kwargs) -> DAG:
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        LocustsSwarmOperator(
            task_id="swarm",
            command=command,
            input_dir=str(make_inputs(tmp_path / "in", n)),
            task_inputs=["in_<id>.txt"],
            shared_inputs={"common": "common.txt"},
            outputs=["a_<id>.txt", "b_<id>.txt"],
            output_dir=str(tmp_path / "out"),
            work_root=str(tmp_path / "swarms"),
            processes=4,
            poll_interval=0.5,
            **operator_kwargs,
        )
    return dag


# Task 5 exits 7, task 50 does not write b_50.txt, task 99 exits 1 after writing both.
THREE_FAILURES = (
    'cat in_<id>.txt <shared>common > a_<id>.txt; '
    'if [ <id> = 5 ]; then exit 7; fi; '
    'if [ <id> != 50 ]; then cp a_<id>.txt b_<id>.txt; fi; '
    'if [ <id> = 99 ]; then exit 1; fi'
)


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_three_failing_tasks_are_listed_with_reasons(run_dag, tmp_path, deferrable):
    dag = swarm_dag(f"three_failures_{deferrable}", tmp_path, THREE_FAILURES, max_failed_fraction=0.05, deferrable=deferrable)
    result = run_dag(dag)

    assert result.task_states() == {"swarm": "success"}
    summary = result.xcom("swarm")
    assert sorted(result.xcom("swarm", key="failed"), key=int) == ["5", "50", "99"]
    assert summary["failed_first"] == result.xcom("swarm", key="failed")
    assert result.xcom("swarm", key="succeeded") == [str(i) for i in range(101) if str(i) not in FAILING]
    assert summary["reasons"] == FAILING
    assert (summary["total"], summary["succeeded_count"], summary["failed_count"]) == (101, 98, 3)
    assert "succeeded" not in summary and "failed" not in summary  # each id list is written once
    out = tmp_path / "out"
    for i in range(101):
        expected = (str(i) not in FAILING)
        assert (out / f"a_{i}.txt").exists() == expected
        assert (out / f"b_{i}.txt").exists() == expected
    assert (out / "a_3.txt").read_text() == "value 3\ncommon\n"


def test_too_many_failures_fail_the_airflow_task_with_a_pointer_to_logs(run_dag, tmp_path, capfd):
    dag = swarm_dag("too_many_failures", tmp_path, THREE_FAILURES, max_failed_fraction=0.0)
    result = run_dag(dag)

    assert result.task_states() == {"swarm": "failed"}
    # The lists are pushed before the task fails, for downstream tasks that run anyway.
    assert sorted(result.xcom("swarm", key="failed"), key=int) == ["5", "50", "99"]
    assert len(result.xcom("swarm", key="succeeded")) == 98
    # The task's error says how many failed, why, where each failed task's logs are, and
    # where the manifest is.
    (message,) = raised(capfd.readouterr().out)
    assert "Error: 3 of 101 tasks failed (allowed fraction 0.0). First failures: " in message
    (manifest,) = (tmp_path / "out").glob("locusts_manifest.*.jsonl")
    assert message.endswith(f". Manifest: {manifest}")
    entries = {m["id"]: m for m in map(json.loads, manifest.read_text().splitlines())}
    for task_id, reason in FAILING.items():
        folder = Path(entries[task_id]["folder"])
        assert f"{task_id}: {reason} (logs in {folder})" in message
        # The folder holds what the task had and made; its logs were empty, so none is kept.
        assert (folder / f"in_{task_id}.txt").is_file() and (folder / f"a_{task_id}.txt").is_file()
        assert not (folder / "stdout.txt").exists() and not (folder / "stderr.txt").exists()


def test_airflow_retry_reruns_only_tasks_that_did_not_succeed(run_dag, tmp_path):
    counters = tmp_path / "counters"
    counters.mkdir()
    # Tasks 3, 30 and 60 fail on their first run only; every run is counted per task.
    command = (
        f'echo run >> {counters}/<id>; '
        'case <id> in 3|30|60) '
        f'  if [ ! -e {counters}/<id>.failed-once ]; then touch {counters}/<id>.failed-once; exit 4; fi;; '
        'esac; '
        'cp in_<id>.txt a_<id>.txt; cp in_<id>.txt b_<id>.txt'
    )
    dag = swarm_dag("retry_resume", tmp_path, command, n=80, retries=1, retry_delay=timedelta(seconds=0))
    result = run_dag(dag)

    assert result.task_states() == {"swarm": "success"}
    assert result.try_number("swarm") == 2
    assert result.xcom("swarm", key="failed") == []
    assert result.xcom("swarm", key="succeeded") == [str(i) for i in range(80)]
    for i in range(80):
        runs = (counters / str(i)).read_text().count("run")
        assert runs == (2 if i in (3, 30, 60) else 1), f"task {i} ran {runs} times"
        assert (tmp_path / "out" / f"a_{i}.txt").read_text() == f"value {i}\n"


def test_bad_input_fails_before_anything_is_staged(run_dag, tmp_path, capfd):
    dag = swarm_dag("bad_input", tmp_path, "cat in_<id>.txt <shared>nosuch > a_<id>.txt")
    result = run_dag(dag)

    assert result.task_states() == {"swarm": "failed"}
    assert raised(capfd.readouterr().out) == [
        (
            "SwarmSpecError: "
            "command uses <shared>nosuch but shared_inputs has no 'nosuch' (known: common)."
        )
    ]
    assert not (tmp_path / "swarms").exists()
    assert not (tmp_path / "out").exists()


def test_branch_example_takes_the_failure_branch(run_dag, tmp_path, monkeypatch):
    example = load_example("example_branch_on_failures", tmp_path, monkeypatch)
    result = run_dag(example.example_dag)

    states = result.task_states()
    assert states["swarm"] == "success"
    assert states["handle_failures"] == "success"
    assert states["publish"] == "skipped"
    assert result.xcom("handle_failures") == ["6", "13", "20", "27"]
    out = Path(result.xcom("swarm")["output_dir"])
    assert (out / "square_0.txt").read_text() == "1\n"
    assert not (out / "square_6.txt").exists()


def test_cleanup_removes_the_swarm_root_after_full_success_only(run_dag, tmp_path):
    command = "cp in_<id>.txt a_<id>.txt; cp in_<id>.txt b_<id>.txt"
    result = run_dag(swarm_dag("cleanup_success", tmp_path, command, n=10, cleanup=True))

    assert result.task_states() == {"swarm": "success"}
    # The root went at once (renamed to a hidden .<swarm id>.removing-<unique>); its files go in
    # the background, soon after.
    swarms = tmp_path / "swarms"
    assert [p.name for p in swarms.iterdir() if not p.name.startswith(".")] == []
    deadline = time.monotonic() + 60
    while list(swarms.iterdir()):
        assert time.monotonic() < deadline, f"the background removal left {list(swarms.iterdir())}"
        time.sleep(0.1)
    assert (tmp_path / "out" / "a_9.txt").read_text() == "value 9\n"


def test_cleanup_keeps_the_root_when_tasks_failed(run_dag, tmp_path):
    result = run_dag(swarm_dag("cleanup_failure", tmp_path, THREE_FAILURES, cleanup=True, max_failed_fraction=0.5))

    assert result.task_states() == {"swarm": "success"}
    (root,) = (tmp_path / "swarms").iterdir()
    assert (root / "work" / "batch_0" / "task_5" / "a_5.txt").exists()  # a failed task keeps what it wrote


def test_cleanup_refuses_a_folder_that_is_not_a_swarm_root(tmp_path):
    from airflow_provider_locusts.swarm.engine import EngineOptions, SwarmEngine
    from airflow_provider_locusts.swarm.errors import SwarmExecutionError
    from airflow_provider_locusts.swarm.shell import LocalShell
    from airflow_provider_locusts.swarm.spec import build_spec

    precious = tmp_path / "my-swarm"
    precious.mkdir()
    (precious / "data.txt").write_text("mine")
    spec = build_spec(command="true", args=[[1]], output_dir=tmp_path / "out")
    engine = SwarmEngine(spec, "my-swarm", str(precious), LocalShell(), EngineOptions())
    with pytest.raises(SwarmExecutionError, match="not a swarm root"):
        engine.cleanup()
    assert (precious / "data.txt").read_text() == "mine"


def test_nothing_the_swarm_creates_is_world_writable(run_dag, tmp_path):
    result = run_dag(swarm_dag("no_world_write", tmp_path, THREE_FAILURES, n=12, max_failed_fraction=1.0))

    assert result.task_states() == {"swarm": "success"}
    created = [p for top in (tmp_path / "swarms", tmp_path / "out") for p in [top, *top.rglob("*")]]
    assert len(created) > 12 * 5
    writable = [str(p) for p in created if not p.is_symlink() and p.stat().st_mode & 0o002]
    assert writable == []
