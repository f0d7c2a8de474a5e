"""The Swarm view: a FastAPI app the api-server mounts at /locusts (see plugin.py).

Every route depends on `readable(...)`: an authenticated Airflow user (401 without a
session; the HTML page redirects to the login page instead) allowed by Airflow's auth manager
to read that DAG's task instances (403 otherwise). Request values are only ever compared with
database rows: none reaches a path or a shell.

URLs (query parameters dag_id, run_id, task_id, map_index on each):
  GET /locusts/swarm      the page shown in the task instance's "Swarm" tab and extra link
  GET /locusts/api/swarm  the same facts as JSON
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import jinja2
from airflow.api_fastapi.common.db.common import SessionDep
from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_provider_locusts.www import airflow_auth
from airflow_provider_locusts.www.airflow_data import (
    TaskInstanceInfo,
    TaskInstanceKey,
    read_task_instance,
)
from airflow_provider_locusts.www.urls import API, MAP_INDEX_PLACEHOLDER, PAGE

ID_MAX = 250  # Airflow's ID_LEN
HTML_ROUTES = {PAGE}
ERROR_MESSAGES = {
    status.HTTP_403_FORBIDDEN: "You are not allowed to see the task instances of this DAG.",
    status.HTTP_404_NOT_FOUND: "There is no such task instance.",
}
# Pages are shown in the UI's iframe: framed by the same origin only; no script from anywhere yet.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'",
    "Cache-Control": "no-store",
}

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("airflow_provider_locusts.www", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


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
# For log tails (to come): Airflow's permission to read the DAG's task logs.
ReadableTaskLogs = Annotated[TaskInstanceKey, Depends(readable(airflow_auth.TASK_LOGS))]


def _existing(session, key: TaskInstanceKey) -> TaskInstanceInfo:
    info = read_task_instance(session, key)
    if info is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "No such task instance")
    return info


def create_app() -> FastAPI:
    app = FastAPI(title="Locusts swarm view", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(StarletteHTTPException)
    async def login_or_error(request: Request, error: StarletteHTTPException) -> Response:
        """On the HTML page: no session → the login page and back; other errors as a page a
        person can read. JSON elsewhere."""
        if getattr(request.scope.get("route"), "path", None) not in HTML_ROUTES:
            return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)
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
            handle_json=json.dumps(info.handle, indent=2, sort_keys=True, default=str) if info.handle is not None else None,
        )
        return HTMLResponse(html, headers=PAGE_HEADERS)

    @app.get(API)
    def swarm_json(key: ReadableTaskInstance, session: SessionDep) -> dict:
        info = _existing(session, key)
        return {**asdict(info.key), "state": info.state, "try_number": info.try_number,
                "operator": info.operator, "handle": info.handle}

    return app
