"""Swarm DAGs against the real test cluster (tests/cluster/): sshd on 127.0.0.1 for user
`locusts` and a one-node SLURM 22.05. The tests run as root, the Airflow side.

The Airflow environment (private AIRFLOW_HOME, SQLite) is set up when tests.e2e.conftest
is imported, which must happen before anything imports airflow: this import comes first.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import uuid
from pathlib import Path

import pytest


# First import of this module that touches Airflow's setup: tests.e2e.conftest points
# AIRFLOW_HOME at a private folder (SQLite) as long as airflow is not imported yet.
from tests.e2e.conftest import airflow_db, run_dag  # noqa: F401

from tests.support.cluster import CONN_ID, Cluster, running_cluster, skip_or_fail  # noqa: F401
from tests.support.processes import wait_until  # noqa: F401 - used by the tests of this folder


@pytest.fixture(scope="session", autouse=True)
def private_airflow_home():
    """Fail loudly if airflow was imported before tests.e2e.conftest set up its private home:
    the DAG runs would then use (and pollute) some other metadata database."""
    from airflow.configuration import AIRFLOW_HOME

    home = os.environ.get("AIRFLOW_HOME", "")
    assert Path(home).name.startswith("locusts-airflow-home-"), f"AIRFLOW_HOME is not the tests' private one: {home!r}"
    assert AIRFLOW_HOME == home, f"airflow was imported before tests/e2e/conftest.py set AIRFLOW_HOME ({AIRFLOW_HOME} != {home})"


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """The running test cluster, its cluster.env values exported to os.environ (the SSH
    connection `locusts_test_ssh` among them). Skips when it is not started, except in CI."""
    found = running_cluster()
    os.environ.update(found.env)
    return found


def unique_name(prefix: str = "cle2e") -> str:
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def remote_root(cluster):
    """A fresh folder under /home/locusts/swarms on the SSH host (copy mode); removed afterwards over SSH."""
    parent = "/home/locusts/swarms"
    created_parent = cluster.ssh(f"[ -d {parent} ] && echo yes || echo no").stdout.strip() == "no"
    path = f"{parent}/{unique_name()}"
    yield path
    cluster.ssh(f"rm -rf -- {shlex.quote(path)}", check=False)
    if created_parent:
        cluster.ssh(f"rmdir -- {parent} 2>/dev/null", check=False)  # only if still empty


@pytest.fixture
def shared_root(cluster):
    """A fresh folder name in LOCUSTS_SHARED_DIR (the same path for root and `locusts`); removed afterwards."""
    path = cluster.shared_dir / unique_name()
    yield path
    subprocess.run(["rm", "-rf", "--", str(path)], check=False, timeout=60)


@pytest.fixture
def swarm_guard(cluster):
    """Teardown safety net for tests that start swarms: cancels the watched operators'
    swarms again (idempotent) and every SLURM job still queued or running whose name holds a
    watched swarm id (job names are `locusts-<manager>-<first 40 chars of the swarm id>`;
    a derived swarm id starts with the dag id, so a dag id works too)."""
    operators, swarm_ids = [], []

    class Guard:
        def watch(self, operator=None, swarm_id: str | None = None):
            if operator is not None:
                operators.append(operator)
            if swarm_id:
                swarm_ids.append(swarm_id)

    yield Guard()
    for operator in operators:
        try:
            operator.on_kill()
        except Exception:  # noqa: BLE001 - teardown must not hide the test's own failure
            pass
    for swarm_id in swarm_ids:
        cluster.cancel_jobs_named(swarm_id[:40])
