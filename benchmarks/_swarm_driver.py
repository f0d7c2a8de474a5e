"""Child process of the benchmarks: one LocustsSwarmOperator task run with dag.test(), timed.

Run in a fresh interpreter whose environment points AIRFLOW_HOME at a private, migrated
SQLite home. Takes one JSON argument: the operator's keyword arguments plus "dag_id".
Prints one line ``@result <json>`` at the end (everything else is Airflow's own output):
the task instance's start and end, the epochs the swarm root recorded, the sizes of the
swarm task's XComs as stored, and this process's peak memory (dag.test() runs the task, its
trigger and the resumed task in this one process).

    python benchmarks/_swarm_driver.py '{"dag_id": "bench", "command": "true", ...}'
"""

from __future__ import annotations

import json
import os
import re
import resource
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

SWARM_TASK = "swarm"
_TASK_STARTED = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z .*\bTask started\b", re.M)


def task_started_at(log_text: str) -> float | None:
    """Epoch of the swarm task's first "Task started" (the execution API's log line, as a worker
    of a running deployment would reach it). Before it, a fresh dag.test() process spends
    seconds building its in-process execution API, inside the task instance's start_date."""
    found = _TASK_STARTED.search(log_text)
    if not found:
        return None
    return datetime.fromisoformat(found.group(1)).replace(tzinfo=timezone.utc).timestamp()


def build_dag(config: dict):
    from airflow.sdk import DAG

    from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator

    kwargs = dict(config)
    dag_id = kwargs.pop("dag_id")
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        LocustsSwarmOperator(task_id=SWARM_TASK, deferrable=kwargs.pop("deferrable", True), **kwargs)
    return dag


def register(dag) -> None:
    """dag.test() needs the DAG serialized in the database (as tests/e2e/conftest.py does it)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)


def task_instance(dag_id: str, run_id: str) -> dict:
    from sqlalchemy import select

    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == SWARM_TASK)
        ).one()
        return {
            "state": str(ti.state),
            "start": ti.start_date.timestamp() if ti.start_date else None,
            "end": ti.end_date.timestamp() if ti.end_date else None,
        }


def xcom_sizes(dag_id: str, run_id: str) -> dict[str, int]:
    """Bytes of each XCom of the swarm task as the metadata database stores it."""
    from sqlalchemy import func, select

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(
            select(XComModel.key, func.length(XComModel.value)).where(
                XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.task_id == SWARM_TASK
            )
        ).all()
    return {key: int(size or 0) for key, size in rows}


def root_times(work_root: Path) -> dict:
    """Epochs the swarm root recorded: round prepared, first task start, last task end, managers done."""
    roots = [p for p in work_root.iterdir() if (p / "exec" / "ledger.json").exists()]
    if len(roots) != 1:
        return {}
    exec_dir = roots[0] / "exec"
    ledger = json.loads((exec_dir / "ledger.json").read_text())
    first_start = last_end = None
    ends = failed = 0
    for events in exec_dir.glob("events_*"):
        with open(events, "rb") as f:
            for line in f:
                fields = line.split()
                when = float(fields[0])
                if fields[2] == b"start":
                    first_start = when if first_start is None else min(first_start, when)
                elif fields[2] == b"end":
                    last_end = when if last_end is None else max(last_end, when)
                    ends += 1
                    failed += fields[3] != b"0" or fields[5] != b"0"
    done = [float(p.read_text().strip()) for p in exec_dir.glob("done_*")]
    return {
        "root": str(roots[0]),
        "prepared_at": ledger["rounds"][-1]["prepared_at"] if ledger["rounds"] else None,
        "first_start": first_start,
        "last_end": last_end,
        "managers_done": max(done) if done else None,
        "task_ends": ends,
        "task_failed": failed,
    }


class CpuSampler(threading.Thread):
    """This process's CPU time (all its threads: dag.test(), the trigger) and its waited-for
    children's (the trigger's polls), sampled every SAMPLE_S: what Airflow itself spends
    while the swarm runs."""

    SAMPLE_S = 0.1

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float, float]] = []  # (epoch, own CPU s, children's CPU s)
        self._stopped = threading.Event()

    def run(self) -> None:
        while True:
            t = os.times()
            self.samples.append((time.time(), t.user + t.system, t.children_user + t.children_system))
            if self._stopped.wait(self.SAMPLE_S):
                return

    def stop(self) -> None:
        self._stopped.set()
        self.join()

    def between(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds spent from `start` to `end` (epochs), from the nearest samples."""
        def at(when: float) -> tuple[float, float, float]:
            return min(self.samples, key=lambda sample: abs(sample[0] - when))

        a, b = at(start), at(end)
        return {"own": b[1] - a[1], "children": b[2] - a[2], "seconds": b[0] - a[0]}


def main() -> None:
    # The configuration itself, or @FILE holding it (argument lists of a big swarm exceed argv's limits).
    arg = sys.argv[1]
    config = json.loads(Path(arg[1:]).read_text() if arg.startswith("@") else arg)
    dag = build_dag(config)
    register(dag)
    sampler = CpuSampler()
    sampler.start()
    t0 = time.time()
    run = dag.test()
    wall = time.time() - t0
    sampler.stop()
    result = {
        "dag_state": str(run.state),
        "dag_test_wall": wall,
        "ti": task_instance(dag.dag_id, run.run_id),
        "xcom_bytes": xcom_sizes(dag.dag_id, run.run_id),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    work_root = Path(config["work_root"])
    if work_root.exists():
        result["root_times"] = times = root_times(work_root)
        if times.get("first_start") and times.get("managers_done"):
            result["cpu_in_run"] = sampler.between(times["first_start"], times["managers_done"])
    print("@result " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
