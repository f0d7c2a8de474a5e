"""Fixtures of the UI tests: a headless browser, and real Airflow services with real users
(SimpleAuthManager, and FAB for a user limited to one DAG), each started once per session."""

from __future__ import annotations

import pytest

from tests.ui import browser as chrome
from tests.ui.airflow_ui import (
    FAB,
    SIMPLE,
    UiAirflow,
    User,
    check_plugin_entry_point,
    new_password,
)
from tests.ui.dags import HANDLE_DAG, OTHER_DAG, SWARM_DAG, write_dags

RUN_ID = "ui_run_1"


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives a real headless Chromium")


@pytest.fixture
def browser():
    why = chrome.missing()
    if why:
        pytest.skip(why)
    b = chrome.Browser()
    try:
        yield b
    finally:
        b.close()


class Users:
    admin = User("ada", new_password(), "admin")
    viewer = User("vic", new_password(), "viewer")
    fab_admin = User("ada", new_password(), "Admin")
    fab_limited = User("bea", new_password(), "other_dag_readers")  # may read OTHER_DAG only


def _start(tmp_path_factory, name: str, auth_manager: str, users: list[User]) -> UiAirflow:
    check_plugin_entry_point()
    base = tmp_path_factory.mktemp(name)
    airflow = UiAirflow(base, auth_manager, users)
    write_dags(airflow.dags, base)
    try:
        airflow.start_all()
    except BaseException:
        airflow.close()
        raise
    return airflow


@pytest.fixture(scope="session")
def simple_airflow(tmp_path_factory):
    """SimpleAuthManager with an admin and a viewer; the three DAGs run once (RUN_ID)."""
    airflow = _start(tmp_path_factory, "ui-simple", SIMPLE, [Users.admin, Users.viewer])
    try:
        for dag_id in (OTHER_DAG, HANDLE_DAG, SWARM_DAG):
            airflow.run_dag(dag_id, RUN_ID)
        yield airflow
    finally:
        airflow.close()  # also stops any swarm manager left under its swarms folder


@pytest.fixture(scope="session")
def fab_airflow(tmp_path_factory):
    """The FAB auth manager with an admin and a user whose role may read OTHER_DAG only; the
    handle and other DAGs run once (RUN_ID)."""
    airflow = _start(tmp_path_factory, "ui-fab", FAB, [Users.fab_admin])
    try:
        for dag_id in (OTHER_DAG, HANDLE_DAG):
            airflow.wait_for_dag(dag_id)
        airflow.create_fab_role_for_dag("other_dag_readers", OTHER_DAG, Users.fab_limited)
        for dag_id in (OTHER_DAG, HANDLE_DAG):
            airflow.run_dag(dag_id, RUN_ID)
        yield airflow
    finally:
        airflow.close()
