"""Every shipped example DAG parses in Airflow without import errors."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "dags_examples"


def test_example_dags_parse(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(EXAMPLES))
    assert bag.import_errors == {}
    assert set(bag.dags) == {
        "locusts_example1_local",
        "locusts_branch_on_failures",
        "locusts_example1_slurm_ssh",
        "locusts_example1_oar_ssh",
        "locusts_daily_checksums",
        "locusts_custom_environment",
    }
    for dag in bag.dags.values():
        assert any(t.task_type == "LocustsSwarmOperator" for t in dag.tasks)
