"""Fixtures of the UI tests: a headless browser, and real Airflow services with real users
(SimpleAuthManager, and FAB for a user limited to one DAG), each started once per session."""

from __future__ import annotations

import os
import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cluster import REQUIRED_KEYS, Cluster, read_cluster_env

from tests.ui import browser as chrome
from tests.ui.airflow_ui import (
    FAB,
    SIMPLE,
    UiAirflow,
    User,
    check_plugin_entry_point,
    new_password,
)
from tests.ui.dags import HANDLE_DAG, OTHER_DAG, SWARM_DAG, write_dags

RUN_ID = "ui_run_1"


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives a real headless Chromium")


@pytest.fixture
def browser():
    why = chrome.missing()
    if why:
        pytest.skip(why)
    b = chrome.Browser()
    try:
        yield b
    finally:
        b.close()


class Users:
    admin = User("ada", new_password(), "admin")
    viewer = User("vic", new_password(), "viewer")
    fab_admin = User("ada", new_password(), "Admin")
    fab_limited = User("bea", new_password(), "other_dag_readers")  # may read OTHER_DAG only
    fab_no_logs = User("cal", new_password(), "other_dag_no_logs")  # may read OTHER_DAG but not its task logs


@dataclass(frozen=True)
class UiCluster:
    """The SSH + SLURM test cluster of tests/cluster/ when it runs, and this session's paths on
    it: a gate file, a folder of swarm roots and a swarm id, unique to the session."""

    cluster: Cluster
    token: str

    @property
    def env(self) -> dict[str, str]:
        return self.cluster.env

    @property
    def gate(self) -> str:
        return f"{self.cluster.shared_dir}/ui-gate-{self.token}"

    @property
    def remote_root(self) -> str:
        return f"/home/locusts/swarms/ui-{self.token}"

    @property
    def swarm_id(self) -> str:
        return f"ui-cluster-{self.token}"  # SLURM job names hold it

    def clean(self) -> None:
        """Cancel this session's SLURM jobs still queued or running; remove its gate and roots."""
        self.cluster.cancel_jobs_named(self.token)
        Path(self.gate).unlink(missing_ok=True)
        self.cluster.ssh(f"rm -rf -- {shlex.quote(self.remote_root)}", check=False)


def running_ui_cluster() -> UiCluster | None:
    """The test cluster when cluster.env is there and this runs as root (None otherwise: its
    tests skip, or fail in CI)."""
    _, values = read_cluster_env()
    if values is None or os.geteuid() != 0 or REQUIRED_KEYS - set(values):
        return None
    return UiCluster(Cluster(values), secrets.token_hex(4))


def _start(tmp_path_factory, name: str, auth_manager: str, users: list[User], cluster: UiCluster | None = None) -> UiAirflow:
    check_plugin_entry_point()
    base = tmp_path_factory.mktemp(name)
    airflow = UiAirflow(base, auth_manager, users)
    if cluster is not None:
        # Every service, the api-server too (the Swarm view reads the swarm over it), knows
        # the cluster's SSH connection.
        airflow.env["AIRFLOW_CONN_LOCUSTS_TEST_SSH"] = cluster.env["AIRFLOW_CONN_LOCUSTS_TEST_SSH"]
    write_dags(airflow.dags, base, None if cluster is None else
               {"gate": cluster.gate, "remote_root": cluster.remote_root, "swarm_id": cluster.swarm_id})
    try:
        airflow.start_all()
    except BaseException:
        airflow.close()
        raise
    return airflow


@pytest.fixture(scope="session")
def test_cluster():
    """The SSH + SLURM test cluster when it runs (else None); this session's jobs and files on
    it are removed at the end."""
    cluster = running_ui_cluster()
    yield cluster
    if cluster is not None:
        cluster.clean()


@pytest.fixture(scope="session")
def simple_airflow(tmp_path_factory, test_cluster):
    """SimpleAuthManager with an admin and a viewer; the three DAGs run once (RUN_ID). With the
    test cluster running, its SSH connection is known to every service."""
    airflow = _start(tmp_path_factory, "ui-simple", SIMPLE, [Users.admin, Users.viewer], test_cluster)
    try:
        for dag_id in (OTHER_DAG, HANDLE_DAG, SWARM_DAG):
            airflow.run_dag(dag_id, RUN_ID)
        yield airflow
    finally:
        airflow.close()  # also stops any swarm manager left under its swarms folder


@pytest.fixture(scope="session")
def fab_airflow(tmp_path_factory):
    """The FAB auth manager with an admin and a user whose role may read OTHER_DAG only; the
    handle and other DAGs run once (RUN_ID)."""
    airflow = _start(tmp_path_factory, "ui-fab", FAB, [Users.fab_admin])
    try:
        for dag_id in (OTHER_DAG, HANDLE_DAG):
            airflow.wait_for_dag(dag_id)
        airflow.create_fab_role_for_dag("other_dag_readers", OTHER_DAG, Users.fab_limited)
        airflow.create_fab_role_for_dag("other_dag_no_logs", OTHER_DAG, Users.fab_no_logs, task_logs=False)
        for dag_id in (OTHER_DAG, HANDLE_DAG):
            airflow.run_dag(dag_id, RUN_ID)
        yield airflow
    finally:
        airflow.close()
