"""Child process of bench_example1.py: run the Example 1 DAG once with dag.test() and report timings.

Run by bench_example1.py in a fresh interpreter whose environment already points
AIRFLOW_HOME at a private, migrated SQLite home and LOCUSTS_EXAMPLE_DIR at a fresh
folder.  Prints one line ``@result <json>`` at the end; everything else it prints is
Airflow's own output.

    python benchmarks/_example1_driver.py
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "dags_examples" / "example1_local.py"
SWARM_TASK = "swarm"


def load_example_dag():
    spec = importlib.util.spec_from_file_location("example1_local_bench", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.example_dag


def register(dag) -> None:
    """dag.test() needs the DAG serialized in the database (as tests/e2e/conftest.py does it)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)


def task_instances(dag_id: str, run_id: str) -> dict[str, dict]:
    from sqlalchemy import select

    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)).all()
        return {
            ti.task_id: {
                "state": str(ti.state),
                "start": ti.start_date.timestamp() if ti.start_date else None,
                "end": ti.end_date.timestamp() if ti.end_date else None,
                "duration": ti.duration,
                "try_number": ti.try_number,
            }
            for ti in tis
        }


def swarm_root_times(example_dir: Path) -> dict:
    """Epochs the swarm root recorded: round prepared, first task start, last task end, manager done."""
    roots = list((example_dir / "swarms").iterdir())
    if len(roots) != 1:
        return {}
    exec_dir = roots[0] / "exec"
    ledger = json.loads((exec_dir / "ledger.json").read_text())
    starts, ends, failed = [], [], 0
    for events in exec_dir.glob("events_*"):
        for line in events.read_text().splitlines():
            fields = line.split()
            if fields[2] == "start":
                starts.append(float(fields[0]))
            elif fields[2] == "end":
                ends.append(float(fields[0]))
                failed += fields[3] != "0" or fields[5] != "0"
    done = [float(p.read_text().strip()) for p in exec_dir.glob("done_*")]
    return {
        "prepared_at": ledger["rounds"][-1]["prepared_at"] if ledger["rounds"] else None,
        "first_start": min(starts) if starts else None,
        "last_end": max(ends) if ends else None,
        "manager_done": max(done) if done else None,
        "task_ends": len(ends),
        "task_failed": failed,
    }


def main() -> None:
    example_dir = Path(os.environ["LOCUSTS_EXAMPLE_DIR"])
    dag = load_example_dag()
    register(dag)
    t0 = time.time()
    run = dag.test()
    wall = time.time() - t0
    tis = task_instances(run.dag_id, run.run_id)
    outputs = [p for p in (example_dir / "output").rglob("*_output_*.txt")]
    result = {
        "dag_state": str(run.state),
        "dag_test_wall": wall,
        "dag_test_started": t0,
        "tasks": tis,
        "root": swarm_root_times(example_dir),
        "outputs_collected": len(outputs),
    }
    print("@result " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
