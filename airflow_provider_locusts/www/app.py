"""The Swarm view: a FastAPI app the api-server mounts at /locusts (see plugin.py).

Every route but the static script depends on `readable(...)`: an authenticated Airflow user
(401 without a session; the HTML page redirects to the login page instead) allowed by
Airflow's auth manager to read that DAG's task instances (403 otherwise), or its task logs
for the log tails. The swarm is found only through the handle its task instance recorded
(XCom `locusts_swarm`); request values are compared with database rows, or are integers
and names from fixed sets: none reaches a path or a shell.

URLs (query parameters dag_id, run_id, task_id, map_index on each but the script):
  GET /locusts/swarm                the page (the task instance's "Swarm" tab and extra link)
  GET /locusts/api/swarm            the task instance and its recorded handle, as JSON
  GET /locusts/api/swarm/status     live counts, managers, throughput, ETA; or the results' counts
  GET /locusts/api/swarm/tasks      a page of the per-task results (page, per_page, failed_only, q, sort)
  GET /locusts/api/swarm/logs       the last 64 KB of a task's stdout and stderr (task=INDEX)
  GET /locusts/plots/NAME.svg       completion (live or final), timeline, durations
  GET /locusts/static/swarm.js      the page's script (public: it holds no data)
"""

from __future__ import annotations

import enum
import json
import time
from dataclasses import asdict
from importlib import resources
from typing import Annotated, Literal
from urllib.parse import urlencode

import jinja2
from airflow.api_fastapi.common.db.common import SessionDep
from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_provider_locusts.swarm.errors import SwarmNotFoundError
from airflow_provider_locusts.www import airflow_auth
from airflow_provider_locusts.www.airflow_data import (
    TaskInstanceInfo,
    TaskInstanceKey,
    read_task_instance,
)
from airflow_provider_locusts.www.manifest_table import PER_PAGE_MAX, ManifestTable, ManifestTooLarge
from airflow_provider_locusts.www.plots import completion_series_svg, message_svg
from airflow_provider_locusts.www.swarm_reader import HandleError, SwarmReader, handle_from_xcom
from airflow_provider_locusts.www.urls import (
    API,
    LOGS_API,
    MAP_INDEX_PLACEHOLDER,
    PAGE,
    PLOTS,
    SCRIPT,
    STATUS_API,
    TASKS_API,
)

ID_MAX = 250  # Airflow's ID_LEN
HTML_ROUTES = {PAGE}
PUBLIC_ROUTES = {SCRIPT}  # static, no data: see test_every_route_of_the_view_requires_...
ERROR_MESSAGES = {
    status.HTTP_403_FORBIDDEN: "You are not allowed to see the task instances of this DAG.",
    status.HTTP_404_NOT_FOUND: "There is no such task instance.",
}
# Task instance states in which the swarm may be running: the view shows live progress.
LIVE_TI_STATES = frozenset({"scheduled", "queued", "running", "deferred", "up_for_reschedule", "restarting"})
# Pages are shown in the UI's iframe: framed by the same origin only. Scripts, requests and
# images from this origin only; nothing inline but styles.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
    ),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
DATA_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
# An SVG opened on its own is a document: it may run nothing and load nothing.
SVG_HEADERS = {**DATA_HEADERS, "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("airflow_provider_locusts.www", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


class PlotName(str, enum.Enum):
    completion = "completion"
    timeline = "timeline"
    durations = "durations"


def _map_index(map_index: Annotated[str, Query(max_length=12)] = "-1") -> int:
    """-1 for an unmapped task (the UI leaves its placeholder there), else the index."""
    if map_index == MAP_INDEX_PLACEHOLDER:
        return -1
    try:
        value = int(map_index)
    except ValueError:
        raise HTTPException(422, "map_index must be an integer ≥ -1") from None
    if value < -1:
        raise HTTPException(422, "map_index must be an integer ≥ -1")
    return value


def readable(entity):
    """A dependency: the task instance the request names, once Airflow says this user may read
    `entity` (airflow_auth.TASK_INSTANCE or TASK_LOGS) of its DAG."""

    def task_instance(
        user: airflow_auth.GetUserDep,
        dag_id: Annotated[str, Query(min_length=1, max_length=ID_MAX)],
        run_id: Annotated[str, Query(min_length=1, max_length=ID_MAX)],
        task_id: Annotated[str, Query(min_length=1, max_length=ID_MAX)],
        map_index: Annotated[int, Depends(_map_index)],
    ) -> TaskInstanceKey:
        airflow_auth.authorize_dag_read(user, dag_id, entity)
        return TaskInstanceKey(dag_id, run_id, task_id, map_index)

    return task_instance


ReadableTaskInstance = Annotated[TaskInstanceKey, Depends(readable(airflow_auth.TASK_INSTANCE))]
# Log tails: Airflow's permission to read the DAG's task logs.
ReadableTaskLogs = Annotated[TaskInstanceKey, Depends(readable(airflow_auth.TASK_LOGS))]


def _existing(session, key: TaskInstanceKey) -> TaskInstanceInfo:
    info = read_task_instance(session, key)
    if info is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "No such task instance")
    return info


def _swarm(info: TaskInstanceInfo):
    """The handle the task instance recorded; 404 when none, 409 when it cannot be read."""
    if info.handle is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "No swarm recorded for this task instance")
    try:
        return handle_from_xcom(info.handle)
    except HandleError as error:
        raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None


def _reach_error(handle, error: Exception) -> str:
    """What to tell the viewer when the swarm's host could not be read."""
    where = f"over the SSH connection {handle.ssh_conn_id!r}" if handle.ssh_conn_id else "on the api-server's machine"
    if isinstance(error, SwarmNotFoundError):
        text = f"The swarm's root {handle.root} cannot be seen {where}"
        if handle.local and handle.origin_host:
            text += f"; it ran on host {handle.origin_host} (local mode): give the operator an ssh_conn_id to watch it from anywhere"
        return text + "."
    return f"Reading the swarm {where} failed: {type(error).__name__}: {error}"


def _ti_json(info: TaskInstanceInfo) -> dict:
    return {**asdict(info.key), "state": info.state, "try_number": info.try_number}


def _where(handle) -> dict:
    return {
        "swarm_id": handle.swarm_id, "root": handle.root, "connection": handle.ssh_conn_id,
        "scheduler": handle.scheduler, "round": handle.round, "total": handle.total,
        "output_dir": handle.output_dir, "output_dir_on_host": handle.output_dir_on_host,
    }


def _json(data: dict, status_code: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status_code, headers=DATA_HEADERS)


def create_app(reader: SwarmReader | None = None) -> FastAPI:
    app = FastAPI(title="Locusts swarm view", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.reader = reader = reader or SwarmReader()
    script = resources.files("airflow_provider_locusts.www").joinpath("static/swarm.js").read_bytes()

    @app.middleware("http")
    async def server_timing(request: Request, call_next):
        """Server-Timing: the time this app spent on a request (what the view's figures quote)."""
        started = time.perf_counter()
        response = await call_next(request)
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response

    @app.exception_handler(StarletteHTTPException)
    async def login_or_error(request: Request, error: StarletteHTTPException) -> Response:
        """On the HTML page: no session → the login page and back; other errors as a page a
        person can read. JSON elsewhere."""
        if getattr(request.scope.get("route"), "path", None) not in HTML_ROUTES:
            return JSONResponse({"detail": error.detail}, status_code=error.status_code,
                                headers={**DATA_HEADERS, **(error.headers or {})})
        if error.status_code == status.HTTP_401_UNAUTHORIZED:
            return RedirectResponse(airflow_auth.login_url(next_url=str(request.url)), status.HTTP_303_SEE_OTHER)
        message = ERROR_MESSAGES.get(error.status_code, str(error.detail))
        html = _templates.get_template("error.html.j2").render(status=error.status_code, message=message)
        return HTMLResponse(html, status_code=error.status_code, headers=PAGE_HEADERS)

    @app.get(PAGE, response_class=HTMLResponse)
    def swarm_page(key: ReadableTaskInstance, session: SessionDep) -> HTMLResponse:
        info = _existing(session, key)
        html = _templates.get_template("swarm.html.j2").render(
            info=info,
            # The script's requests name this task instance the same way.
            query=urlencode({"dag_id": key.dag_id, "run_id": key.run_id, "task_id": key.task_id, "map_index": key.map_index}),
            handle_json=json.dumps(info.handle, indent=2, sort_keys=True, default=str) if info.handle is not None else None,
            per_page=50,
        )
        return HTMLResponse(html, headers=PAGE_HEADERS)

    @app.get(API)
    def swarm_json(key: ReadableTaskInstance, session: SessionDep) -> dict:
        info = _existing(session, key)
        return {**asdict(info.key), "state": info.state, "try_number": info.try_number,
                "operator": info.operator, "handle": info.handle}

    @app.get(STATUS_API)
    def swarm_status(key: ReadableTaskInstance, session: SessionDep) -> JSONResponse:
        """Where the swarm stands: "live" (counts after at most one shared poll), "ended"
        (the results' counts), "none" (no swarm recorded) or "error" (with a message)."""
        info = _existing(session, key)
        body: dict = {"ti": _ti_json(info), "phase": "none", "message": None, "swarm": None, "live": None, "results": None}
        if info.handle is None:
            return _json(body)
        try:
            handle = handle_from_xcom(info.handle)
        except HandleError as error:
            return _json({**body, "phase": "error", "message": str(error)})
        body["swarm"] = _where(handle)
        try:
            table = None if info.state in LIVE_TI_STATES else reader.results(handle)
            if table is not None:
                body.update(phase="ended", results={"total": len(table), "counts": table.counts(), "fingerprint": table.fingerprint})
                return _json(body)
            live, shared = reader.live_state(handle)
        except ManifestTooLarge as error:
            return _json({**body, "phase": "ended", "message": f"The per-task table is not shown: {error}."})
        except Exception as error:  # noqa: BLE001 - any failure to reach the host is shown, as text
            return _json({**body, "phase": "error", "message": _reach_error(handle, error)})
        live.pop("completion", None)
        live["shared"] = shared
        ended = info.state not in LIVE_TI_STATES
        message = "The swarm's task instance has ended, but no per-task results were gathered." if ended else None
        body.update(phase="live" if not ended else "ended", live=live, message=message)
        return _json(body)

    @app.get(TASKS_API)
    def swarm_tasks(
        key: ReadableTaskInstance,
        session: SessionDep,
        page: Annotated[int, Query(ge=1, le=10**7)] = 1,
        per_page: Annotated[int, Query(ge=1, le=PER_PAGE_MAX)] = 50,
        failed_only: bool = False,
        q: Annotated[str, Query(max_length=200)] = "",
        sort: Literal["index", "duration", "-duration"] = "index",
    ) -> JSONResponse:
        """A page of the per-task results (exec/results.jsonl on the swarm's host)."""
        handle = _swarm(_existing(session, key))
        table = _results(reader, handle)
        return _json({**table.page(page, per_page, failed_only, q, sort), "counts": table.counts(), "total": len(table)})

    @app.get(LOGS_API)
    def swarm_logs(
        key: ReadableTaskLogs,
        session: SessionDep,
        task: Annotated[int, Query(ge=0, le=10**9)],
    ) -> JSONResponse:
        """The last 64 KB of a task's stdout and stderr, the task given by its index."""
        handle = _swarm(_existing(session, key))
        try:
            logs = reader.task_logs(handle, task)
        except Exception as error:  # noqa: BLE001 - shown as text
            raise HTTPException(status.HTTP_502_BAD_GATEWAY, _reach_error(handle, error)) from None
        if logs is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"The swarm has no task {task}.")
        streams = {}
        for name, tail in logs.tails.items():
            streams[name.removesuffix(".txt")] = {
                "exists": tail.size is not None,
                "size": tail.size,
                "shown": len(tail.data),
                "truncated": tail.truncated,
                "text": tail.data.decode("utf-8", errors="replace"),
            }
        return _json({"index": logs.row.index, "id": logs.row.task_id, "folder": logs.folder, **streams,
                      "changes": _task_changes(reader, handle, logs.row.index)})

    @app.get(PLOTS)
    def swarm_plot(key: ReadableTaskInstance, session: SessionDep, name: PlotName) -> Response:
        """One plot as SVG: from the results once the swarm has ended; while it runs, the
        completion curve from the live counts (the other two need every task's times)."""
        info = _existing(session, key)
        handle = _swarm(info)
        try:
            table = None if info.state in LIVE_TI_STATES else reader.results(handle)
            if table is not None:
                svg = table.plots()[name.value]
            elif name is PlotName.completion:
                live, _ = reader.live_state(handle)
                svg = completion_series_svg(live["completion"], live["counts"]["total"] - live["counts"]["earlier"],
                                            live["first_start"], live["host_now"])
            else:
                svg = _message_svg(name.value, "Drawn once the swarm has ended and its results are gathered.")
        except Exception as error:  # noqa: BLE001 - the plot says what went wrong, as text
            svg = _message_svg(name.value, _reach_error(handle, error))
        return Response(svg, media_type="image/svg+xml", headers=SVG_HEADERS)

    @app.get(SCRIPT)
    def page_script() -> Response:
        """The page's script: the same bytes for everyone, no data in it."""
        return Response(script, media_type="text/javascript", headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})

    return app


def _results(reader: SwarmReader, handle) -> ManifestTable:
    try:
        table = reader.results(handle)
    except ManifestTooLarge as error:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, str(error)) from None
    except Exception as error:  # noqa: BLE001 - shown as text
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, _reach_error(handle, error)) from None
    if table is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "No per-task results were gathered for this swarm yet.")
    return table


def _task_changes(reader: SwarmReader, handle, index: int) -> dict | None:
    """A Custom Environment task's changes from the results, once gathered; None otherwise
    (the logs are worth showing without them, so a failed read is not an error here)."""
    try:
        table = reader.results(handle)
    except Exception:  # noqa: BLE001 - the results table reports its own errors
        return None
    return table.changes_of(index) if table is not None else None


def _message_svg(name: str, message: str) -> str:
    return message_svg({"timeline": "Timeline", "durations": "Task durations", "completion": "Completion"}[name], message)
