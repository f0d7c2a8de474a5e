"""The shipped Example 1 DAG, run for real with dag.test(): 101 tasks, 202 collected outputs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def load_example(module_name: str, example_dir: Path, monkeypatch):
    monkeypatch.setenv("LOCUSTS_EXAMPLE_DIR", str(example_dir))
    path = REPO / "dags_examples" / f"{module_name}.py"
    spec = importlib.util.spec_from_file_location(f"{module_name}_under_test_{example_dir.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example1_local_collects_202_outputs_and_xcom_lists(run_dag, tmp_path, monkeypatch):
    example = load_example("example1_local", tmp_path, monkeypatch)
    result = run_dag(example.example_dag)

    assert result.task_states() == {"make_inputs": "success", "swarm": "success", "report": "success"}
    assert_example1_results(result)


def assert_example1_results(result, owner: str | None = None) -> dict:
    """Example 1's contract: XCom lists all 101 ids as succeeded, output_dir holds the 202
    outputs with the right contents (listed by `owner` when given), and the manifest agrees."""
    summary = result.xcom("swarm")
    ids = [str(i) for i in range(101)]
    assert (summary["total"], summary["succeeded_count"], summary["failed_count"], summary["failed_first"]) == (101, 101, 0, [])
    assert result.xcom("swarm", key="succeeded") == ids
    assert result.xcom("swarm", key="failed") == []

    out = Path(summary["output_dir"])
    collected = sorted(p.name for p in out.iterdir() if not p.name.startswith(("locusts_manifest.", "locusts_report.")))
    assert len(collected) == 202
    for i in range(101):
        assert (out / f"cat_output_{i}.txt").read_text() == (
            f"first input of task {i}\nsecond input of task {i}\nshared content\n"
        )
        listing = (out / f"ls_output_{i}.txt").read_text()
        assert f"inputfile_{i}.txt" in listing and f"secondinputfile_{i}.txt" in listing and "sharedfile.txt" in listing
        if owner:
            assert f" {owner} " in listing

    manifest = [json.loads(line) for line in Path(summary["manifest"]).read_text().splitlines()]
    assert [m["id"] for m in manifest] == ids
    assert {m["state"] for m in manifest} == {"succeeded"}
    assert all(m["exit_code"] == 0 and m["attempts"] == 1 for m in manifest)
    return summary
