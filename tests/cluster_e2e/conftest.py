"""Swarm DAGs against the real test cluster (tests/cluster/): sshd on 127.0.0.1 for user
`locusts` and a one-node SLURM 22.05. The tests run as root, the Airflow side.

The Airflow environment (private AIRFLOW_HOME, SQLite) is set up when tests.e2e.conftest
is imported, which must happen before anything imports airflow: this import comes first.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest


# First import of this module that touches Airflow's setup: tests.e2e.conftest points
# AIRFLOW_HOME at a private folder (SQLite) as long as airflow is not imported yet.
from tests.e2e.conftest import airflow_db, run_dag  # noqa: F401

ENV_LINE = re.compile(r"^([A-Z_][A-Z0-9_]*)='([^']*)'$")
CONN_ID = "locusts_test_ssh"


def wait_until(predicate, timeout: float, step: float = 0.2, what: str = "condition"):
    """Poll `predicate` until it returns something truthy (returned), at most `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


@dataclass(frozen=True)
class Cluster:
    env: dict[str, str]

    @property
    def shared_dir(self) -> Path:
        return Path(self.env["LOCUSTS_SHARED_DIR"])

    def ssh(self, command: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        """Run a shell command on the SSH host as `locusts` with the OpenSSH client (not the code under test)."""
        env = self.env
        argv = [
            "ssh", "-p", env["LOCUSTS_SSH_PORT"], "-i", env["LOCUSTS_SSH_KEY"],
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={env['LOCUSTS_SSH_KNOWN_HOSTS']}", "-o", "ConnectTimeout=10",
            f"{env['LOCUSTS_SSH_USER']}@{env['LOCUSTS_SSH_HOST']}", command,
        ]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"ssh {command!r} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def job_state(self, job_id: str) -> str | None:
        """JobState from `scontrol show job ID` (None once SLURM forgot the job)."""
        out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30).stdout
        match = re.search(r"JobState=([A-Z_]+)", out)
        return match.group(1) if match else None

    def jobs_named(self, fragment: str) -> list[tuple[str, str]]:
        """(job id, state) of the jobs squeue lists whose name contains `fragment`."""
        out = subprocess.run(
            ["squeue", "-h", "-t", "all", "-o", "%i|%j|%T"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        jobs = []
        for line in out.splitlines():
            job_id, name, state = line.split("|", 2)
            if fragment in name:
                jobs.append((job_id, state))
        return jobs

    def live_jobs_named(self, fragment: str) -> list[tuple[str, str]]:
        return [(j, s) for j, s in self.jobs_named(fragment) if s in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED")]


@pytest.fixture(scope="session", autouse=True)
def private_airflow_home():
    """Fail loudly if airflow was imported before tests.e2e.conftest set up its private home:
    the DAG runs would then use (and pollute) some other metadata database."""
    from airflow.configuration import AIRFLOW_HOME

    home = os.environ.get("AIRFLOW_HOME", "")
    assert Path(home).name.startswith("locusts-airflow-home-"), f"AIRFLOW_HOME is not the tests' private one: {home!r}"
    assert AIRFLOW_HOME == home, f"airflow was imported before tests/e2e/conftest.py set AIRFLOW_HOME ({AIRFLOW_HOME} != {home})"


def skip_or_fail(message: str) -> None:
    """Skip on a developer's machine; fail in CI, which must never pass by skipping the cluster."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"CI must not skip the cluster tests: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """The running test cluster, its cluster.env values exported to os.environ (the SSH
    connection `locusts_test_ssh` among them). Skips when it is not started, except in CI."""
    state_dir = Path(os.environ.get("LOCUSTS_CLUSTER_DIR") or "/tmp/locusts-cluster")
    env_file = state_dir / "cluster.env"
    if not env_file.is_file():
        skip_or_fail(f"the SSH + SLURM test cluster is not running ({env_file} is missing): run tests/cluster/start.sh")
    if os.geteuid() != 0:
        skip_or_fail("the cluster end-to-end tests run as root (the Airflow side), as CI does")
    values = {}
    for line in env_file.read_text().splitlines():
        match = ENV_LINE.match(line.strip())
        if match:
            values[match.group(1)] = match.group(2)
    missing = {"AIRFLOW_CONN_LOCUSTS_TEST_SSH", "LOCUSTS_SHARED_DIR", "LOCUSTS_SSH_KEY", "LOCUSTS_SSH_PORT"} - set(values)
    if missing:
        pytest.fail(f"{env_file} lacks {', '.join(sorted(missing))}: rerun tests/cluster/start.sh", pytrace=False)
    os.environ.update(values)
    return Cluster(values)


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
        leftovers = [job for job, _ in cluster.live_jobs_named(swarm_id[:40])]
        if leftovers:
            subprocess.run(["scancel", *leftovers], check=False, timeout=30)
