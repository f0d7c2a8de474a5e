"""A user who may not read a DAG is refused, by Airflow's REST API and by the Swarm view alike.

SimpleAuthManager lets every role read every DAG, so this runs on the FAB auth manager
(apache-airflow-providers-fab) with a role, made with Airflow's CLI, that may read one DAG
(OTHER_DAG) and not HANDLE_DAG."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

import pytest

from tests.ui.airflow_ui import login, wait_for_text
from tests.ui.conftest import RUN_ID, Users
from tests.ui.dags import HANDLE_DAG, OTHER_DAG

pytestmark = [pytest.mark.services]

TASKS = {HANDLE_DAG: "record", OTHER_DAG: "plain"}


def ti_path(dag_id: str) -> str:
    return f"/api/v2/dags/{dag_id}/dagRuns/{RUN_ID}/taskInstances/{TASKS[dag_id]}"


def view(dag_id: str, endpoint: str = "/locusts/api/swarm") -> str:
    return f"{endpoint}?dag_id={quote(dag_id)}&run_id={RUN_ID}&task_id={TASKS[dag_id]}&map_index=-1"


def test_airflow_itself_gives_the_limited_user_403_on_the_other_dag_and_200_on_its_own(fab_airflow):
    limited, admin = Users.fab_limited, Users.fab_admin
    assert fab_airflow.request("GET", ti_path(HANDLE_DAG), user=limited)[0] == 403
    status, ti = fab_airflow.request("GET", ti_path(OTHER_DAG), user=limited)
    assert status == 200 and ti["task_id"] == "plain"
    assert fab_airflow.request("GET", ti_path(HANDLE_DAG), user=admin)[0] == 200
    dags = fab_airflow.request("GET", "/api/v2/dags", user=limited)[1]
    assert [d["dag_id"] for d in dags["dags"]] == [OTHER_DAG]


def test_the_swarm_view_refuses_the_limited_user_on_the_other_dag_like_airflow_does(fab_airflow):
    limited, admin = Users.fab_limited, Users.fab_admin
    token = fab_airflow.token(limited)
    for endpoint in ("/locusts/api/swarm", "/locusts/swarm"):
        # Bearer token (API clients) and the _token cookie (the browser) are both honoured.
        assert fab_airflow.request("GET", view(HANDLE_DAG, endpoint), user=limited)[0] == 403
        assert fab_airflow.request("GET", view(HANDLE_DAG, endpoint), cookie_token=token)[0] == 403
        assert fab_airflow.request("GET", view(OTHER_DAG, endpoint), user=limited)[0] == 200
        assert fab_airflow.request("GET", view(OTHER_DAG, endpoint), cookie_token=token)[0] == 200
        assert fab_airflow.request("GET", view(HANDLE_DAG, endpoint), user=admin)[0] == 200
    status, body = fab_airflow.request("GET", view(OTHER_DAG), user=limited)
    assert status == 200 and body["handle"] is None
    # "~" (Airflow's "any DAG") names no DAG here: refused even though the user may list DAGs.
    assert fab_airflow.request("GET", f"/locusts/api/swarm?dag_id=~&run_id={RUN_ID}&task_id=record", user=limited)[0] == 403
    # 403 comes before 404: whether a task instance exists is not told to who may not read it.
    assert fab_airflow.request("GET", f"/locusts/api/swarm?dag_id={HANDLE_DAG}&run_id=nope&task_id=nope", user=limited)[0] == 403


DATA_ENDPOINTS = ("/locusts/api/swarm/status", "/locusts/api/swarm/tasks", "/locusts/plots/completion.svg",
                  "/locusts/plots/timeline.svg", "/locusts/plots/durations.svg")


def test_every_endpoint_of_the_view_refuses_the_limited_user_on_the_other_dag(fab_airflow):
    limited, admin = Users.fab_limited, Users.fab_admin
    token = fab_airflow.token(limited)
    for endpoint in (*DATA_ENDPOINTS, "/locusts/api/swarm/logs"):
        url = view(HANDLE_DAG, endpoint) + "&task=0"
        assert fab_airflow.request("GET", url, user=limited) == (403, {"detail": "Forbidden"}), endpoint
        assert fab_airflow.request("GET", url, cookie_token=token) == (403, {"detail": "Forbidden"}), endpoint
        # The admin is let through: what stops there is the handle, which is not a swarm's.
        assert fab_airflow.request("GET", url, user=admin)[0] == (200 if endpoint.endswith("/status") else 409), endpoint
        assert fab_airflow.request("GET", url)[0] == 401, endpoint
    status, body = fab_airflow.request("GET", view(OTHER_DAG, "/locusts/api/swarm/status"), user=limited)
    assert (status, body["phase"]) == (200, "none")
    assert fab_airflow.request("GET", view(OTHER_DAG, "/locusts/api/swarm/logs") + "&task=0", user=limited)[0] == 404


def test_log_tails_need_airflows_task_logs_permission(fab_airflow):
    """A user who may read the DAG's task instances but not its task logs sees the view and
    no log tail: the check Airflow's own log endpoint makes."""
    no_logs = Users.fab_no_logs
    assert fab_airflow.request("GET", f"/api/v2/dags/{OTHER_DAG}/dagRuns/{RUN_ID}/taskInstances/plain/logs/1", user=no_logs)[0] == 403
    assert fab_airflow.request("GET", view(OTHER_DAG, "/locusts/api/swarm/status"), user=no_logs)[0] == 200
    assert fab_airflow.request("GET", view(OTHER_DAG, "/locusts/api/swarm/logs") + "&task=0", user=no_logs) == (403, {"detail": "Forbidden"})
    assert fab_airflow.request("GET", view(OTHER_DAG, "/locusts/api/swarm/logs") + "&task=0", user=Users.fab_limited)[0] == 404


def test_without_a_session_the_view_answers_401_or_sends_to_fab_login(fab_airflow):
    assert fab_airflow.request("GET", view(HANDLE_DAG))[0] == 401
    status, location = fab_airflow.request("GET", view(HANDLE_DAG, "/locusts/swarm"))
    assert status == 303 and urlsplit(location).path == "/auth/login/"


@pytest.mark.browser
def test_in_the_browser_the_limited_user_sees_the_view_of_its_dag_only(fab_airflow, browser):
    login(browser, fab_airflow, Users.fab_limited)
    browser.driver.get(fab_airflow.url + view(OTHER_DAG, "/locusts/swarm"))
    wait_for_text(browser, "No swarm recorded for this task instance yet.")
    browser.screenshot("fab_limited_user_own_dag")
    browser.driver.get(fab_airflow.url + view(HANDLE_DAG, "/locusts/swarm"))
    text = wait_for_text(browser, "You are not allowed to see the task instances of this DAG. (403)")
    assert HANDLE_DAG not in text and "Where the swarm lives" not in text
    browser.screenshot("fab_limited_user_other_dag_403")
