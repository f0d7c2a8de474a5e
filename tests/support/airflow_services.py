"""A set of real Airflow service processes driven from a test: start `airflow <component>`
subprocesses (each leading a session of its own, output to a log file), stop or crash them
by pid, wait with deadlines whose failure messages carry the services' log tails, and talk
to the api-server through its REST API.

Nothing here imports Airflow: the services get their whole configuration from `env`, and
the tests see them through the REST API and the files they write only, so this module
never touches the Airflow configuration of the test process (tests/e2e relies on
importing Airflow first). Subclasses build `env` (tests/services: SQLite + LocalExecutor;
tests/deployment: PostgreSQL + Redis + CeleryExecutor over several "hosts").
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from tests.support.processes import Component, signal_pids, tail, wait_gone

REPO = Path(__file__).resolve().parents[2]
TERMINAL_RUN_STATES = ("success", "failed")
TERMINAL_TI_STATES = ("success", "failed", "upstream_failed", "skipped", "removed")


class AirflowProcessSet:
    """Airflow processes sharing one environment. Subclasses set `env` (every process gets
    exactly it, plus per-process additions), `home` (cwd of the processes), `url` (the
    api-server), `logs` (where service output goes) and `task_log_folder`."""

    service_names: tuple[str, ...] = ("api-server", "dag-processor", "scheduler", "triggerer")

    def __init__(self, home: Path, logs: Path, task_log_folder: Path, url: str, env: dict[str, str]):
        self.home = home
        self.logs = logs
        self.task_log_folder = task_log_folder
        self.url = url
        self.env = env
        self.components: list[Component] = []

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

    def start_process(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None,
                      cwd: Path | None = None) -> Component:
        """Start `argv` in a session of its own, output to logs/<name>[.<n>].log."""
        count = sum(1 for c in self.components if c.name == name)
        log = self.logs / (f"{name}.log" if count == 0 else f"{name}.{count}.log")
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                list(argv), env=env or self.env, cwd=cwd or self.home,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        component = Component(name, popen, log)
        self.components.append(component)
        return component

    def start(self, name: str, *args: str) -> Component:
        """Start `airflow <name> <args>`."""
        return self.start_process(name, [sys.executable, "-m", "airflow", name, *args])

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

    def stop_components(self, timeout: float = 8.0, components: Iterable[Component] | None = None) -> None:
        """Stop every component (or those given) at once: SIGTERM to each leader, a bounded
        wait, then SIGKILL to whatever is left in their sessions (an idle triggerer takes
        10 s to stop its trigger runner)."""
        chosen = self.components if components is None else list(components)
        live = [c for c in chosen if c.running() or c.members()]
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

    # --- waiting and reporting -------------------------------------------------------------
    def tails(self, names: Iterable[str] | None = None, lines: int = 40) -> str:
        names = tuple(self.service_names if names is None else names)
        return "\n".join(c.tail(lines) for c in self.components if c.name in names)

    def wait_for(self, predicate: Callable[[], Any], timeout: float, what: str,
                 names: Iterable[str] | None = None, extra: Callable[[], str] | None = None, step: float = 0.5) -> Any:
        """Poll `predicate` until it returns something truthy (returned), at most `timeout` s.
        Fails at once if a component that should be running died. Failure messages carry the
        tails of the services' logs (`names`, default: all services) and `extra()`."""
        names = tuple(self.service_names if names is None else names)
        deadline = time.monotonic() + timeout
        slow = None
        while True:
            try:
                value = predicate()
            except (TimeoutError, ConnectionError, urllib.error.URLError) as error:
                # A service too busy to answer one request in time (a loaded machine) is not
                # what is waited for: ask again until the deadline, and say so if it passes.
                value, slow = None, error
            if value:
                return value
            dead = [c for c in self.components if not c.stopped and not c.running()]
            expired = time.monotonic() > deadline
            if dead or expired:
                why = (
                    f"{', '.join(f'{c.name} exited ({c.popen.returncode})' for c in dead)} while waiting for {what}"
                    if dead else f"timed out after {timeout}s waiting for {what}"
                    + (f" (the last request failed: {slow!r})" if slow else "")
                )
                detail = extra() if extra else ""
                shown = set(names) | {c.name for c in dead}
                raise AssertionError(f"{why}\n{detail}\n{self.tails(shown)}")
            time.sleep(step)

    def health(self) -> dict:
        return self.api("GET", "/api/v2/monitor/health")

    def healthy(self) -> bool:
        """Every part /api/v2/monitor/health reports on says healthy."""
        try:
            health = self.health()
        except (OSError, AssertionError):
            return False
        return all(health.get(part, {}).get("status") == "healthy" for part in ("metadatabase", "scheduler", "triggerer", "dag_processor"))

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
        """Wait until the dag-processor parsed the DAG; unpause it."""
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
        files = sorted((self.task_log_folder / "dag_processor").glob("**/*.log"), key=lambda p: p.stat().st_mtime)
        return "\n".join(f"--- {f}:\n{tail(f, 30)}" for f in files[-2:])

    def trigger_dag(self, dag_id: str, run_id: str, conf: dict | None = None) -> dict:
        body = {"dag_run_id": run_id, "logical_date": None}
        if conf is not None:
            body["conf"] = conf
        return self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> dict:
        return self.api("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}", {"new_state": state})

    def clear_task(self, dag_id: str, run_id: str, task_id: str, only_failed: bool = True) -> dict:
        """Clear a task instance (a new try, as an Airflow retry), its run set running again."""
        return self.api("POST", f"/api/v2/dags/{dag_id}/clearTaskInstances", {
            "dry_run": False, "dag_run_id": run_id, "task_ids": [task_id], "only_failed": only_failed,
            "reset_dag_runs": True,
        })

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")["value"]

    def task_log_files(self, dag_id: str, run_id: str, task_id: str, trigger_only: bool = False) -> list[Path]:
        folder = self.task_log_folder / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        return sorted(folder.glob("*.trigger.*.log" if trigger_only else "*.log"))

    def task_logs(self, dag_id: str, run_id: str, task_id: str, trigger_only: bool = False) -> str:
        """The task's log files (worker and trigger logs), read from the task log folder."""
        return "\n".join(
            f"--- {f.name}:\n{f.read_text(errors='replace')}" for f in self.task_log_files(dag_id, run_id, task_id, trigger_only)
        )

    def task_log_tail(self, dag_id: str, run_id: str, task_id: str, lines: int = 30) -> str:
        return "\n".join(self.task_logs(dag_id, run_id, task_id).splitlines()[-lines:])

    def run_log_tails(self, dag_id: str, run_id: str, lines: int = 30) -> str:
        """The tail of every task's logs of a run (for failure messages)."""
        parts = []
        for ti in self.task_instances(dag_id, run_id):
            parts.append(f"=== {ti['task_id']}: {ti['state']} on {ti.get('hostname')!r}\n"
                         f"{self.task_log_tail(dag_id, run_id, ti['task_id'], lines)}")
        return "\n".join(parts)

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300, names: Iterable[str] | None = None) -> dict:
        """Wait until the run is success or failed; return it (the caller asserts the state)."""
        def ended():
            run = self.dag_run(dag_id, run_id)
            return run if run["state"] in TERMINAL_RUN_STATES else None

        return self.wait_for(ended, timeout, f"run {run_id} of {dag_id} to end", names=names,
                             extra=lambda: self.run_log_tails(dag_id, run_id))
