"""The Swarm view of a real Custom Environment swarm (ENV_DAG, run by the services): the task
table counts each task's changes in its replica, and a task's panel lists them, its file names
(which hold HTML) shown as text; the task that wrote into the read-only part fails naming it."""

from __future__ import annotations

import pytest

from tests.ui.airflow_ui import login, timed_get, wait_js
from tests.ui.conftest import Users
from tests.ui.dags import ENV_DAG, ENV_RESULT, ENV_TASKS

pytestmark = [pytest.mark.services]

ENV_RUN = "environment_run_1"
QUERY = f"dag_id={ENV_DAG}&run_id={ENV_RUN}&task_id=swarm&map_index=-1"


@pytest.fixture(scope="module")
def environment_run(simple_airflow):
    run = simple_airflow.run_dag(ENV_DAG, ENV_RUN)
    assert run["state"] == "success", simple_airflow.task_log_tail(ENV_DAG, ENV_RUN, "swarm")
    return run


def test_the_task_table_and_logs_api_carry_each_tasks_changes(simple_airflow, environment_run):
    code, body, _ = timed_get(simple_airflow, f"/locusts/api/swarm/tasks?{QUERY}", Users.viewer)
    assert code == 200, body
    assert body["has_changes"] is True
    rows = {r["id"]: r for r in body["rows"]}
    assert len(rows) == ENV_TASKS
    assert rows["0"]["changes"] == {"created": 1, "modified": 1, "deleted": 0}
    assert rows["1"]["changes"] == {"created": 1, "modified": 0, "deleted": 1}
    assert rows["2"]["state"] == "failed" and "conf/settings.txt" in rows["2"]["reason"]
    assert rows["2"]["changes"]["read_only_changed"] == 1

    code, logs, _ = timed_get(simple_airflow, f"/locusts/api/swarm/logs?{QUERY}&task=1", Users.viewer)
    assert code == 200, logs
    assert logs["changes"]["created"] == {"paths": [f"results/{ENV_RESULT}1.txt"], "count": 1}
    assert logs["changes"]["deleted"] == {"paths": ["results/old.txt"], "count": 1}


@pytest.mark.browser
def test_the_view_lists_a_tasks_changes_as_text(simple_airflow, environment_run, browser):
    from selenium.webdriver.common.by import By

    login(browser, simple_airflow, Users.viewer)
    browser.driver.get(f"{simple_airflow.url}/locusts/swarm?{QUERY}")
    wait_js(browser, f"document.body.dataset.phase === 'ended' && document.querySelectorAll('#tasks tbody tr').length === {ENV_TASKS}",
            120, "the ended swarm's task table")
    header = browser.driver.find_element(By.CSS_SELECTOR, "#tasks th.changes")
    assert header.is_displayed()
    cells = [td.text for td in browser.driver.find_elements(By.CSS_SELECTOR, "#tasks tbody td.changes")]
    assert cells[:2] == ["1 created, 1 modified, 0 deleted", "1 created, 0 modified, 1 deleted"]
    assert "1 read only changed" in cells[2]

    browser.driver.find_element(By.CSS_SELECTOR, "#tasks tbody tr:nth-child(1) td.id button").click()
    wait_js(browser, "document.body.dataset.logs === '0' && !document.getElementById('log-changes').hidden", 60, "task 0's changes")
    listed = browser.driver.find_element(By.ID, "log-changes-list").text.splitlines()
    assert listed == ["created (1)", f"results/{ENV_RESULT}0.txt", "modified (1)", "results/old.txt", "deleted (0)"]
    # The file name's HTML stayed text: no element came from it.
    assert browser.driver.find_elements(By.CSS_SELECTOR, "#log-changes-list b, #log-changes-list img") == []
    browser.driver.execute_script("document.getElementById('logs').scrollIntoView()")
    browser.screenshot("environment_01_task_changes", full_page=True, max_height=3000)
