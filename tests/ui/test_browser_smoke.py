"""The browser harness on the real Airflow 3 UI: a viewer logs in (SimpleAuthManager, named
users), opens a DAG's page and a task instance's page; screenshots are kept."""

from __future__ import annotations

import pytest

from tests.ui.airflow_ui import login, wait_for_text
from tests.ui.conftest import RUN_ID, Users
from tests.ui.dags import OTHER_DAG

pytestmark = [pytest.mark.services, pytest.mark.browser]


def test_a_viewer_logs_in_and_sees_a_dag_and_a_task_instance(simple_airflow, browser):
    login(browser, simple_airflow, Users.viewer)
    browser.driver.get(f"{simple_airflow.url}/dags/{OTHER_DAG}")
    text = wait_for_text(browser, OTHER_DAG)
    browser.screenshot("smoke_dag_page")
    assert "Runs" in text or "runs" in text.lower()

    browser.driver.get(f"{simple_airflow.url}/dags/{OTHER_DAG}/runs/{RUN_ID}/tasks/plain")
    text = wait_for_text(browser, "plain")
    wait_for_text(browser, "Success")
    browser.screenshot("smoke_task_instance_page")
    assert RUN_ID in text or "Logs" in text
    assert not browser.selenium_manager_ran(), "Selenium Manager ran: something would be downloaded"


def test_a_wrong_password_is_refused(simple_airflow):
    status, _ = simple_airflow.request("POST", "/auth/token", {"username": Users.viewer.name, "password": "not-it"})
    assert status == 401
