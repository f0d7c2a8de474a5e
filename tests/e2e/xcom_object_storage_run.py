"""Run by test_xcom_object_storage.py in a fresh interpreter whose Airflow configuration sets
the common.io ObjectStorage XCom backend (a local file:// folder, a small threshold).

A swarm of N tasks (every 7th fails) and downstream tasks that pull its XComs the ways a DAG
author would: the return value, and the "succeeded" and "failed" lists by key, both through
`.output[...]` and `xcom_pull`. Prints one line ``@result <json>`` with what they received
and what the metadata database holds for each of the swarm's XComs.

    python tests/e2e/xcom_object_storage_run.py WORK_FOLDER N
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path


def main() -> None:
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.xcom import XComModel
    from airflow.sdk import DAG, task
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator

    work, n = Path(sys.argv[1]), int(sys.argv[2])
    with DAG("xcom_object_storage", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        swarm = LocustsSwarmOperator(
            task_id="swarm",
            command="if (( <arg0> % 7 == 3 )); then exit 3; fi; echo <arg0> > out_<id>.txt",
            args=[[i] for i in range(n)],
            outputs=["out_<id>.txt"],
            output_dir=str(work / "out"),
            work_root=str(work / "swarms"),
            processes=4,
            max_failed_fraction=0.5,
            deferrable=True,
            poll_interval=1,
        )

        @task
        def consume(succeeded: list[str], failed: list[str], summary: dict, ti=None) -> None:
            got = {"succeeded": succeeded, "failed": failed, "summary": summary, "pulled_failed": ti.xcom_pull(task_ids="swarm", key="failed")}
            (work / "received.json").write_text(json.dumps(got))

        consume(swarm.output["succeeded"], swarm.output["failed"], swarm.output)

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    run = dag.test()

    stored = {}
    with create_session() as session:
        rows = session.scalars(select(XComModel).where(XComModel.dag_id == dag.dag_id, XComModel.run_id == run.run_id)).all()
        for row in rows:  # what the metadata database itself holds
            stored[f"{row.task_id}:{row.key}"] = row.value if isinstance(row.value, str) else json.dumps(row.value)
    received = json.loads((work / "received.json").read_text()) if (work / "received.json").exists() else None
    print("@result " + json.dumps({"state": str(run.state), "received": received, "stored": stored}), flush=True)


if __name__ == "__main__":
    main()
