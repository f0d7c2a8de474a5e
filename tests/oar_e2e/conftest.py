"""Swarms on the real OAR test cluster (tests/oar/): OAR 2.5 on this machine, reached over
SSH as the user `locusts` of the SSH test cluster (tests/cluster/), as on a site whose login
node has OAR's commands. OAR refuses jobs from root, so every swarm here goes over SSH.

As in tests/cluster_e2e, tests.e2e.conftest sets up Airflow's private home first.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import airflow_db, run_dag  # noqa: F401
from tests.cluster_e2e.conftest import cluster, private_airflow_home, remote_root, unique_name  # noqa: F401
from tests.support.cluster import CONN_ID  # noqa: F401
from tests.support.oar import OarCluster, running_oar
from tests.support.processes import wait_until  # noqa: F401


@pytest.fixture(scope="session")
def oar(cluster) -> OarCluster:  # noqa: F811 - the SSH cluster comes first: the swarms go over SSH
    return running_oar()


@pytest.fixture
def oar_guard(oar):
    """Teardown safety net: on_kill of the watched operators, then oardel of every OAR job
    not finished whose name holds a watched swarm id (job names are
    `locusts-<manager>-<first 40 chars of the swarm id>`)."""
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
        oar.delete_jobs_named(swarm_id[:40])
