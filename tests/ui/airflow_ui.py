"""Real Airflow services for the UI tests, with real users: tests/services' AirflowServices
(scheduler, dag-processor, triggerer, api-server on SQLite) configured with

- SimpleAuthManager and named users with passwords (not "all admins"): every role may read
  every DAG, which is all SimpleAuthManager can do;
- or the FAB auth manager (apache-airflow-providers-fab), whose roles can be limited to some
  DAGs: the only way in Airflow 3.3 to have a user who may not read a given DAG. Users and
  roles are made with Airflow's own CLI (`airflow users create`, `roles create`,
  `roles add-perms`, `sync-perm --include-dags` for the per-DAG resources).

REST calls carry a JWT from POST /auth/token (both auth managers serve it). The browser logs
in through the real login pages (`login()`), which set the `_token` cookie the UI and the
Swarm view read.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from tests.services.conftest import AirflowServices

SIMPLE = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
PLUGIN_ENTRY_POINT = "airflow_provider_locusts.www.plugin:LocustsPlugin"


@dataclass(frozen=True)
class User:
    name: str
    password: str
    role: str


def check_plugin_entry_point() -> None:
    """The api-server finds the plugin through the package's `airflow.plugins` entry point:
    an install older than pyproject.toml's entry points would test nothing."""
    found = [e.value for e in metadata.entry_points(group="airflow.plugins") if e.name == "locusts"]
    if found != [PLUGIN_ENTRY_POINT]:
        raise AssertionError(
            f"the installed airflow-provider-locusts declares airflow.plugins {found}, not {PLUGIN_ENTRY_POINT!r}: "
            "reinstall it (pip install -e '.[test]', as tests/run.sh does)"
        )


class UiAirflow(AirflowServices):
    """AirflowServices with an auth manager and users; `api()` calls as the admin."""

    def __init__(self, base: Path, auth_manager: str, users: list[User]):
        super().__init__(base)
        self.auth_manager = auth_manager
        self.users = {u.name: u for u in users}
        self.admin = next(u for u in users if u.role.lower() == "admin")
        self._tokens: dict[str, str] = {}
        self.env.update(AIRFLOW__CORE__AUTH_MANAGER=auth_manager, AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="False")
        if auth_manager == SIMPLE:
            passwords = self.home / "simple_auth_manager_passwords.json"
            # Written before the api-server starts: it keeps the passwords it finds there.
            passwords.write_text(json.dumps({u.name: u.password for u in users}))
            passwords.chmod(0o600)
            self.env.update(
                AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=",".join(f"{u.name}:{u.role}" for u in users),
                AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
            )

    def create_fab_users(self) -> None:
        """FAB users of the built-in roles (after `db migrate`, which makes FAB's tables)."""
        for user in self.users.values():
            if user.role in ("Admin", "Viewer", "User", "Op"):
                self.airflow("users", "create", "--username", user.name, "--password", user.password,
                             "--firstname", user.name, "--lastname", "Test", "--email", f"{user.name}@example.org",
                             "--role", user.role)

    def create_fab_role_for_dag(self, role: str, dag_id: str, user: User, task_logs: bool = True) -> None:
        """A role that may read one DAG (its runs, task instances, XComs, and logs unless
        `task_logs` is False), and a user in it."""
        self.airflow("sync-perm", "--include-dags")  # creates the DAG:<dag_id> resources
        self.airflow("roles", "create", role)
        resources = [f"DAG:{dag_id}", "DAG Runs", "Task Instances", *(["Task Logs"] if task_logs else []), "XComs", "Website"]
        self.airflow("roles", "add-perms", role, "-a", "can_read", "-r", *resources)
        self.airflow("users", "create", "--username", user.name, "--password", user.password,
                     "--firstname", user.name, "--lastname", "Test", "--email", f"{user.name}@example.org",
                     "--role", role)

    # --- REST --------------------------------------------------------------------------
    def token(self, user: User) -> str:
        if user.name not in self._tokens:
            status, body = self.request("POST", "/auth/token", {"username": user.name, "password": user.password})
            if status not in (200, 201) or "access_token" not in body:
                raise AssertionError(f"POST /auth/token as {user.name} -> {status}: {body}")
            self._tokens[user.name] = body["access_token"]
        return self._tokens[user.name]

    def request(self, method: str, path: str, body: Any = None, *, user: User | None = None,
                cookie_token: str | None = None, timeout: float = 30) -> tuple[int, Any]:
        """(status, parsed JSON or text) of one call; as `user` (bearer token) or with a `_token` cookie."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if user is not None:
            headers["Authorization"] = f"Bearer {self.token(user)}"
        if cookie_token is not None:
            headers["Cookie"] = f"_token={cookie_token}"
        request = urllib.request.Request(self.url + path, method=method, headers=headers,
                                         data=None if body is None else json.dumps(body).encode())
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=timeout) as response:
                status, raw, ctype = response.status, response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as error:
            status, raw, ctype = error.code, error.read(), error.headers.get("Content-Type", "")
            if status in (301, 302, 303, 307, 308):
                return status, error.headers.get("Location")
        text = raw.decode(errors="replace")
        return status, (json.loads(text) if "json" in ctype and text else text)

    def api(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        status, result = self.request(method, path, body, user=self.admin, timeout=timeout)
        if status >= 400:
            raise AssertionError(f"{method} {path} -> HTTP {status}: {str(result)[:2000]}")
        return result

    def start_all(self) -> None:
        """As AirflowServices.start_all, plus FAB's users once its tables exist."""
        self.airflow("db", "migrate")
        if self.auth_manager == FAB:
            self.create_fab_users()
        self.start("api-server", "--host", "127.0.0.1", "--port", str(self.port))
        self.start("dag-processor")
        self.start("scheduler", "--skip-serve-logs")
        self.start_triggerer()
        self.wait_for(self.healthy, 240, "every service to report healthy at /api/v2/monitor/health")

    def run_dag(self, dag_id: str, run_id: str, timeout: float = 240) -> dict:
        """Trigger a run and wait (bounded) until it ends; returns the run."""
        self.wait_for_dag(dag_id)
        self.trigger_dag(dag_id, run_id)

        def ended():
            run = self.dag_run(dag_id, run_id)
            return run if run["state"] in ("success", "failed") else None

        return self.wait_for(ended, timeout, f"run {run_id} of {dag_id} to end",
                             extra=lambda: self.task_log_tail(dag_id, run_id, "swarm") if "swarm" in dag_id else "")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Report redirects instead of following them (the page's redirect to login is checked)."""

    def redirect_request(self, *args, **kwargs):
        return None


def new_password() -> str:
    return "pw-" + secrets.token_urlsafe(12)


# --- browser -------------------------------------------------------------------------------


def login(browser, airflow: UiAirflow, user: User, timeout: float = 60) -> None:
    """Log `user` in through the auth manager's real login page, then wait until the UI holds
    the `_token` cookie and has left the login page."""
    browser.driver.get(airflow.url + ("/auth/login/" if airflow.auth_manager == FAB else "/auth/login"))
    login_form(browser, user, timeout)


def login_form(browser, user: User, timeout: float = 60) -> None:
    """Fill and send the login form the browser shows (wherever the login was asked from)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser.driver
    wait = WebDriverWait(driver, timeout)
    name = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "input[name=username]")))
    name.send_keys(user.name)
    driver.find_element(By.CSS_SELECTOR, "input[name=password]").send_keys(user.password)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit], button[type=submit]").click()
    wait.until(lambda d: d.get_cookie("_token") is not None)
    wait.until(lambda d: "/auth/login" not in d.current_url)


def wait_for_text(browser, text: str, timeout: float = 60, frame: bool = False) -> str:
    """Wait (bounded) until the page's visible text holds `text`; returns the text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    deadline = time.monotonic() + timeout
    last = ""

    def has_text(driver):
        nonlocal last
        last = driver.find_element(By.TAG_NAME, "body").text
        return text in last

    try:
        WebDriverWait(browser.driver, max(deadline - time.monotonic(), 1)).until(has_text)
    except Exception as error:
        raise AssertionError(f"{text!r} not shown within {timeout}s at {browser.driver.current_url}; page text:\n{last[:3000]}") from error
    return last


def wait_js(browser, condition: str, timeout: float = 60, what: str = "") -> object:
    """Wait (bounded) until the JavaScript expression `condition` is truthy in the current
    page (or frame); returns its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(browser.driver, timeout, poll_frequency=0.25).until(
            lambda d: d.execute_script(f"return ({condition});"))
    except Exception as error:
        text = browser.driver.execute_script("return document.body ? document.body.innerText : ''") or ""
        raise AssertionError(f"{what or condition} not true within {timeout}s at {browser.driver.current_url}; "
                             f"page text:\n{text[:3000]}") from error


def timed_get(airflow: UiAirflow, path: str, user: User, timeout: float = 60) -> tuple[int, Any, float | None]:
    """GET as `user`: (status, parsed JSON or text, the app's Server-Timing in ms)."""
    request = urllib.request.Request(airflow.url + path, headers={"Authorization": f"Bearer {airflow.token(user)}",
                                                                   "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw, headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        status, raw, headers = error.code, error.read(), error.headers
    timing = headers.get("Server-Timing", "")
    server_ms = float(timing.split("dur=", 1)[1]) if "dur=" in timing else None
    text = raw.decode(errors="replace")
    body = json.loads(text) if "json" in headers.get("Content-Type", "") and text else text
    return status, body, server_ms


def wait_for_deferred(airflow: UiAirflow, dag_id: str, run_id: str, timeout: float = 300) -> None:
    """Wait (bounded) until the run's swarm task is deferred; fail at once if it ended instead."""

    def deferred():
        state = airflow.task_instance(dag_id, run_id, "swarm")["state"]
        if state in ("failed", "success", "upstream_failed", "skipped", "up_for_retry"):
            raise AssertionError(f"the swarm task of {dag_id} ended ({state}) instead of deferring:\n"
                                 + airflow.task_log_tail(dag_id, run_id, "swarm", lines=60))
        return state == "deferred"

    airflow.wait_for(deferred, timeout, f"the swarm task of {dag_id} to defer",
                     extra=lambda: airflow.task_log_tail(dag_id, run_id, "swarm"))
