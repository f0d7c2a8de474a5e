"""Fixtures of the UI tests: a headless browser, and real Airflow services with real users
(SimpleAuthManager, and FAB for a user limited to one DAG), each started once per session."""

from __future__ import annotations

import os
import re
import secrets
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

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
    """The SSH + SLURM test cluster of tests/cluster/, when it runs (cluster.env), and this
    session's paths on it: a gate file and a folder of swarm roots, unique to the session."""

    env: dict[str, str]
    token: str

    @property
    def gate(self) -> str:
        return f"{self.env['LOCUSTS_SHARED_DIR']}/ui-gate-{self.token}"

    @property
    def remote_root(self) -> str:
        return f"/home/locusts/swarms/ui-{self.token}"

    @property
    def swarm_id(self) -> str:
        return f"ui-cluster-{self.token}"

    def ssh(self, command: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        """A command on the SSH host as `locusts`, with OpenSSH's client (not the code under test)."""
        env = self.env
        argv = ["ssh", "-p", env["LOCUSTS_SSH_PORT"], "-i", env["LOCUSTS_SSH_KEY"], "-o", "BatchMode=yes",
                "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={env['LOCUSTS_SSH_KNOWN_HOSTS']}", "-o", "ConnectTimeout=10",
                f"{env['LOCUSTS_SSH_USER']}@{env['LOCUSTS_SSH_HOST']}", command]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"ssh {command!r} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def clean(self) -> None:
        """Cancel this session's SLURM jobs still queued or running; remove its gate and roots."""
        jobs = subprocess.run(["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True, timeout=30).stdout
        ours = [line.split()[0] for line in jobs.splitlines() if self.token in line]
        if ours:
            subprocess.run(["scancel", *ours], check=False, timeout=30)
        Path(self.gate).unlink(missing_ok=True)
        self.ssh(f"rm -rf -- {shlex.quote(self.remote_root)}", check=False)


def running_cluster() -> UiCluster | None:
    env_file = Path(os.environ.get("LOCUSTS_CLUSTER_DIR") or "/tmp/locusts-cluster") / "cluster.env"
    if os.geteuid() != 0 or not env_file.is_file():
        return None
    values = {}
    for line in env_file.read_text().splitlines():
        match = re.match(r"^([A-Z_][A-Z0-9_]*)='([^']*)'$", line.strip())
        if match:
            values[match.group(1)] = match.group(2)
    if "AIRFLOW_CONN_LOCUSTS_TEST_SSH" not in values:
        return None
    return UiCluster(values, secrets.token_hex(4))


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
    cluster = running_cluster()
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
