"""Where the Swarm view of a task instance lives: one URL scheme shared by the view's routes,
the external view (the "Swarm" tab on the task-instance page) and the operator extra link."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

URL_PREFIX = "/locusts"  # where the provider's FastAPI app is mounted in the api-server
PAGE = "/swarm"  # the HTML page of one swarm task instance
API = "/api/swarm"  # the task instance and its recorded handle as JSON
STATUS_API = "/api/swarm/status"  # live progress, or the results' counts
TASKS_API = "/api/swarm/tasks"  # a page of the per-task results
LOGS_API = "/api/swarm/logs"  # a task's log tails
PLOTS = "/plots/{name}.svg"  # completion, timeline, durations
SCRIPT = "/static/swarm.js"  # the page's script (no data)
# The placeholders Airflow's UI (3.1+) fills in an external view's href for destination
# "task_instance" (URL-encoded). On the page of an unmapped task the UI has no map index and
# leaves "{MAP_INDEX}" as it is: the view reads that as -1.
UI_PLACEHOLDERS = {"dag_id": "{DAG_ID}", "run_id": "{RUN_ID}", "task_id": "{TASK_ID}", "map_index": "{MAP_INDEX}"}
MAP_INDEX_PLACEHOLDER = UI_PLACEHOLDERS["map_index"]


def root_path(base_url: str | None) -> str:
    """The path part of Airflow's [api] base_url, always ending with one "/"."""
    path = urlsplit(base_url or "/").path or "/"
    return path.rstrip("/") + "/"


def external_view_href(base_url: str | None) -> str:
    """The href template of the Swarm tab; the UI replaces the placeholders."""
    query = "&".join(f"{name}={placeholder}" for name, placeholder in UI_PLACEHOLDERS.items())
    return f"{root_path(base_url)}{URL_PREFIX.lstrip('/')}{PAGE}?{query}"


def swarm_page_url(base_url: str | None, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """Absolute URL of a task instance's Swarm page when base_url has a scheme and host, else
    a path from the server's root."""
    parts = urlsplit(base_url or "/")
    origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    query = urlencode({"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index})
    return f"{origin}{root_path(base_url)}{URL_PREFIX.lstrip('/')}{PAGE}?{query}"
