"""Fixtures of the multi-host CeleryExecutor deployment (deployment.py).

- `deployment` (module scope): the whole deployment, started once per test module. The
  module may define `write_dags(deployment)` to write its DAG files into
  `deployment.dags` before the services start. Skipped (failed in CI) when not root or
  when a binary of tests/deployment/install.sh is missing.
- `cluster` (session): the running SSH + SLURM test cluster (tests/cluster/), skipped when
  it is not running (failed in CI). Its connection `locusts_test_ssh` is given to every
  component of the deployment when the cluster is running at deployment start.
- `remote_root`: a fresh folder on the SSH host for a test's swarms; afterwards, the
  swarms' direct managers and SLURM jobs are stopped and the folder removed.

The time to bring each deployment up and down is printed at the end of the session.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

import airflow_provider_locusts

from tests.deployment.deployment import CeleryDeployment
from tests.deployment.servers import missing_binaries
from tests.support.cluster import Cluster, cluster_state_dir, read_cluster_env, running_cluster, skip_or_fail
from tests.support.processes import stop_swarm_managers

TIMINGS = pytest.StashKey[list]()
# Other suites stop the shared cluster's sshd on purpose for a while (tests/cluster_e2e/
# test_ssh_drop.py): the tests' own ssh commands wait that long for it to come back.
SSH_OUTAGE = 180.0
KEEP = "LOCUSTS_KEEP_DEPLOYMENT"  # set to 1 to keep the deployment's folders for a look afterwards


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "deployment: starts a multi-host CeleryExecutor deployment (PostgreSQL, Redis, two workers in namespaces of their own)",
    )
    config.stash[TIMINGS] = []


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    timings = config.stash.get(TIMINGS, [])
    if not timings:
        return
    terminalreporter.section("multi-host deployment timings")
    for module, values in timings:
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in values.items())
        terminalreporter.write_line(f"{module}: {parts}")


def prerequisites_missing() -> str | None:
    if os.geteuid() != 0:
        return "the multi-host deployment runs as root (namespaces, mounts, server users), as CI does"
    missing = missing_binaries()
    if missing:
        return f"missing {', '.join(missing)}: run tests/deployment/install.sh"
    for module in ("celery", "redis", "psycopg2", "asyncpg", "airflow.providers.celery"):
        if importlib.util.find_spec(module) is None:
            return f"Python package for {module} missing: pip install -e '.[test]'"
    return None


@pytest.fixture(scope="session")
def deployment_root():
    """One folder per test session under /var/tmp (not /tmp: the workers do not share /tmp)."""
    root = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="locusts-deploy-"))
    root.chmod(0o755)
    yield root
    if os.environ.get(KEEP, "") in ("", "0"):
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def deployment(request, deployment_root):
    why = prerequisites_missing()
    if why:
        skip_or_fail(why)
    _, cluster_env = read_cluster_env()
    extra_env, shared_tmp = {}, []
    if cluster_env and "AIRFLOW_CONN_LOCUSTS_TEST_SSH" in cluster_env:
        extra_env["AIRFLOW_CONN_LOCUSTS_TEST_SSH"] = cluster_env["AIRFLOW_CONN_LOCUSTS_TEST_SSH"]
        state_dir = cluster_state_dir()
        if Path("/tmp") in state_dir.resolve().parents:
            # The SSH key and known_hosts live there: on real hosts they are deployed on each.
            shared_tmp.append(state_dir)
    source = Path(airflow_provider_locusts.__file__).resolve().parent.parent
    if Path("/tmp") in source.parents:
        # The package's checkout (an editable install) under /tmp would be hidden by each
        # worker host's private /tmp: on real hosts the package is installed on each.
        shared_tmp.append(source)
    base = deployment_root / request.module.__name__.rsplit(".", 1)[-1]
    deploy = CeleryDeployment(base, extra_env=extra_env, shared_tmp_paths=tuple(shared_tmp))
    try:
        write_dags = getattr(request.module, "write_dags", None)
        if write_dags is not None:
            write_dags(deploy)
        deploy.start_all()
        yield deploy
    finally:
        leftovers = deploy.close()
        request.config.stash[TIMINGS].append((request.module.__name__, dict(deploy.timings)))
        left = deploy.namespaces_left()
        if left:
            raise AssertionError(f"worker hosts still hold processes after teardown: {left}")
        if leftovers:
            print(f"deployment teardown stopped leftovers: {leftovers}")


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    return running_cluster()


@pytest.fixture
def remote_root(cluster, deployment):
    """A fresh folder under /home/locusts/swarms on the SSH host (made as `locusts`).
    Afterwards: SLURM jobs of its swarms cancelled, direct managers stopped (the test
    cluster is this machine, so their pid files are readable here), folder removed."""
    parent = "/home/locusts/swarms"
    created_parent = cluster.ssh(f"[ -d {parent} ] && echo yes || echo no", retry_for=SSH_OUTAGE).stdout.strip() == "no"
    path = f"{parent}/deploy-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    cluster.ssh(f"mkdir -p {shlex.quote(path)}", retry_for=SSH_OUTAGE)
    yield path
    for ledger in Path(path).glob("*/exec/ledger.json"):
        cluster.cancel_jobs_named(ledger.parent.parent.name[:40])
    stop_swarm_managers(Path(path))
    cluster.ssh(f"rm -rf -- {shlex.quote(path)}", check=False, retry_for=SSH_OUTAGE)
    if created_parent:
        cluster.ssh(f"rmdir -- {parent} 2>/dev/null", check=False)  # only if still empty
