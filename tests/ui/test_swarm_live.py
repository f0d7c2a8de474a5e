"""The Swarm view of a real swarm while it runs and after it ends, in the real UI and browser.

LIVE_DAG runs 100 tasks (LocustsSwarmOperator, deferrable, local mode: the services run the
LocalExecutor on this machine), 4 at a time: 11 run at once (2 of them fail, one with a
hostile id), the others wait for a gate file the tests create. So the view shows, while the
task is deferred: 9 succeeded, 2 failed, 4 running, 85 pending; then, once the gate opens,
the counts move; after the end, the failed tasks with their reasons and stderr tails. The
stderr of the failed tasks holds HTML: it must show as text. Screenshots at each step.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.ui.airflow_ui import login, timed_get, wait_for_deferred, wait_js, wait_for_text
from tests.ui.conftest import Users
from tests.ui.dags import HOSTILE, LIVE_DAG, LIVE_FAILING, LIVE_STDERR, live_gate

pytestmark = [pytest.mark.services]

LIVE_RUN = "live_run_1"
QUERY = f"dag_id={LIVE_DAG}&run_id={LIVE_RUN}&task_id=swarm&map_index=-1"
BEFORE_GATE = {"total": "100", "succeeded": "9", "failed": "2", "running": "4", "pending": "85"}


@pytest.fixture(scope="module")
def live_run(simple_airflow):
    """LIVE_DAG's run, deferred with 4 tasks waiting on the gate; `release()` opens the gate."""
    gate = live_gate(simple_airflow.base)
    simple_airflow.wait_for_dag(LIVE_DAG)
    simple_airflow.trigger_dag(LIVE_DAG, LIVE_RUN)
    wait_for_deferred(simple_airflow, LIVE_DAG, LIVE_RUN)
    try:
        yield SimpleNamespace(gate=gate, release=gate.touch)
    finally:
        gate.touch()  # no task is left waiting, whatever happened


def counts_shown(browser) -> dict[str, str]:
    return browser.driver.execute_script(
        "var r = {}; ['total','succeeded','failed','running','pending'].forEach(function (k) {"
        " r[k] = document.getElementById('count-' + k).textContent; }); return r;")


def only_our_elements(browser) -> None:
    """No element that user data could have brought in: the one script is ours, every image is
    one of our plots, and no <b> or <img> came from task ids or logs."""
    from selenium.webdriver.common.by import By

    driver = browser.driver
    scripts = [s.get_attribute("src") for s in driver.find_elements(By.TAG_NAME, "script")]
    assert len(scripts) == 1 and scripts[0].endswith("/locusts/static/swarm.js"), scripts
    images = driver.find_elements(By.TAG_NAME, "img")
    assert all((img.get_attribute("id") or "").startswith("plot-") for img in images), [i.get_attribute("outerHTML") for i in images]
    assert driver.find_elements(By.TAG_NAME, "b") == []


@pytest.mark.browser
def test_the_swarm_tab_shows_live_counts_managers_and_a_failed_tasks_log_as_text(simple_airflow, live_run, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    login(browser, simple_airflow, Users.viewer)
    browser.driver.get(f"{simple_airflow.url}/dags/{LIVE_DAG}/runs/{LIVE_RUN}/tasks/swarm")
    wait_for_text(browser, "Swarm")
    tab = next(e for e in browser.driver.find_elements(By.CSS_SELECTOR, "a, button") if e.text.strip() == "Swarm")
    tab.click()
    frame = WebDriverWait(browser.driver, 60).until(
        lambda d: next(iter(d.find_elements(By.CSS_SELECTOR, 'iframe[src*="/locusts/swarm?"]')), None))
    browser.driver.switch_to.frame(frame)
    try:
        wait_js(browser, "document.body.dataset.phase === 'live' && document.getElementById('count-running').textContent === '4'"
                         " && document.getElementById('count-succeeded').textContent === '9'", 120, "live counts with 4 running")
        assert counts_shown(browser) == BEFORE_GATE
        manager = [td.text for td in browser.driver.find_elements(By.CSS_SELECTOR, "#managers tbody tr td")]
        assert manager[:3] == ["r0m0", "running", "–"] and manager[4] == socket.gethostname()
        assert manager[5].endswith(" s ago") and manager[6:] == ["4", "11", "2"]
        refreshes = int(browser.driver.execute_script("window.stillTheSamePage = true; return document.body.dataset.refreshes"))
        wait_js(browser, f"Number(document.body.dataset.refreshes) >= {refreshes + 2}", 60, "two more refreshes")
        assert browser.driver.execute_script("return window.stillTheSamePage === true")  # refreshed without a reload
        wait_js(browser, "document.getElementById('plot-completion').naturalWidth > 0", 60, "the completion curve")
        failures = browser.driver.find_elements(By.CSS_SELECTOR, "#recent-failures tbody button")
        assert sorted(b.text for b in failures) == ["task #0", "task #1"]
        only_our_elements(browser)
    finally:
        browser.driver.switch_to.default_content()
    browser.screenshot("live_01_swarm_tab_running")

    browser.driver.switch_to.frame(frame)
    try:
        next(b for b in browser.driver.find_elements(By.CSS_SELECTOR, "#recent-failures tbody button") if b.text == "task #0").click()
        wait_js(browser, "document.body.dataset.logs === '0'", 60, "the logs of task #0")
        assert browser.driver.find_element(By.ID, "log-task").text == f"{HOSTILE[1]} (#0)"
        assert browser.driver.find_element(By.ID, "log-stderr").text == LIVE_STDERR
        assert browser.driver.find_element(By.ID, "log-stdout").text == f"working on {HOSTILE[1]}"
        only_our_elements(browser)
        browser.driver.execute_script("document.getElementById('logs').scrollIntoView()")
    finally:
        browser.driver.switch_to.default_content()
    browser.screenshot("live_02_swarm_tab_hostile_task_logs")


@pytest.mark.browser
def test_the_extra_link_of_the_deferred_task_opens_the_live_view(simple_airflow, live_run, browser):
    expected = f"{simple_airflow.url}/locusts/swarm?{QUERY}"
    links = simple_airflow.api("GET", f"/api/v2/dags/{LIVE_DAG}/dagRuns/{LIVE_RUN}/taskInstances/swarm/links")
    assert links["extra_links"] == {"Swarm": expected}
    login(browser, simple_airflow, Users.viewer)
    browser.driver.get(f"{simple_airflow.url}/dags/{LIVE_DAG}/runs/{LIVE_RUN}/tasks/swarm/details")
    wait_for_text(browser, "Extra Links")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    link = WebDriverWait(browser.driver, 60).until(
        lambda d: next(iter(d.find_elements(By.CSS_SELECTOR, 'a[href*="/locusts/swarm?"]')), None))
    assert link.get_attribute("href") == expected
    browser.driver.get(expected)
    wait_js(browser, "document.body.dataset.phase === 'live' && document.getElementById('count-running').textContent === '4'",
            120, "live counts")
    assert counts_shown(browser) == BEFORE_GATE
    assert browser.driver.find_element(By.ID, "phase").text == "running"
    assert browser.driver.find_element(By.ID, "ti-state").text == "deferred"
    browser.screenshot("live_03_extra_link_view_running", full_page=True, max_height=2400)


def test_viewers_refreshing_at_once_share_one_poll(simple_airflow, live_run):
    """Eight viewers ask at the same moment, through the real api-server: the swarm's host
    sees one poll (two if the batch straddles the sharing interval)."""
    results = []

    def viewer():
        results.append(timed_get(simple_airflow, f"/locusts/api/swarm/status?{QUERY}", Users.viewer))

    time.sleep(2.1)  # past any earlier poll's sharing interval
    started = time.monotonic()
    threads = [threading.Thread(target=viewer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    spread = time.monotonic() - started
    assert [status for status, _, _ in results] == [200] * 8
    lives = [body["live"] for _, body, _ in results]
    polled = sum(1 for live in lives if not live["shared"])
    polls = {live["polls"] for live in lives}
    assert 1 <= polled <= 1 + int(spread / 2.0), (polled, spread)
    assert max(polls) - min(polls) <= polled
    assert {live["counts"]["running"] for live in lives} == {4}
    server = sorted(ms for _, _, ms in results)
    print(f"\n8 viewers at once: {polled} poll(s) of the swarm in {spread:.2f} s; server time per status request "
          f"{server[0]:.0f}–{server[-1]:.0f} ms (median {server[len(server) // 2]:.0f} ms)")


@pytest.mark.browser
def test_after_the_gate_the_counts_move_and_the_ended_swarm_shows_failures_with_their_logs(simple_airflow, live_run, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    login(browser, simple_airflow, Users.viewer)
    browser.driver.get(f"{simple_airflow.url}/locusts/swarm?{QUERY}")
    wait_js(browser, "document.getElementById('count-running').textContent === '4'", 120, "live counts")
    live_run.release()
    wait_js(browser, "document.getElementById('count-succeeded').textContent !== '9'", 120, "the counts to move")
    moved = counts_shown(browser)
    assert int(moved["succeeded"]) > 9 and int(moved["pending"]) < 85
    if browser.driver.execute_script("return document.body.dataset.phase") == "live":
        browser.screenshot("live_04_counts_moving", full_page=True, max_height=2400)

    simple_airflow.wait_for(lambda: simple_airflow.task_instance(LIVE_DAG, LIVE_RUN, "swarm")["state"] == "success",
                            300, "the swarm task to succeed", extra=lambda: simple_airflow.task_log_tail(LIVE_DAG, LIVE_RUN, "swarm"))
    wait_js(browser, "document.body.dataset.phase === 'ended' && document.querySelectorAll('#tasks tbody tr').length === 50",
            120, "the ended swarm's task table")
    shown = counts_shown(browser)
    assert (shown["total"], shown["succeeded"], shown["failed"]) == ("100", "89", "11")
    assert not browser.driver.find_element(By.ID, "count-running").is_displayed()
    assert browser.driver.find_element(By.ID, "row-count").text == "100 of 100 tasks"
    for name in ("completion", "timeline", "durations"):
        wait_js(browser, f"document.getElementById('plot-{name}').naturalWidth > 600", 60, f"the {name} plot")
    first = [td.text for td in browser.driver.find_elements(By.CSS_SELECTOR, "#tasks tbody tr:first-child td")]
    assert first[:5] == ["0", HOSTILE[1], "failed", f"exit code 3; missing outputs: out_{HOSTILE[1]}.txt", "3"]
    only_our_elements(browser)
    browser.screenshot("live_05_ended_table", full_page=True, max_height=3000)

    browser.driver.find_element(By.ID, "failed-only").click()
    wait_js(browser, "document.getElementById('row-count').textContent === '11 of 100 tasks'", 60, "failed only")
    rows = browser.driver.find_elements(By.CSS_SELECTOR, "#tasks tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows] == LIVE_FAILING
    assert {r.find_elements(By.TAG_NAME, "td")[3].text.split(";")[0] for r in rows} == {"exit code 3"}
    Select(browser.driver.find_element(By.ID, "sort")).select_by_value("-duration")
    wait_js(browser, "document.querySelector('#tasks tbody tr td:nth-child(2)').textContent !== " + repr(HOSTILE[1]), 60,
            "the longest failed task first")
    browser.driver.find_element(By.CSS_SELECTOR, "#tasks tbody tr td.id button").click()
    wait_js(browser, "document.body.dataset.logs !== undefined", 60, "the logs of the longest failed task")
    assert browser.driver.find_element(By.ID, "log-stderr").text == LIVE_STDERR
    assert browser.driver.find_element(By.ID, "log-stderr-note").text == f"{len(LIVE_STDERR) + 1} bytes"
    only_our_elements(browser)
    browser.driver.execute_script("document.getElementById('logs').scrollIntoView()")
    browser.screenshot("live_06_failed_only_longest_first_with_logs")

    search = browser.driver.find_element(By.ID, "search")
    browser.driver.find_element(By.ID, "failed-only").click()
    search.send_keys("SAMPLE_05")
    wait_js(browser, "document.getElementById('row-count').textContent === '10 of 100 tasks'", 60, "the search")
    ids = [r.find_elements(By.TAG_NAME, "td")[1].text for r in browser.driver.find_elements(By.CSS_SELECTOR, "#tasks tbody tr")]
    assert sorted(ids) == [f"sample_05{i}" for i in range(10)]


def test_the_report_written_at_gather_holds_the_failures(simple_airflow, live_run):
    summary = simple_airflow.xcom(LIVE_DAG, LIVE_RUN, "swarm")
    report = Path(summary["report"])
    assert report.parent == Path(summary["manifest"]).parent and report.name == f"locusts_report.{summary['swarm_id']}.html"
    html = report.read_text()
    assert "Failures (11)" in html
    assert html.count("&lt;/pre&gt;&lt;b&gt;bold&lt;/b&gt;&lt;script&gt;alert(3)&lt;/script&gt; failing on purpose") == 11
    assert "<script" not in html and "<b>" not in html


@pytest.mark.browser
def test_the_report_a_real_gather_wrote_reads_offline_in_the_browser(simple_airflow, live_run, browser):
    from selenium.webdriver.common.by import By

    report = Path(simple_airflow.xcom(LIVE_DAG, LIVE_RUN, "swarm")["report"])
    browser.go_offline()
    browser.driver.get(report.as_uri())
    text = wait_for_text(browser, "Failures (11)")
    assert browser.driver.find_element(By.ID, "count-failed").text == "11"
    assert f"task {HOSTILE[1]}" in text and text.count(LIVE_STDERR) == 11
    assert browser.driver.find_elements(By.TAG_NAME, "script") == [] and browser.driver.find_elements(By.TAG_NAME, "img") == []
    assert browser.driver.find_elements(By.TAG_NAME, "b") == []
    assert browser.driver.execute_script("return performance.getEntriesByType('resource').length") == 0
    browser.screenshot("live_07_report_offline", full_page=True, max_height=3000)


def test_every_view_endpoint_of_the_live_swarm_refuses_requests_without_a_session(simple_airflow, live_run):
    for path in ("/locusts/api/swarm/status", "/locusts/api/swarm/tasks", "/locusts/api/swarm/logs?task=0&",
                 "/locusts/plots/completion.svg", "/locusts/plots/timeline.svg"):
        url = path + ("" if path.endswith("&") else "?") + QUERY
        status, body = simple_airflow.request("GET", url)
        assert (status, body) == (401, {"detail": "Not authenticated"}), url
        status, _ = simple_airflow.request("GET", url, cookie_token="forged.jwt.value")
        assert status in (401, 403), url
