"""Real Airflow services for tests: scheduler, dag-processor, triggerer and api-server, each
started here as its own subprocess, on SQLite in a private AIRFLOW_HOME (a temp folder).

Nothing here imports Airflow: the services get their whole configuration from the
environment built below (every inherited AIRFLOW* variable is dropped), and the tests
talk to them through the REST API only, so this module never touches the Airflow
configuration of the test process (tests/e2e relies on importing Airflow first).

What Airflow 3.3 needs to run like this on SQLite:
- LocalExecutor works on SQLite (it is what `airflow standalone` forces);
- the workers reach the api-server through [core] execution_api_server_url, so it must
  name the api-server's port (http://127.0.0.1:PORT/execution/);
- [api_auth] jwt_secret (and [api] secret_key) must be the same in every process: set
  explicitly here instead of relying on the generated airflow.cfg;
- SimpleAuthManager with [core] simple_auth_manager_all_admins=True lets the tests call
  the REST API without a token;
- the scheduler and the triggerer start a log server on every interface (host "" is
  hard-coded, ports 8793/8794): they run with --skip-serve-logs, so the only listening
  socket is the api-server's, on 127.0.0.1. Logs are read from AIRFLOW_HOME/logs.

Every process started here is recorded and leads a session of its own; teardown stops it
(SIGTERM to the session leader, a bounded wait, then SIGKILL to every process left in its
session: the task supervisors' children move to process groups of their own, so a
process group would not reach them), and stops any swarm manager still running under the
test's swarm folders. Nothing is ever signalled by name.

The process and REST plumbing lives in tests/support (shared with tests/deployment); its
names are re-exported here for the tests of this folder.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

import pytest

from tests.support.airflow_services import REPO, AirflowProcessSet
from tests.support.processes import (  # noqa: F401 - re-exported for tests/services
    Component,
    alive,
    cmdline,
    free_loopback_port,
    proc_stat,
    session_members,
    signal_pids,
    stop_swarm_managers,
    tail,
    wait_gone,
)

COMPONENTS = ("api-server", "dag-processor", "scheduler", "triggerer")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "services: starts real Airflow services (scheduler, dag-processor, triggerer, api-server) on SQLite"
    )


def airflow_env(home: Path, dags: Path, url: str, port: int) -> dict[str, str]:
    """The environment every service of one Airflow installation shares (LocalExecutor)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW", "LOCUSTS_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__PARALLELISM="4",
        AIRFLOW__CORE__DEFAULT_TASK_RETRIES="0",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{url}/execution/",
        AIRFLOW__CORE__AUTH_MANAGER="airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        AIRFLOW__CORE__FERNET_KEY=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__BASE_URL=url,
        AIRFLOW__API__WORKERS="1",
        AIRFLOW__API__SECRET_KEY=secrets.token_hex(16),
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(32),
        AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK="False",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        # A triggerer that stops heartbeating for this long counts as dead: its triggers go
        # to another triggerer (default 30 s; shorter keeps the restart test quick).
        AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC="1",
        AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD="8",
    )
    return env


class AirflowServices(AirflowProcessSet):
    """Airflow services on SQLite in `base`/home; swarms of the test DAGs go under `base`/swarms."""

    service_names = COMPONENTS
    _healthy = AirflowProcessSet.healthy  # its former name, still called by branches in flight

    def __init__(self, base: Path):
        self.base = base
        home = base / "home"
        self.dags = home / "dags"
        self.swarms = base / "swarms"
        self.port = free_loopback_port()
        url = f"http://127.0.0.1:{self.port}"
        super().__init__(home=home, logs=base / "service-logs", task_log_folder=home / "logs", url=url,
                         env=airflow_env(home, self.dags, url, self.port))
        for folder in (self.dags, self.logs, self.swarms):
            folder.mkdir(parents=True, exist_ok=True)

    def start_triggerer(self) -> Component:
        return self.start("triggerer", "--skip-serve-logs")

    def ensure_triggerer(self) -> Component:
        """The running triggerer; a new one if an earlier test left none."""
        current = self.current("triggerer")
        return current if current.running() and not current.stopped else self.start_triggerer()

    def start_all(self) -> None:
        self.airflow("db", "migrate")
        self.start("api-server", "--host", "127.0.0.1", "--port", str(self.port))
        self.start("dag-processor")
        self.start("scheduler", "--skip-serve-logs")
        self.start_triggerer()
        self.wait_for(self.healthy, 180, "every service to report healthy at /api/v2/monitor/health")

    def close(self, timeout: float = 8.0) -> None:
        """Stop every service, then any swarm manager still running under `swarms`."""
        self.stop_components(timeout)
        stop_swarm_managers(self.swarms)


@pytest.fixture(scope="module")
def airflow_services(request, tmp_path_factory):
    """Start the four services (after `airflow db migrate`) on a fresh SQLite home once per
    test module. The module writes its DAG files first through `write_dags(dags, base)`."""
    base = tmp_path_factory.mktemp("services")
    services = AirflowServices(base)
    try:
        write_dags = getattr(request.module, "write_dags", None)
        if write_dags is not None:
            write_dags(services.dags, base)
        services.start_all()
        yield services
    finally:
        services.close()
