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
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = ("api-server", "dag-processor", "scheduler", "triggerer")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "services: starts real Airflow services (scheduler, dag-processor, triggerer, api-server) on SQLite"
    )


# --- processes ---------------------------------------------------------------------------


def proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgrp, session) of a process, None when it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1]), int(fields[2]), int(fields[3])


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


def session_members(sid: int) -> list[int]:
    """Live (non-zombie) processes of session `sid`. A process started with
    start_new_session=True leads its own session; its children stay in it even when they
    move to process groups of their own (the task supervisor and the trigger runner do)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = proc_stat(int(entry.name))
        if stat is not None and stat[3] == sid and stat[0] != "Z":
            members.append(int(entry.name))
    return members


def signal_pids(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_gone(pids: Callable[[], list[int]], timeout: float) -> list[int]:
    """Poll until `pids()` is empty or `timeout` passed; return what is left."""
    deadline = time.monotonic() + timeout
    left = pids()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = pids()
    return left


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def stop_swarm_managers(swarms: Path, timeout: float = 10.0) -> list[str]:
    """Stop every manager still running under `swarms` (exec/pid_<manager> files): its whole
    session (manager, heartbeat loop, tasks), only when a process of that session still runs
    that manager's script, so a recycled pid is never hit. Returns what was stopped."""
    stopped = []
    for pid_file in sorted(swarms.glob("**/exec/pid_*")):
        manager = pid_file.name[len("pid_"):]
        try:
            pid = int(pid_file.read_text().split()[0])
        except (ValueError, IndexError, OSError):
            continue
        # The manager was started with setsid: it leads a session holding its heartbeat
        # loop and its tasks. Some process of it still runs the manager's script (the
        # manager, or its task subshells if the manager itself was killed).
        if not any(f"manager_{manager}.sh" in cmdline(p) for p in session_members(pid)):
            continue
        signal_pids(session_members(pid), signal.SIGTERM)
        if wait_gone(lambda pid=pid: session_members(pid), timeout):
            signal_pids(session_members(pid), signal.SIGKILL)
            wait_gone(lambda pid=pid: session_members(pid), timeout)
        stopped.append(f"{pid_file.parent.parent.name}/{manager} (pid {pid})")
    return stopped


@dataclass
class Component:
    name: str
    popen: subprocess.Popen
    log: Path
    started: float = field(default_factory=time.monotonic)
    stopped: bool = False  # stopped on purpose: its death is not a failure

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def members(self) -> list[int]:
        """Every live process of its session (it, its children, their children...)."""
        self.popen.poll()  # reap the leader if it exited
        return session_members(self.pid)

    def tail(self, lines: int = 40) -> str:
        return f"--- {self.name} (pid {self.pid}) log {self.log}, last {lines} lines:\n{tail(self.log, lines)}"


class AirflowServices:
    """Airflow services on SQLite in `base`/home; swarms of the test DAGs go under `base`/swarms."""

    def __init__(self, base: Path):
        self.base = base
        self.home = base / "home"
        self.dags = self.home / "dags"
        self.logs = base / "service-logs"
        self.swarms = base / "swarms"
        for folder in (self.dags, self.logs, self.swarms):
            folder.mkdir(parents=True, exist_ok=True)
        self.port = free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.components: list[Component] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW", "LOCUSTS_"))}
        env.update(
            AIRFLOW_HOME=str(self.home),
            PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
            AIRFLOW__CORE__DAGS_FOLDER=str(self.dags),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__CORE__PARALLELISM="4",
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
            # A triggerer that stops heartbeating for this long counts as dead: its triggers go
            # to another triggerer (default 30 s; shorter keeps the restart test quick).
            AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC="1",
            AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD="8",
        )
        self.env = env

    # --- processes -----------------------------------------------------------------------
    def airflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run one `airflow` CLI command to completion."""
        result = subprocess.run(
            [sys.executable, "-m", "airflow", *args], env=self.env, cwd=self.home,
            capture_output=True, text=True, timeout=timeout,
        )
        if result.returncode != 0:
            raise AssertionError(f"airflow {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def start(self, name: str, *args: str) -> Component:
        """Start `airflow <name> <args>` in a session of its own, output to a log file."""
        count = sum(1 for c in self.components if c.name == name)
        log = self.logs / (f"{name}.log" if count == 0 else f"{name}.{count}.log")
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "airflow", name, *args], env=self.env, cwd=self.home,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        component = Component(name, popen, log)
        self.components.append(component)
        return component

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
        self.wait_for(self._healthy, 180, "every service to report healthy at /api/v2/monitor/health")

    def _healthy(self) -> bool:
        try:
            health = self.api("GET", "/api/v2/monitor/health")
        except (OSError, AssertionError):
            return False
        return all(health.get(part, {}).get("status") == "healthy" for part in ("metadatabase", "scheduler", "triggerer", "dag_processor"))

    def current(self, name: str) -> Component:
        """The latest started component of that name."""
        return [c for c in self.components if c.name == name][-1]

    def kill(self, component: Component, sig: int = signal.SIGKILL, timeout: float = 30.0) -> None:
        """Crash it: `sig` to every process of its session at once, then wait (bounded) until none is left."""
        component.stopped = True
        signal_pids(component.members(), sig)
        left = wait_gone(component.members, timeout)
        if left:
            raise AssertionError(f"{component.name}: processes {left} still alive {timeout}s after signal {sig}\n{component.tail()}")
        component.popen.wait(timeout=5)

    def stop(self, component: Component, timeout: float = 30.0) -> int | None:
        """Graceful stop: SIGTERM to the leader; after `timeout`, SIGKILL to whatever is left of
        its session. Returns the leader's exit code (None if it had to be killed)."""
        component.stopped = True
        if component.running():
            component.popen.send_signal(signal.SIGTERM)
        try:
            code = component.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        left = wait_gone(component.members, 5 if code is not None else 0)
        if left:
            signal_pids(left, signal.SIGKILL)
            wait_gone(component.members, 10)
        if code is None:
            component.popen.wait(timeout=10)
        return code

    def close(self, timeout: float = 8.0) -> None:
        """Stop every service at once: SIGTERM to each leader, a bounded wait, then SIGKILL to
        whatever is left in their sessions (an idle triggerer takes 10 s to stop its trigger
        runner); then any swarm manager still running."""
        live = [c for c in self.components if c.running() or c.members()]
        leftovers = lambda: [p for c in live for p in c.members()]  # noqa: E731
        for component in live:
            component.stopped = True
            if component.running():
                component.popen.send_signal(signal.SIGTERM)
        if wait_gone(leftovers, timeout):
            signal_pids(leftovers(), signal.SIGKILL)
            wait_gone(leftovers, 10)
        for component in live:
            try:
                component.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        stop_swarm_managers(self.swarms)

    # --- waiting and reporting -------------------------------------------------------------
    def tails(self, names: Iterable[str] = COMPONENTS, lines: int = 40) -> str:
        return "\n".join(c.tail(lines) for c in self.components if c.name in names)

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str,
                 names: Iterable[str] = COMPONENTS, extra: Callable[[], str] | None = None, step: float = 0.5) -> Any:
        """Poll `predicate` until it returns something truthy (returned), at most `timeout` s.
        Fails at once if a service that should be running died. Failure messages carry the
        tails of the services' logs (and `extra()`)."""
        names = tuple(names)
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            dead = [c for c in self.components if not c.stopped and not c.running()]
            expired = time.monotonic() > deadline
            if dead or expired:
                why = (
                    f"{', '.join(f'{c.name} exited ({c.popen.returncode})' for c in dead)} while waiting for {what}"
                    if dead else f"timed out after {timeout}s waiting for {what}"
                )
                detail = extra() if extra else ""
                shown = set(names) | {c.name for c in dead}
                raise AssertionError(f"{why}\n{detail}\n{self.tails(shown)}")
            time.sleep(step)

    # --- REST API ------------------------------------------------------------------------
    def api(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        request = urllib.request.Request(
            self.url + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{method} {path} -> HTTP {error.code}: {error.read()[:2000]!r}") from None
        return json.loads(raw) if raw else None

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> dict:
        def parsed():
            try:
                return self.api("GET", f"/api/v2/dags/{dag_id}")
            except AssertionError:
                return None

        dag = self.wait_for(parsed, timeout, f"DAG {dag_id} to be parsed", names=("dag-processor",),
                            extra=self.dag_processor_log_tail)
        if dag["is_paused"]:
            self.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        return dag

    def dag_processor_log_tail(self) -> str:
        files = sorted((self.home / "logs" / "dag_processor").glob("**/*.log"), key=lambda p: p.stat().st_mtime)
        return "\n".join(f"--- {f}:\n{tail(f, 30)}" for f in files[-2:])

    def trigger_dag(self, dag_id: str, run_id: str) -> dict:
        return self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": None})

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> dict:
        return self.api("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}", {"new_state": state})

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")["value"]

    def task_logs(self, dag_id: str, run_id: str, task_id: str, trigger_only: bool = False) -> str:
        """The task's log files (worker and trigger logs), read from AIRFLOW_HOME/logs."""
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        pattern = "*.trigger.*.log" if trigger_only else "*.log"
        return "\n".join(f"--- {f.name}:\n{f.read_text(errors='replace')}" for f in sorted(folder.glob(pattern)))

    def task_log_tail(self, dag_id: str, run_id: str, task_id: str, lines: int = 30) -> str:
        return "\n".join(self.task_logs(dag_id, run_id, task_id).splitlines()[-lines:])


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
