"""The Swarm view of a swarm on the SSH + SLURM test cluster (tests/cluster/): the api-server
polls it over the SSH connection `locusts_test_ssh`, shows the managers' SLURM job ids and
states while the tasks wait on a gate file on the host, and reads log tails over SSH.
Copy mode: the swarm root exists only on the SSH host."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cluster import skip_or_fail
from tests.ui.airflow_ui import login, timed_get, wait_for_deferred, wait_js
from tests.ui.conftest import Users
from tests.ui.dags import CLUSTER_DAG, CLUSTER_TASKS

pytestmark = [pytest.mark.services, pytest.mark.cluster]

CLUSTER_RUN = "cluster_run_1"
QUERY = f"dag_id={CLUSTER_DAG}&run_id={CLUSTER_RUN}&task_id=swarm&map_index=-1"


@pytest.fixture(scope="module")
def cluster_run(simple_airflow, test_cluster):
    if test_cluster is None:
        skip_or_fail("the SSH + SLURM test cluster is not running (tests/cluster/start.sh), or not as root")
    simple_airflow.wait_for_dag(CLUSTER_DAG)
    simple_airflow.trigger_dag(CLUSTER_DAG, CLUSTER_RUN)
    wait_for_deferred(simple_airflow, CLUSTER_DAG, CLUSTER_RUN)
    try:
        yield test_cluster
    finally:
        Path(test_cluster.gate).touch()


def squeue_jobs(cluster_run) -> dict[str, str]:
    """Job id → state of this session's jobs, as SLURM itself lists them."""
    return dict(cluster_run.cluster.jobs_named(cluster_run.token))


def status(simple_airflow) -> dict:
    code, body, _ = timed_get(simple_airflow, f"/locusts/api/swarm/status?{QUERY}", Users.viewer)
    assert code == 200, body
    return body


def test_the_view_shows_slurm_job_ids_and_states_read_over_ssh(simple_airflow, cluster_run):
    def running():
        body = status(simple_airflow)
        managers = (body.get("live") or {}).get("managers") or []
        return body if len(managers) == 2 and all(m["job_state"] == "RUNNING" and m["state"] == "running" for m in managers) else None

    body = simple_airflow.wait_for(running, 240, "both SLURM jobs to run")
    assert body["phase"] == "live" and body["swarm"]["connection"] == "locusts_test_ssh"
    assert body["swarm"]["scheduler"] == "slurm" and body["swarm"]["root"].startswith(cluster_run.remote_root)
    jobs = {m["job_id"]: m for m in body["live"]["managers"]}
    assert squeue_jobs(cluster_run) == {job: "RUNNING" for job in jobs}  # the ids SLURM itself lists
    assert {m["host"] for m in jobs.values()} == {cluster_run.env["LOCUSTS_SLURM_NODE"]}
    assert body["live"]["counts"] == {"total": CLUSTER_TASKS, "succeeded": 0, "failed": 0, "running": 4, "pending": 2, "earlier": 0}
    # A running task's logs, read over SSH: the files exist, nothing written yet.
    code, logs, _ = timed_get(simple_airflow, f"/locusts/api/swarm/logs?{QUERY}&task=0", Users.viewer)
    assert code == 200 and logs["id"] == "0" and logs["folder"].startswith(cluster_run.remote_root)
    assert (logs["stdout"]["exists"], logs["stdout"]["size"]) == (True, 0)


@pytest.mark.browser
def test_in_the_browser_the_cluster_swarm_shows_its_jobs_then_a_failed_tasks_stderr(simple_airflow, cluster_run, browser):
    from selenium.webdriver.common.by import By

    login(browser, simple_airflow, Users.viewer)
    browser.driver.get(f"{simple_airflow.url}/locusts/swarm?{QUERY}")
    wait_js(browser, "document.body.dataset.phase === 'live' && document.querySelectorAll('#managers tbody tr').length === 2"
                     " && Array.from(document.querySelectorAll('#managers tbody tr td:nth-child(4)')).every(td => td.textContent === 'RUNNING')",
            240, "two running SLURM jobs")
    rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")] for tr in browser.driver.find_elements(By.CSS_SELECTOR, "#managers tbody tr")]
    assert {row[2] for row in rows} == set(squeue_jobs(cluster_run)) and all(row[2].isdigit() for row in rows)
    assert {row[1] for row in rows} == {"running"} and {row[4] for row in rows} == {cluster_run.env["LOCUSTS_SLURM_NODE"]}
    assert "on SSH connection locusts_test_ssh · SLURM jobs" in browser.driver.find_element(By.ID, "status-text").text
    browser.screenshot("cluster_01_slurm_jobs_running", full_page=True, max_height=2400)

    Path(cluster_run.gate).touch()
    simple_airflow.wait_for(lambda: simple_airflow.task_instance(CLUSTER_DAG, CLUSTER_RUN, "swarm")["state"] == "success",
                            300, "the cluster swarm to end", extra=lambda: simple_airflow.task_log_tail(CLUSTER_DAG, CLUSTER_RUN, "swarm"))
    wait_js(browser, f"document.body.dataset.phase === 'ended' && document.querySelectorAll('#tasks tbody tr').length === {CLUSTER_TASKS}",
            120, "the ended swarm's tasks")
    assert browser.driver.find_element(By.ID, "count-failed").text == "1"
    browser.driver.find_element(By.ID, "failed-only").click()
    wait_js(browser, f"document.getElementById('row-count').textContent === '1 of {CLUSTER_TASKS} tasks'", 60, "failed only")
    row = [td.text for td in browser.driver.find_elements(By.CSS_SELECTOR, "#tasks tbody tr td")]
    assert row[:5] == ["5", "5", "failed", "exit code 5; missing outputs: out_5.txt", "5"]
    browser.driver.find_element(By.CSS_SELECTOR, "#tasks tbody td.id button").click()
    wait_js(browser, "document.body.dataset.logs === '5'", 60, "task 5's logs, over SSH")
    assert browser.driver.find_element(By.ID, "log-stderr").text == "cluster task 5 failing on purpose"
    node = cluster_run.env["LOCUSTS_SLURM_NODE"]
    assert browser.driver.find_element(By.ID, "log-stdout").text == f"working on 5 on {node}"
    assert browser.driver.find_element(By.ID, "log-folder").text.startswith(f"folder {cluster_run.remote_root}/")
    browser.screenshot("cluster_02_failed_task_stderr_over_ssh", full_page=True, max_height=2600)
