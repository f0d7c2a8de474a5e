"""The Swarm view's URLs, the extra link, and the plugin's registration, without an api-server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest

from airflow_provider_locusts import get_provider_info
from airflow_provider_locusts.www.urls import external_view_href, swarm_page_url

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("base_url,prefix", [
    (None, "/"), ("/", "/"), ("http://127.0.0.1:8080", "/"), ("https://example.org/airflow/", "/airflow/"),
    ("https://example.org/airflow", "/airflow/"),
])
def test_the_tab_href_follows_the_base_url_path_and_carries_the_ui_placeholders(base_url, prefix):
    assert external_view_href(base_url) == (
        f"{prefix}locusts/swarm?dag_id={{DAG_ID}}&run_id={{RUN_ID}}&task_id={{TASK_ID}}&map_index={{MAP_INDEX}}"
    )


def test_the_page_url_encodes_run_ids_and_keeps_the_origin():
    url = swarm_page_url("https://example.org/airflow", "d", "manual__2026-01-01T00:00:00+00:00", "t&x", 3)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "example.org", "/airflow/locusts/swarm")
    assert parse_qs(parts.query) == {"dag_id": ["d"], "run_id": ["manual__2026-01-01T00:00:00+00:00"],
                                     "task_id": ["t&x"], "map_index": ["3"]}
    assert swarm_page_url("/", "d", "r", "t").startswith("/locusts/swarm?")


def test_the_extra_link_points_at_the_task_instance_page(monkeypatch):
    from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator
    from airflow_provider_locusts.www.links import SwarmLink

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.example:8080")
    (link,) = [link for link in LocustsSwarmOperator.operator_extra_links if isinstance(link, SwarmLink)]
    key = SimpleNamespace(dag_id="dag", run_id="run 1", task_id="swarm", map_index=-1, try_number=1)
    assert link.name == "Swarm"
    assert link.get_link(None, ti_key=key) == (
        "http://airflow.example:8080/locusts/swarm?dag_id=dag&run_id=run+1&task_id=swarm&map_index=-1")


def test_the_plugin_is_declared_by_the_package_and_light_to_import():
    info = get_provider_info()
    assert info["plugins"] == [{"name": "locusts", "plugin-class": "airflow_provider_locusts.www.plugin.LocustsPlugin"}]
    assert info["extra-links"] == ["airflow_provider_locusts.www.links.SwarmLink"]
    assert '[project.entry-points."airflow.plugins"]\nlocusts = "airflow_provider_locusts.www.plugin:LocustsPlugin"' in (REPO / "pyproject.toml").read_text()
    # Workers load plugins too: importing the plugin must not build the app or import the
    # api-server's security module; reading fastapi_apps (the api-server does) builds it once.
    probe = (
        "import sys; from airflow_provider_locusts.www.plugin import LocustsPlugin as P;"
        "print('RESULT', 'airflow.api_fastapi.core_api.security' in sys.modules);"
        "apps = P.fastapi_apps; print('RESULT', [a['url_prefix'] for a in apps], P().fastapi_apps[0]['app'] is apps[0]['app'])"
    )
    out = subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True, text=True, timeout=300, cwd=REPO,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": "/root"})
    assert out.returncode == 0, out.stderr[-2000:]
    results = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]  # Airflow logs to stdout too
    assert results == ["RESULT False", "RESULT ['/locusts'] True"]


def test_the_map_index_placeholder_of_unmapped_tasks_reads_as_minus_one():
    from fastapi import HTTPException

    from airflow_provider_locusts.www.app import _map_index

    assert _map_index("{MAP_INDEX}") == -1
    assert _map_index("-1") == -1 and _map_index("7") == 7
    for bad in ("-2", "x", "1.5", ""):
        with pytest.raises(HTTPException) as error:
            _map_index(bad)
        assert error.value.status_code == 422


def _readable_entity(route):
    """The entity (task instances, task logs) a route's `readable(...)` dependency checks, or None."""
    from fastapi.dependencies.utils import get_flat_dependant

    for dependency in get_flat_dependant(route.dependant).dependencies:
        call = dependency.call
        if getattr(call, "__qualname__", "").startswith("readable."):
            cells = dict(zip(call.__code__.co_freevars, (c.cell_contents for c in call.__closure__ or ())))
            return cells["entity"]
    return None


def test_every_route_of_the_view_requires_an_airflow_user_allowed_on_the_dag():
    """A guard for routes to come: each one resolves Airflow's get_user and the DAG check (the
    task-logs permission for log tails), but the static script, which holds no data; the app
    publishes no unauthenticated docs or schema."""
    from fastapi.dependencies.utils import get_flat_dependant
    from fastapi.routing import APIRoute

    from airflow_provider_locusts.www import airflow_auth
    from airflow_provider_locusts.www.app import PUBLIC_ROUTES, create_app

    app = create_app()
    routes = [r for r in app.routes if isinstance(r, APIRoute)]
    assert {r.path for r in routes} == {"/swarm", "/api/swarm", "/api/swarm/status", "/api/swarm/tasks", "/api/swarm/logs",
                                        "/plots/{name}.svg", "/static/swarm.js"}
    assert PUBLIC_ROUTES == {"/static/swarm.js"}
    for route in routes:
        if route.path in PUBLIC_ROUTES:
            assert _readable_entity(route) is None and route.dependant.query_params == []
            continue
        calls = {d.call for d in get_flat_dependant(route.dependant).dependencies}
        assert airflow_auth.get_user in calls, route.path
        expected = airflow_auth.TASK_LOGS if route.path == "/api/swarm/logs" else airflow_auth.TASK_INSTANCE
        assert _readable_entity(route) == expected, route.path
    assert (app.docs_url, app.redoc_url, app.openapi_url) == (None, None, None)
    assert [r.path for r in app.routes if not isinstance(r, APIRoute)] == []


def test_without_a_session_every_data_route_answers_401_and_the_script_holds_no_data():
    """Through the real app (no api-server): Airflow's get_user refuses before anything is read."""
    from importlib import resources

    from fastapi.testclient import TestClient

    from airflow_provider_locusts.www.app import create_app

    client = TestClient(create_app())
    ti = "dag_id=d&run_id=r&task_id=t&map_index=-1"
    for path in ("/api/swarm", "/api/swarm/status", "/api/swarm/tasks?page=2&failed_only=true&q=x&sort=-duration",
                 "/api/swarm/logs?task=3", "/plots/completion.svg", "/plots/timeline.svg", "/plots/durations.svg"):
        response = client.get(path + ("&" if "?" in path else "?") + ti)
        assert response.status_code == 401, path
        assert response.json() == {"detail": "Not authenticated"}
        assert response.headers["cache-control"] == "no-store"
    script = client.get("/static/swarm.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert script.content == resources.files("airflow_provider_locusts.www").joinpath("static/swarm.js").read_bytes()
    assert client.get("/static/swarm.js?" + ti).content == script.content  # the same bytes for everyone
    assert ".innerHTML" not in script.text and "insertAdjacentHTML" not in script.text and "eval(" not in script.text
    assert client.get("/static/other.js").status_code == 404
