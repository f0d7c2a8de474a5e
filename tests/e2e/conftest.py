"""Real Airflow for end-to-end tests: a private AIRFLOW_HOME on the embedded SQLite database.

Airflow reads its configuration when first imported, so the environment is set here,
before any test module of this folder imports it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

if "airflow" not in sys.modules:
    _home = Path(tempfile.mkdtemp(prefix="locusts-airflow-home-"))
    (_home / "dags").mkdir()
    os.environ["AIRFLOW_HOME"] = str(_home)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_home / "dags")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """`airflow db migrate` once per session, on SQLite in the private AIRFLOW_HOME."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        timeout=300,
        env=os.environ.copy(),
    )
    return Path(os.environ["AIRFLOW_HOME"])


@pytest.fixture
def run_dag(airflow_db):
    """Run a DAG object with dag.test() and return (dag run, {task_id: state}, xcom getter)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    def _run(dag, **test_kwargs):
        # dag.test() needs the DAG serialized in the database; bag the in-memory DAG directly
        # instead of parsing a file.
        DagBundlesManager().sync_bundles_to_db()
        bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
        bag.bag_dag(dag)
        sync_bag_to_db(bag, "dags-folder", None)
        dag_run = dag.test(**test_kwargs)
        return DagRunResult(dag_run)

    return _run


def raised(output: str) -> list[str]:
    """The `Type: message` lines (module path left out) ending the tracebacks in what a
    dag.test() run printed (capture it with pytest's capfd): what failed the tasks, in order."""
    return re.findall(r"^(?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*(?:Error|Exception): .*)$", output, re.MULTILINE)


class DagRunResult:
    """What a test reads back from the metadata database after dag.test()."""

    def __init__(self, dag_run):
        self.dag_run = dag_run
        self.run_id = dag_run.run_id
        self.state = str(dag_run.state)

    def task_states(self) -> dict[str, str]:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            tis = session.scalars(
                select(TaskInstance).where(TaskInstance.dag_id == self.dag_run.dag_id, TaskInstance.run_id == self.run_id)
            ).all()
            return {ti.task_id: str(ti.state) for ti in tis}

    def try_number(self, task_id: str) -> int:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            ti = session.scalars(
                select(TaskInstance).where(
                    TaskInstance.dag_id == self.dag_run.dag_id,
                    TaskInstance.run_id == self.run_id,
                    TaskInstance.task_id == task_id,
                )
            ).one()
            return ti.try_number

    def xcom(self, task_id: str, key: str = "return_value"):
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            rows = session.scalars(
                XComModel.get_many(run_id=self.run_id, key=key, task_ids=task_id, dag_ids=self.dag_run.dag_id)
            ).all()
            if not rows:
                raise KeyError(f"no XCom {key!r} from {task_id}")
            return XComModel.deserialize_value(rows[0])


class OnDeferral(threading.Thread):
    """Calls `action()` once try `try_number` of task `task_id` in DAG `dag_id` has deferred,
    i.e. its execute() has looked at the swarm and handed it to a trigger — read from the
    metadata database while dag.test() runs the trigger — or after `timeout` seconds, with
    `timed_out` set, so a swarm held for the test is released in any case.

    Tests hold their swarm's tasks on a gate file that `action` creates: the swarm is then
    certainly still running when the operator looks at it, however slow the machine.
    """

    def __init__(self, dag_id: str, task_id: str, try_number: int, action: Callable[[], None], timeout: float = 300.0):
        super().__init__(daemon=True, name=f"on-deferral-{dag_id}")
        self.dag_id, self.task_id, self.try_number = dag_id, task_id, try_number
        self.action, self.timeout = action, timeout
        self.timed_out = False
        self.error: BaseException | None = None

    def deferred(self) -> bool:
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            tis = session.scalars(
                select(TaskInstance).where(TaskInstance.dag_id == self.dag_id, TaskInstance.task_id == self.task_id)
            ).all()
            # A deferral sets next_method; a failed try's retry clears it again.
            return any(ti.try_number == self.try_number and ti.next_method for ti in tis)

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        try:
            while not self.deferred():
                if time.monotonic() > deadline:
                    self.timed_out = True
                    break
                time.sleep(0.1)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error
        finally:
            self.action()

    def check(self) -> None:
        """Fail the test if the deferral was never seen."""
        self.join(timeout=30)
        assert self.error is None, f"watching for the deferral failed: {self.error!r}"
        assert not self.timed_out, (
            f"{self.dag_id}.{self.task_id} try {self.try_number} never deferred within {self.timeout}s"
        )
