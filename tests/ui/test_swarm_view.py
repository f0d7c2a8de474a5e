"""The Swarm view in the real api-server and the real UI (SimpleAuthManager, named users): the
plugin is loaded from the package's entry point, the "Swarm" tab on a task instance shows the
view in its iframe, the operator's "Swarm" extra link leads to it, recorded handles show as
text, and requests without a session are refused (401) or sent to the login page."""

from __future__ import annotations

from urllib.parse import parse_qs, quote, urlsplit

import pytest

from tests.ui.airflow_ui import login, wait_for_text, wait_js
from tests.ui.conftest import RUN_ID, Users
from tests.ui.dags import HANDLE_DAG, HOSTILE, OTHER_DAG, SWARM_DAG, SWARM_FAILING, SWARM_TASKS

pytestmark = [pytest.mark.services]


def view_query(dag_id: str, task_id: str, run_id: str = RUN_ID, map_index: str = "-1") -> str:
    return f"dag_id={quote(dag_id)}&run_id={quote(run_id)}&task_id={quote(task_id)}&map_index={quote(map_index)}"


def test_the_plugin_is_loaded_from_the_package_with_its_tab_and_app(simple_airflow):
    plugins = {p["name"]: p for p in simple_airflow.api("GET", "/api/v2/plugins")["plugins"]}
    locusts = plugins["locusts"]
    assert "airflow-provider-locusts" in locusts["source"]  # the entry point, not a plugins/ file
    assert [a["url_prefix"] for a in locusts["fastapi_apps"]] == ["/locusts"]
    (view,) = locusts["external_views"]
    assert (view["name"], view["destination"], view["url_route"]) == ("Swarm", "task_instance", "locusts-swarm")
    assert view["href"] == "/locusts/swarm?dag_id={DAG_ID}&run_id={RUN_ID}&task_id={TASK_ID}&map_index={MAP_INDEX}"
    errors = simple_airflow.api("GET", "/api/v2/plugins/importErrors")
    assert errors["total_entries"] == 0, errors


def test_requests_without_a_session_are_refused_and_the_page_sends_to_login(simple_airflow):
    query = view_query(HANDLE_DAG, "record")
    for endpoint in ("/locusts/api/swarm", "/locusts/api/swarm/status", "/locusts/api/swarm/tasks", "/locusts/plots/completion.svg",
                     "/locusts/plots/timeline.svg", "/locusts/plots/durations.svg"):
        assert simple_airflow.request("GET", f"{endpoint}?{query}") == (401, {"detail": "Not authenticated"}), endpoint
    assert simple_airflow.request("GET", f"/locusts/api/swarm/logs?{query}&task=0") == (401, {"detail": "Not authenticated"})
    # The page's script is public: the same bytes for everyone, no data in it.
    status, script = simple_airflow.request("GET", "/locusts/static/swarm.js")
    assert status == 200 and "api/swarm/status" in script and HANDLE_DAG not in script
    status, location = simple_airflow.request("GET", f"/locusts/swarm?{query}")
    assert status == 303
    assert urlsplit(location).path == "/auth/login"
    assert parse_qs(urlsplit(location).query)["next"] == [f"{simple_airflow.url}/locusts/swarm?{query}"]
    # A forged token is no session either.
    assert simple_airflow.request("GET", f"/locusts/api/swarm?{query}", cookie_token="forged.jwt.value")[0] in (401, 403)


def test_a_viewer_reads_the_recorded_handle_and_bad_requests_get_clear_errors(simple_airflow):
    viewer = Users.viewer
    status, body = simple_airflow.request("GET", f"/locusts/api/swarm?{view_query(HANDLE_DAG, 'record')}", user=viewer)
    assert status == 200, body
    assert body["handle"] == {"root": f"/scratch/swarms/{HOSTILE[0]}", "connection": HOSTILE[1], "round": 0, "managers": ["r0m0"]}
    assert (body["dag_id"], body["run_id"], body["task_id"], body["map_index"], body["state"]) == (HANDLE_DAG, RUN_ID, "record", -1, "success")
    # The UI leaves "{MAP_INDEX}" in the URL of an unmapped task: read as -1.
    assert simple_airflow.request("GET", f"/locusts/api/swarm?{view_query(HANDLE_DAG, 'record', map_index='{MAP_INDEX}')}", user=viewer)[0] == 200
    assert simple_airflow.request("GET", f"/locusts/api/swarm?{view_query(HANDLE_DAG, 'record', map_index='x')}", user=viewer)[0] == 422
    assert simple_airflow.request("GET", f"/locusts/api/swarm?{view_query(HANDLE_DAG, 'nope')}", user=viewer)[0] == 404
    assert simple_airflow.request("GET", f"/locusts/api/swarm?dag_id={HANDLE_DAG}", user=viewer)[0] == 422
    # "~" means "every DAG" to Airflow's own dependency; here it names no DAG: refused.
    assert simple_airflow.request("GET", f"/locusts/api/swarm?{view_query('~', 'record')}", user=viewer)[0] == 403
    # That handle is not one the view can read: it says so, and reads nothing.
    status, body = simple_airflow.request("GET", f"/locusts/api/swarm/status?{view_query(HANDLE_DAG, 'record')}", user=viewer)
    assert status == 200 and body["phase"] == "error" and "lacks fields" in body["message"]
    for endpoint in ("/locusts/api/swarm/tasks", "/locusts/plots/timeline.svg", "/locusts/api/swarm/logs"):
        status, body = simple_airflow.request("GET", f"{endpoint}?{view_query(HANDLE_DAG, 'record')}&task=0", user=viewer)
        assert status == 409 and "lacks fields" in body["detail"], endpoint
    # A task instance without a swarm: nothing to show.
    status, body = simple_airflow.request("GET", f"/locusts/api/swarm/status?{view_query(OTHER_DAG, 'plain')}", user=viewer)
    assert (status, body["phase"], body["swarm"]) == (200, "none", None)
    assert simple_airflow.request("GET", f"/locusts/api/swarm/tasks?{view_query(OTHER_DAG, 'plain')}", user=viewer)[0] == 404
    # Only integers name a task; no path is accepted anywhere.
    for bad in ("../../etc/passwd", "-1", "1.5", "0x10"):
        status, _ = simple_airflow.request("GET", f"/locusts/api/swarm/logs?{view_query(SWARM_DAG, 'swarm')}&task={quote(bad)}", user=viewer)
        assert status == 422, bad
    assert simple_airflow.request("GET", f"/locusts/plots/passwd.svg?{view_query(SWARM_DAG, 'swarm')}", user=viewer)[0] == 422
    assert simple_airflow.request("GET", f"/locusts/api/swarm/tasks?{view_query(SWARM_DAG, 'swarm')}&sort=id", user=viewer)[0] == 422


@pytest.mark.browser
def test_the_swarm_tab_shows_the_view_and_a_recorded_handle_as_text(simple_airflow, browser):
    from selenium.webdriver.common.by import By

    login(browser, simple_airflow, Users.viewer)
    browser.driver.get(f"{simple_airflow.url}/dags/{HANDLE_DAG}/runs/{RUN_ID}/tasks/record")
    wait_for_text(browser, "Swarm")
    tab = next(e for e in browser.driver.find_elements(By.CSS_SELECTOR, "a, button") if e.text.strip() == "Swarm")
    tab.click()
    frame = _swarm_frame(browser)
    assert parse_qs(urlsplit(frame.get_attribute("src")).query) == {
        "dag_id": [HANDLE_DAG], "run_id": [RUN_ID], "task_id": ["record"], "map_index": ["{MAP_INDEX}"]}
    assert urlsplit(browser.driver.current_url).path.endswith("/plugin/locusts-swarm")
    browser.driver.switch_to.frame(frame)
    try:
        wait_js(browser, "document.body.dataset.phase === 'error'", 60, "the view to read the handle")
        assert "the recorded swarm handle lacks fields" in browser.driver.find_element(By.ID, "message").text
        browser.driver.find_element(By.TAG_NAME, "summary").click()  # "Where the swarm lives"
        handle = browser.driver.find_element(By.ID, "handle").text
        assert HOSTILE[0] in handle and HOSTILE[1].replace('"', '\\"') in handle  # shown as text (JSON)
        assert [img.get_attribute("src") for img in browser.driver.find_elements(By.TAG_NAME, "img")] == [None, None, None]
        (script,) = browser.driver.find_elements(By.TAG_NAME, "script")
        assert script.get_attribute("src").endswith("/locusts/static/swarm.js")
        assert browser.driver.find_element(By.ID, "dag-id").text == HANDLE_DAG
        assert browser.driver.find_element(By.ID, "task-id").text == "record"
        assert browser.driver.find_element(By.ID, "ti-state").text == "success"
    finally:
        browser.driver.switch_to.default_content()
    browser.screenshot("swarm_tab_with_handle")


@pytest.mark.browser
def test_the_extra_link_of_a_swarm_task_opens_its_view(simple_airflow, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    expected = f"{simple_airflow.url}/locusts/swarm?dag_id={SWARM_DAG}&run_id={RUN_ID}&task_id=swarm&map_index=-1"
    links = simple_airflow.api("GET", f"/api/v2/dags/{SWARM_DAG}/dagRuns/{RUN_ID}/taskInstances/swarm/links")
    assert links["extra_links"] == {"Swarm": expected}

    login(browser, simple_airflow, Users.viewer)
    # The UI lists a task instance's extra links on its Details tab.
    browser.driver.get(f"{simple_airflow.url}/dags/{SWARM_DAG}/runs/{RUN_ID}/tasks/swarm/details")
    wait_for_text(browser, "Extra Links")
    link = WebDriverWait(browser.driver, 60).until(
        lambda d: next(iter(d.find_elements(By.CSS_SELECTOR, 'a[href*="/locusts/swarm?"]')), None))
    assert link.get_attribute("href") == expected and link.text.strip() == "Swarm"
    browser.screenshot("swarm_task_with_extra_link")
    browser.driver.get(link.get_attribute("href"))  # the link opens a new tab; the same URL here
    wait_js(browser, f"document.body.dataset.phase === 'ended' && document.querySelectorAll('#tasks tbody tr').length === {SWARM_TASKS}",
            60, "the ended swarm's tasks")
    assert browser.driver.find_element(By.ID, "dag-id").text == SWARM_DAG
    assert browser.driver.find_element(By.ID, "ti-state").text == "success"
    row = [td.text for td in browser.driver.find_elements(By.CSS_SELECTOR, f"#tasks tbody tr:nth-child({SWARM_FAILING + 1}) td")]
    assert row[:5] == [str(SWARM_FAILING), str(SWARM_FAILING), "failed", f"exit code 3; missing outputs: out_{SWARM_FAILING}.txt", "3"]
    browser.driver.find_element(By.CSS_SELECTOR, f"#tasks tbody tr:nth-child({SWARM_FAILING + 1}) td.id button").click()
    wait_js(browser, f"document.body.dataset.logs === '{SWARM_FAILING}'", 60, "the failed task's logs")
    assert browser.driver.find_element(By.ID, "log-stderr").text == "failing on purpose"
    browser.screenshot("swarm_view_from_extra_link", full_page=True, max_height=2400)
    # A task that succeeded kept no stderr (it was empty): the view says so, not an error.
    browser.driver.find_element(By.CSS_SELECTOR, "#tasks tbody tr:nth-child(1) td.id button").click()
    wait_js(browser, "document.body.dataset.logs === '0'", 60, "task 0's logs")
    assert browser.driver.find_element(By.ID, "log-stderr").text == "(empty)"
    assert browser.driver.find_element(By.ID, "log-stdout").text == "task 0"
    assert not browser.driver.find_element(By.ID, "log-error").is_displayed()


@pytest.mark.browser
def test_a_task_without_a_swarm_says_so_and_login_leads_back_to_the_page(simple_airflow, browser):
    page = f"{simple_airflow.url}/locusts/swarm?{view_query(OTHER_DAG, 'plain')}"
    browser.driver.get(page)  # no session yet: the login page, then back here
    from tests.ui.airflow_ui import login_form

    login_form(browser, Users.viewer)
    wait_for_text(browser, "No swarm recorded for this task instance yet.")
    assert browser.driver.current_url == page
    from selenium.webdriver.common.by import By

    assert browser.driver.find_element(By.ID, "dag-id").text == OTHER_DAG
    browser.screenshot("swarm_view_no_swarm")


def _swarm_frame(browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser.driver, 60).until(
        lambda d: next(iter(d.find_elements(By.CSS_SELECTOR, 'iframe[src*="/locusts/swarm?"]')), None))
