"""Dynamic task mapping and Assets, in real dag.test() runs: a mapped swarm task runs one swarm
per map index (its own root, outputs, XComs, handle and Swarm link), a downstream task reads
every map index's summary, and each successful swarm's asset event carries its figures."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from airflow.sdk import DAG, Asset, task

from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator

pytestmark = pytest.mark.e2e

# Map index 0 runs three tasks, map index 1 two; task "1" of map index 1 fails (value 5).
MAPPED_ARGS = [[[1], [2], [3]], [[4], [5]]]
COMMAND = "if [ <arg0> = 5 ]; then echo five is bad >&2; exit 5; fi; echo value <arg0> > o_<id>.txt"


def rows(model, dag_id: str, run_id: str, **where):
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = select(model).where(model.dag_id == dag_id, model.run_id == run_id)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return session.scalars(query).all()


def xcom(dag_id: str, run_id: str, key: str, map_index: int):
    from airflow.models.xcom import XComModel

    found = rows(XComModel, dag_id, run_id, task_id="swarm", key=key, map_index=map_index)
    assert len(found) == 1, (key, map_index, found)
    return XComModel.deserialize_value(found[0])


def asset_events(uri: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = session.scalars(select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id).where(AssetModel.uri == uri)).all()
        return [dict(e.extra or {}) for e in events]


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "in-worker"])
def test_a_mapped_swarm_runs_one_swarm_per_map_index_and_its_assets_carry_the_figures(run_dag, tmp_path, deferrable):
    dag_id = f"mapped_swarms_{deferrable}"
    outputs = Asset(name=f"swarm_outputs_{deferrable}", uri=f"file://{tmp_path}/out")
    seen: list = []
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        swarms = LocustsSwarmOperator.partial(
            task_id="swarm",
            command=COMMAND,
            outputs=["o_<id>.txt"],
            output_dir=str(tmp_path / "out" / "{{ ti.map_index }}"),  # one folder per map index
            work_root=str(tmp_path / "swarms"),
            processes=2,
            poll_interval=0.5,
            max_failed_fraction=0.5,
            deferrable=deferrable,
            outlets=[outputs],
        ).expand(args=MAPPED_ARGS)

        @task
        def totals(summaries) -> list[int]:
            got = [s["succeeded_count"] for s in summaries]
            seen.append(got)
            return got

        totals(swarms.output)

    result = run_dag(dag)

    from airflow.models.taskinstance import TaskInstance

    tis = rows(TaskInstance, dag_id, result.run_id, task_id="swarm")
    assert sorted((ti.map_index, str(ti.state)) for ti in tis) == [(0, "success"), (1, "success")]
    assert xcom(dag_id, result.run_id, "return_value", 0)["succeeded_count"] == 3
    assert xcom(dag_id, result.run_id, "succeeded", 0) == ["0", "1", "2"]
    assert xcom(dag_id, result.run_id, "succeeded", 1) == ["0"]
    assert xcom(dag_id, result.run_id, "failed", 1) == ["1"]
    # Each map index had its own swarm (the map index is part of the default swarm id) and outputs.
    roots = {i: Path(xcom(dag_id, result.run_id, "locusts_swarm", i)["root"]) for i in (0, 1)}
    assert roots[0] != roots[1] and roots[0].name.split(".")[-2:-1] == ["0"] and roots[1].name.split(".")[-2:-1] == ["1"]
    assert all(root.parent == tmp_path / "swarms" and (root / "exec" / "results.jsonl").is_file() for root in roots.values())
    assert sorted(p.name for p in (tmp_path / "out" / "0").glob("o_*")) == ["o_0.txt", "o_1.txt", "o_2.txt"]
    assert (tmp_path / "out" / "0" / "o_2.txt").read_text() == "value 3\n"
    assert sorted(p.name for p in (tmp_path / "out" / "1").glob("o_*")) == ["o_0.txt"]
    assert (tmp_path / "out" / "1" / "o_0.txt").read_text() == "value 4\n"
    # Downstream, the summaries of every map index, in map index order.
    assert seen == [[3, 1]]
    # The Swarm link of each map index opens that map index's view.
    from airflow.models.taskinstancekey import TaskInstanceKey

    from airflow_provider_locusts.www.links import SwarmLink

    link = SwarmLink().get_link(dag.get_task("swarm"), ti_key=TaskInstanceKey(dag_id, "swarm", result.run_id, 1, 1))
    assert "map_index=1" in link and f"dag_id={dag_id}" in link
    # One asset event per successful swarm, with its figures (never the id lists).
    extras = sorted(asset_events(outputs.uri), key=lambda e: e["locusts"]["total"])
    assert [e["locusts"]["total"] for e in extras] == [2, 3]
    assert [(e["locusts"]["succeeded_count"], e["locusts"]["failed_count"]) for e in extras] == [(1, 1), (3, 0)]
    assert extras[1]["locusts"]["output_dir"] == str(tmp_path / "out" / "0")
    assert Path(extras[1]["locusts"]["manifest"]).is_file()
    assert all("succeeded" not in e["locusts"] for e in extras)


def test_a_swarm_over_its_failure_threshold_emits_no_asset_event(run_dag, tmp_path):
    outputs = Asset(name="swarm_outputs_failing", uri=f"file://{tmp_path}/out")
    with DAG("swarm_asset_failing", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        LocustsSwarmOperator(
            task_id="swarm", args=[[4], [5]], command=COMMAND, outputs=["o_<id>.txt"], output_dir=str(tmp_path / "out"),
            work_root=str(tmp_path / "swarms"), processes=2, poll_interval=0.5, max_failed_fraction=0.0, outlets=[outputs],
            retries=0,
        )
    result = run_dag(dag)
    assert result.task_states() == {"swarm": "failed"}
    assert asset_events(outputs.uri) == []
