"""The Custom Environment through Airflow, with dag.test(): the shipped example, an Airflow retry
that runs only the failed tasks again, and bad input refused before anything is staged."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from airflow.sdk import DAG

from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator

from tests.support.trees import change_lists, files_below, fingerprint, make_tree, read_manifest

from .test_example1_dag import load_example

pytestmark = pytest.mark.e2e


def test_the_example_program_runs_in_its_tree_and_its_changes_are_collected(run_dag, tmp_path, monkeypatch):
    example = load_example("example_custom_environment", tmp_path, monkeypatch)
    tree, _ = example.make_tree_and_inputs(tmp_path)
    before = fingerprint(tree)
    result = run_dag(example.example_dag)

    assert result.task_states() == {"prepare": "success", "swarm": "success", "report": "success"}
    ids = [str(i) for i in range(example.SAMPLES)]
    summary = result.xcom("swarm")
    assert (summary["succeeded_count"], summary["failed_count"]) == (len(ids), 0)
    assert result.xcom("swarm", key="succeeded") == ids and result.xcom("swarm", key="failed") == []

    out = Path(summary["output_dir"])
    manifest = read_manifest(summary["manifest"])
    for i in range(example.SAMPLES):
        assert change_lists(manifest[str(i)]) == {
            "created": [f"done/sample_{i}.txt", f"results/sample_{i}.txt"],
            "modified": ["logs/measure.log"],
            "deleted": [f"inbox/sample_{i}.txt"],
        }
        assert files_below(out / f"task_{i}") == {
            f"results/sample_{i}.txt": "".join(f"{v * 3} km\n" for v in range(i, i + 3)).encode(),
            f"done/sample_{i}.txt": "".join(f"{v}\n" for v in range(i, i + 3)).encode(),
            "logs/measure.log": f"measure.log of the tree\nsample {i}: 3 values scaled by 3\n".encode(),
        }
    assert fingerprint(tree) == before


def retry_dag(dag_id: str, tmp_path: Path, command: str, **kwargs) -> DAG:
    tree = make_tree(tmp_path / "tree", {"conf/app.ini": "v=1\n", "results/keep.txt": "keep\n"}, ("inbox",))
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(10):
        (inputs / f"in_{i}.txt").write_text(f"{i}\n")
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        LocustsSwarmOperator(
            task_id="swarm",
            command=command,
            input_dir=str(inputs),
            task_inputs=["in_<id>.txt"],
            environment_dir=str(tree),
            environment_writable=["results", "inbox"],
            environment_inputs_dir="inbox",
            outputs=["results/out_<id>.txt"],
            output_dir=str(tmp_path / "out"),
            work_root=str(tmp_path / "swarms"),
            processes=3,
            poll_interval=0.5,
            **kwargs,
        )
    return dag


def test_an_airflow_retry_reruns_only_the_failed_tasks_each_in_a_fresh_replica(run_dag, tmp_path):
    counters = tmp_path / "counters"
    counters.mkdir()
    # Tasks 2 and 7 fail on their first run only, after changing their replica.
    command = (
        f"echo run >> {counters}/<id>; echo dirty >> results/keep.txt; "
        f"case <id> in 2|7) if [ ! -e {counters}/<id>.once ]; then touch {counters}/<id>.once; exit 5; fi;; esac; "
        "cat conf/app.ini inbox/in_<id>.txt results/keep.txt > results/out_<id>.txt"
    )
    dag = retry_dag("environment_retry", tmp_path, command, retries=1, retry_delay=timedelta(seconds=0))
    before = fingerprint(tmp_path / "tree")
    result = run_dag(dag)

    assert result.task_states() == {"swarm": "success"}
    assert result.try_number("swarm") == 2
    assert result.xcom("swarm", key="succeeded") == [str(i) for i in range(10)] and result.xcom("swarm", key="failed") == []
    runs = {i: (counters / str(i)).read_text().count("run") for i in range(10)}
    assert runs == {i: 2 if i in (2, 7) else 1 for i in range(10)}
    for i in range(10):
        # A fresh replica each time: keep.txt has the tree's line and one "dirty", never two.
        assert (tmp_path / "out" / f"task_{i}" / "results" / f"out_{i}.txt").read_text() == f"v=1\n{i}\nkeep\ndirty\n"
    assert fingerprint(tmp_path / "tree") == before


@pytest.mark.parametrize(
    "name, settings",
    [
        ("missing_tree", {"environment_dir": "/nonexistent/tree"}),
        ("workdir_outside", {"environment_workdir": "../.."}),
        ("pattern_matching_nothing", {"environment_writable": ["results", "nothing*"]}),
    ],
)
def test_bad_environment_input_fails_before_anything_is_staged(run_dag, tmp_path, name, settings):
    dag = retry_dag(f"environment_bad_{name}", tmp_path, "true")
    operator = dag.get_task("swarm")
    for key, value in settings.items():
        setattr(operator, key, value)
    result = run_dag(dag)

    assert result.task_states() == {"swarm": "failed"}
    assert not (tmp_path / "swarms").exists()
    assert not (tmp_path / "out").exists()
