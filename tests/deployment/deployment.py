"""A real multi-host CeleryExecutor deployment of Airflow on one machine.

- PostgreSQL (metadata database) and Redis (Celery broker), private, on loopback
  (servers.py);
- the "main" host, in the root namespace: api-server, scheduler, dag-processor and
  triggerer, AIRFLOW_HOME in <base>/main/home;
- worker hosts `worker-a`, `worker-b`: one `airflow celery worker` each, in a mount + UTS
  namespace of its own (hosts.py): its own hostname, a private /tmp, a private disk with
  its AIRFLOW_HOME and swarm work root (LOCUSTS_WORK_ROOT) at /tmp/locusts-host/...;
  each serves the queue `default` and a queue named after itself (pin a task to a host
  with `queue="worker-a"`);
- shared storage, as on a cluster: <base>/shared holds the DAGs folder (dags/), the task
  log folder (logs/) and room for the tests' inputs and outputs (data/). <base> is under
  /var/tmp, because /tmp is no longer shared.

Every process gets its configuration from environment variables only (the same secrets,
jwt and fernet keys everywhere; SimpleAuthManager with every user an admin, so the tests
call the REST API without a token). Only loopback sockets listen: the api-server,
PostgreSQL and Redis; the scheduler, triggerer and workers run with --skip-serve-logs and
logs are read from the shared log folder.

Teardown stops only what this module started, by pid: the Airflow processes (their
sessions), every process left on a worker host (its namespaces), swarm managers under
<base>, then Redis and PostgreSQL. Mounts live in the workers' namespaces and go with them.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.deployment.hosts import HOME, WORK_ROOT, WorkerHost, graceful_signal
from tests.deployment.servers import PostgresServer, RedisServer
from tests.support.airflow_services import REPO, AirflowProcessSet
from tests.support.processes import (
    Component,
    free_loopback_port,
    signal_pids,
    stop_swarm_managers,
    terminate,
    wait_gone,
)

MAIN_SERVICES = ("api-server", "dag-processor", "scheduler", "triggerer")
WORKERS = ("worker-a", "worker-b")
DEFAULT_QUEUE = "default"


class CeleryDeployment(AirflowProcessSet):
    """See the module docstring. `base` must not be under /tmp (the workers' /tmp is private)."""

    def __init__(self, base: Path, workers: tuple[str, ...] = WORKERS, extra_env: dict[str, str] | None = None,
                 shared_tmp_paths: tuple[Path, ...] = (), concurrency: int = 2):
        if Path("/tmp") in base.resolve().parents:
            raise ValueError(f"the deployment's base {base} must not be under /tmp: the workers do not share /tmp")
        self.base = base
        self.shared = base / "shared"
        self.dags = self.shared / "dags"
        self.data = self.shared / "data"
        self.main_work_root = base / "main" / "work"
        self.port = free_loopback_port()
        super().__init__(home=base / "main" / "home", logs=base / "service-logs", task_log_folder=self.shared / "logs",
                         url=f"http://127.0.0.1:{self.port}", env={})
        self.service_names = (*MAIN_SERVICES, *workers)
        self.extra_env = dict(extra_env or {})
        self.concurrency = concurrency
        self.postgres = PostgresServer(base / "postgres")
        self.redis = RedisServer(base / "redis")
        self.timings: dict[str, float] = {}
        for folder in (self.dags, self.data, self.task_log_folder, self.home, self.main_work_root, self.logs, base / "etc"):
            folder.mkdir(parents=True, exist_ok=True)
        # Readable by the servers' and the cluster's system users; nothing world-writable.
        for folder in (base, self.shared, self.data):
            folder.chmod(0o755)
        hosts_dir = base / "hosts"
        self.hosts = {
            name: WorkerHost(name, hosts_dir / name, base / "etc" / f"{name}.hosts", hosts_dir, tuple(shared_tmp_paths))
            for name in workers
        }

    # --- configuration ------------------------------------------------------------------
    def _common_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW", "LOCUSTS_"))}
        db = self.postgres.sqlalchemy_url
        env.update(
            AIRFLOW_HOME=str(self.home),
            PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=db,
            AIRFLOW__CORE__EXECUTOR="CeleryExecutor",
            AIRFLOW__CELERY__BROKER_URL=self.redis.url,
            AIRFLOW__CELERY__RESULT_BACKEND="db+" + db,
            AIRFLOW__CELERY__WORKER_CONCURRENCY=str(self.concurrency),
            AIRFLOW__CELERY__SYNC_PARALLELISM="1",
            # Publishing a task to the broker may take more than the default 1 s on a busy
            # 2-core machine; a timeout there fails the task before it ran.
            AIRFLOW__CELERY__OPERATION_TIMEOUT="30",
            AIRFLOW__OPERATORS__DEFAULT_QUEUE=DEFAULT_QUEUE,
            AIRFLOW__CORE__DAGS_FOLDER=str(self.dags),
            AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(self.task_log_folder),
            AIRFLOW__LOGGING__DAG_PROCESSOR_CHILD_PROCESS_LOG_DIRECTORY=str(self.task_log_folder / "dag_processor"),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
            AIRFLOW__CORE__PARALLELISM="8",
            AIRFLOW__CORE__DEFAULT_TASK_RETRIES="0",
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{self.url}/execution/",
            AIRFLOW__CORE__AUTH_MANAGER="airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
            AIRFLOW__CORE__FERNET_KEY=base64.urlsafe_b64encode(os.urandom(32)).decode(),
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API__PORT=str(self.port),
            AIRFLOW__API__BASE_URL=self.url,
            AIRFLOW__API__WORKERS="1",
            AIRFLOW__API__SECRET_KEY=secrets.token_hex(16),
            AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(32),
            AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK="False",
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
            AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC="1",
            AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD="8",
            # The main host's own work root (nothing should run swarms here).
            LOCUSTS_WORK_ROOT=str(self.main_work_root),
            AIRFLOW__LOCUSTS__WORK_ROOT=str(self.main_work_root),
        )
        env.update(self.extra_env)
        return env

    def worker_env(self, name: str) -> dict[str, str]:
        """A worker host's environment: the common one, with its private home and work root."""
        env = dict(self.env)
        env.update(AIRFLOW_HOME=HOME, LOCUSTS_WORK_ROOT=WORK_ROOT, AIRFLOW__LOCUSTS__WORK_ROOT=WORK_ROOT, TMPDIR="/tmp")
        return env

    # --- bringing it up ---------------------------------------------------------------------
    def start_all(self, timeout: float = 300) -> None:
        t0 = time.monotonic()
        self.components.append(self.postgres.start())
        self.components.append(self.redis.start())
        self.env = self._common_env()
        self.timings["servers"] = time.monotonic() - t0
        t1 = time.monotonic()
        self.airflow("db", "migrate", timeout=timeout)
        self.timings["db_migrate"] = time.monotonic() - t1
        t2 = time.monotonic()
        self.start("api-server", "--host", "127.0.0.1", "--port", str(self.port))
        self.start("dag-processor")
        self.start("scheduler", "--skip-serve-logs")
        self.start("triggerer", "--skip-serve-logs")
        for name in self.hosts:
            self.start_worker(name, wait=False)
        self.wait_for(self.healthy, timeout, "every service to report healthy at /api/v2/monitor/health")
        self.timings["services_healthy"] = time.monotonic() - t2
        for name in self.hosts:
            self.wait_worker_ready(name, timeout)
        self.timings["workers_ready"] = time.monotonic() - t2
        self.timings["up"] = time.monotonic() - t0

    # --- worker hosts -------------------------------------------------------------------------
    def host(self, name: str) -> WorkerHost:
        return self.hosts[name]

    def start_worker(self, name: str, wait: bool = True, timeout: float = 240) -> Component:
        """Start host `name` (a new namespace on its disk) running `airflow celery worker`
        for the queues `default` and `name`."""
        host = self.hosts[name]
        if host.component is not None and host.component.running():
            raise AssertionError(f"{name} is already running ({host.describe()})")
        command = [
            sys.executable, "-m", "airflow", "celery", "worker", "--skip-serve-logs", "--without-mingle",
            "--without-gossip", "--queues", f"{DEFAULT_QUEUE},{name}", "--concurrency", str(self.concurrency),
        ]
        host.component = self.start_process(name, host.argv(command), env=self.worker_env(name), cwd=self.base)
        if wait:
            self.wait_worker_ready(name, timeout)
        return host.component

    def wait_worker_ready(self, name: str, timeout: float = 240) -> None:
        """Until the worker runs in its own namespaces and answers a Celery ping."""
        host = self.hosts[name]
        self.wait_for(lambda: host.record_namespace() and name in self.ping_workers(), timeout,
                      f"worker {name} to answer a Celery ping", names=(name,))

    def ping_workers(self, timeout: float = 2.0) -> set[str]:
        """Host names of the Celery workers answering a broadcast ping through the broker."""
        from celery import Celery  # the test process needs no Airflow for this

        app = Celery("locusts-deployment-probe", broker=self.redis.url)
        try:
            replies = app.control.ping(timeout=timeout)
        except Exception:  # noqa: BLE001 - broker unreachable: nobody answers
            return set()
        finally:
            app.close()
        return {node.split("@", 1)[-1] for reply in replies for node in reply}

    def stop_worker(self, name: str, timeout: float = 60) -> int | None:
        """Graceful stop (Celery warm shutdown: SIGTERM to the worker, which lets running
        tasks end); after `timeout`, SIGKILL to what is left of its session. Processes it
        left in its namespace (local swarm managers) keep running, as on a live host.
        Returns the worker's exit code (None if it had to be killed)."""
        host = self.hosts[name]
        component = host.component
        if component is None:
            raise AssertionError(f"{name} was never started")
        component.stopped = True
        graceful_signal(host, signal.SIGTERM)
        try:
            code = component.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        if wait_gone(component.members, 5 if code is not None else 0):
            signal_pids(component.members(), signal.SIGKILL)
            wait_gone(component.members, 10)
        if code is None:
            component.popen.wait(timeout=10)
        return code

    def kill_worker(self, name: str) -> None:
        """Crash the worker: SIGKILL to every process of its session at once."""
        self.kill(self.hosts[name].component)

    def kill_host(self, name: str) -> None:
        """Power the host off: SIGKILL to every process in its namespaces, the worker and
        whatever it left running there (its /tmp goes with them; its disk stays)."""
        host = self.hosts[name]
        if host.component is not None:
            host.component.stopped = True
        signal_pids(host.processes(), signal.SIGKILL)
        left = wait_gone(host.processes, 30)
        if left:
            raise AssertionError(f"host {name}: processes {left} still alive 30 s after SIGKILL")
        if host.component is not None:
            host.component.popen.wait(timeout=10)

    def worker_running(self, name: str) -> bool:
        component = self.hosts[name].component
        return component is not None and component.running()

    def other_worker(self, name: str) -> str:
        others = [n for n in self.hosts if n != name]
        if len(others) != 1:
            raise AssertionError(f"no single other worker than {name}: {others}")
        return others[0]

    # --- which host ran what --------------------------------------------------------------------
    def task_hostname(self, dag_id: str, run_id: str, task_id: str) -> str | None:
        """The hostname of the task instance's latest try (the worker host that ran it)."""
        return self.task_instance(dag_id, run_id, task_id).get("hostname") or None

    def try_hostnames(self, dag_id: str, run_id: str, task_id: str) -> dict[int, str | None]:
        """{try number: hostname} of every try of the task instance."""
        tries = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries")
        return {t["try_number"]: t.get("hostname") for t in tries["task_instances"]}

    # --- state and teardown ---------------------------------------------------------------------
    def listening_sockets(self) -> list[tuple[str, int, int]]:
        """(address, port, pid) of every listening TCP socket of a deployment process."""
        pids = {p for c in self.components for p in c.members()}
        for host in self.hosts.values():
            pids.update(host.processes())
        inodes = {}
        for pid in pids:
            try:
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes[target[8:-1]] = pid
            except OSError:
                continue
        found = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                    continue
                address_hex, port_hex = fields[1].split(":")
                found.append((decode_address(address_hex), int(port_hex, 16), inodes[fields[9]]))
        return found

    def close(self, timeout: float = 10.0) -> list[str]:
        """Stop everything this deployment started, by pid, timing it; returns what had to be
        stopped beyond the recorded services (to be reported). Every step runs even when an
        earlier one failed (the first failure is raised at the end), so the servers are
        never left behind."""
        t0 = time.monotonic()
        leftovers: list[str] = []
        errors: list[BaseException] = []

        def step(action) -> None:
            try:
                action()
            except Exception as error:  # noqa: BLE001 - finish the teardown, raise afterwards
                errors.append(error)

        def stop_airflow() -> None:
            # unshare ignores SIGTERM: a graceful stop must reach each worker itself.
            for host in self.hosts.values():
                graceful_signal(host, signal.SIGTERM)
            servers = (self.postgres.component, self.redis.component)
            self.stop_components(timeout, [c for c in self.components if not any(c is s for s in servers)])

        def stop_hosts() -> None:
            for host in self.hosts.values():
                left = host.processes()
                if left:
                    leftovers.append(f"{host.name}: {len(left)} process(es) left in its namespaces")
                    terminate(host.processes, timeout)

        step(stop_airflow)
        step(stop_hosts)
        step(lambda: leftovers.extend(stop_swarm_managers(self.base)))
        step(self.redis.stop)
        step(self.postgres.stop)
        self.timings["down"] = time.monotonic() - t0
        if errors:
            raise errors[0]
        return leftovers

    def namespaces_left(self) -> list[str]:
        """Worker namespaces that still hold a process (should be none after close())."""
        return [f"{host.name}: {host.processes()}" for host in self.hosts.values() if host.processes()]


def decode_address(address_hex: str) -> str:
    """/proc/net/tcp's address (little-endian hex) → dotted or colon form."""
    raw = bytes.fromhex(address_hex)
    if len(raw) == 4:
        return ".".join(str(b) for b in raw[::-1])
    words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
    return str(ipaddress.IPv6Address(b"".join(words)))

