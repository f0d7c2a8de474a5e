"""The Swarm view of a 100,000-task swarm, through the real api-server and browser.

The swarm root is built by the test (results, task table and the logs of a few tasks, as a
gather leaves them) and BIG_DAG records its handle; the view reads it like any swarm's.
Server time comes from the app's Server-Timing header: the first page request reads and
parses the manifest, later ones page from memory. Figures are printed; correctness asserted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.ui.airflow_ui import login, timed_get, wait_js
from tests.ui.conftest import Users
from tests.ui.dags import BIG_DAG, HOSTILE
from tests.www.records import swarm_records

pytestmark = [pytest.mark.services]

BIG_RUN = "big_run_1"
QUERY = f"dag_id={BIG_DAG}&run_id={BIG_RUN}&task_id=swarm&map_index=-1"
COUNT = 100_000
HOSTILE_STDERR = "</pre><img src=x onerror=alert(4)><script>alert(5)</script>\n"


def build_root(root: Path) -> list[dict]:
    """exec/results.jsonl and exec/tasks.jsonl of 100,000 tasks (ids 22 and 45 hostile; every
    23rd fails), and the logs of the hostile tasks (a long stdout for task 22)."""
    ids = [f"sample_{i:06d}" for i in range(COUNT)]
    ids[22], ids[45] = HOSTILE
    records = swarm_records(COUNT, managers=8, processes=16, ids=ids)
    (root / "exec").mkdir(parents=True)
    with open(root / "exec" / "results.jsonl", "w") as results, open(root / "exec" / "tasks.jsonl", "w") as table:
        for r in records:
            folder = f"batch_{r['index'] // 10000}/task_{r['index']}"
            r["folder"] = f"{root}/work/{folder}"
            r["outputs"] = [] if r["state"] == "failed" else [f"/data/out/out_{r['index']}.txt"]
            results.write(json.dumps(r) + "\n")
            table.write(json.dumps({"index": r["index"], "id": r["id"], "folder": folder, "outputs": [f"out_{r['index']}.txt"],
                                    "staged": []}) + "\n")
    for index in (22, 45):
        folder = root / "work" / "batch_0" / f"task_{index}"
        folder.mkdir(parents=True)
        (folder / "stderr.txt").write_text(HOSTILE_STDERR)
        (folder / "stdout.txt").write_text(("line of output\n" * 10_000 if index == 22 else "") + "the end\n")
    return records


@pytest.fixture(scope="module")
def big_swarm(simple_airflow):
    records = build_root(simple_airflow.base / "big" / "big")
    simple_airflow.run_dag(BIG_DAG, BIG_RUN)
    return records


def test_pages_of_a_100000_task_manifest_take_well_under_a_second_of_server_time(simple_airflow, big_swarm):
    failed = [r for r in big_swarm if r["state"] == "failed"]
    figures = []

    def page(label: str, params: str):
        status, body, server_ms = timed_get(simple_airflow, f"/locusts/api/swarm/tasks?{QUERY}&{params}", Users.viewer, timeout=120)
        assert status == 200, body
        figures.append((label, server_ms))
        return body

    first = page("first page (reads and parses the manifest)", "page=1")
    assert (first["total"], first["total_rows"], first["pages"]) == (COUNT, COUNT, 2000)
    assert [r["id"] for r in first["rows"]][20:24] == ["sample_000020", "sample_000021", HOSTILE[0], "sample_000023"]
    assert first["counts"] == {"succeeded": COUNT - len(failed), "failed": len(failed)}
    later = page("page 2,000", "page=2000")
    assert [r["index"] for r in later["rows"]] == list(range(99_950, 100_000))
    only_failed = page("failed only", "failed_only=true&page=3")
    assert only_failed["total_rows"] == len(failed) and {r["state"] for r in only_failed["rows"]} == {"failed"}
    longest = page("failed only, longest first", "failed_only=true&sort=-duration")
    assert longest["rows"][0]["index"] == max(failed, key=lambda r: r["duration"])["index"]
    shortest = page("shortest first", "sort=duration")
    assert shortest["rows"][0]["duration"] == min(r["duration"] for r in big_swarm)
    found = page("search 'onerror'", "q=onerror")
    assert [r["id"] for r in found["rows"]] == [HOSTILE[1]]
    again = page("page 1 again", "page=1")
    assert again["rows"] == first["rows"]
    print("\nSwarm view, 100,000-task manifest, server time (Server-Timing) per request:")
    for label, ms in figures:
        print(f"  {label}: {ms:.0f} ms")
    status, _, plot_ms = timed_get(simple_airflow, f"/locusts/plots/timeline.svg?{QUERY}", Users.viewer, timeout=120)
    assert status == 200
    status, _, plot_again_ms = timed_get(simple_airflow, f"/locusts/plots/timeline.svg?{QUERY}", Users.viewer, timeout=120)
    print(f"  plots, first (all three drawn): {plot_ms:.0f} ms; again: {plot_again_ms:.0f} ms")


@pytest.mark.browser
def test_the_view_of_100000_tasks_pages_searches_and_shows_hostile_ids_and_logs_as_text(simple_airflow, big_swarm, browser):
    from selenium.webdriver.common.by import By

    login(browser, simple_airflow, Users.viewer)
    browser.driver.get(f"{simple_airflow.url}/locusts/swarm?{QUERY}")
    wait_js(browser, "document.body.dataset.phase === 'ended' && document.querySelectorAll('#tasks tbody tr').length === 50",
            120, "the first page of tasks")
    assert browser.driver.find_element(By.ID, "count-total").text == "100,000"
    assert browser.driver.find_element(By.ID, "page-info").text == "page 1 of 2,000"
    cells = browser.driver.find_elements(By.CSS_SELECTOR, "#tasks tbody tr:nth-child(23) td")
    assert [c.text for c in cells[:3]] == ["22", HOSTILE[0], "failed"]
    for name in ("completion", "timeline", "durations"):
        wait_js(browser, f"document.getElementById('plot-{name}').naturalWidth > 600", 120, f"the {name} plot")
    assert browser.driver.find_elements(By.TAG_NAME, "b") == []
    browser.screenshot("big_01_first_page", full_page=True, max_height=2600)

    browser.driver.find_element(By.ID, "next").click()
    wait_js(browser, "document.getElementById('page-info').textContent === 'page 2 of 2,000'", 60, "page 2")
    browser.driver.find_element(By.ID, "search").send_keys("<script>")
    wait_js(browser, "document.getElementById('row-count').textContent === '1 of 100,000 tasks'", 60, "the search")
    browser.driver.find_element(By.CSS_SELECTOR, "#tasks tbody td.id button").click()
    wait_js(browser, "document.body.dataset.logs === '22'", 60, "the logs of task 22")
    assert browser.driver.find_element(By.ID, "log-task").text == f"{HOSTILE[0]} (#22)"
    assert browser.driver.find_element(By.ID, "log-stderr").text == HOSTILE_STDERR.strip()
    stdout_size = len("line of output\n") * 10_000 + len("the end\n")
    assert browser.driver.find_element(By.ID, "log-stdout-note").text == f"last 65,536 of {stdout_size:,} bytes"
    assert browser.driver.find_element(By.ID, "log-stdout").text.endswith("line of output\nthe end")
    scripts = browser.driver.find_elements(By.TAG_NAME, "script")
    assert len(scripts) == 1 and browser.driver.find_elements(By.CSS_SELECTOR, "img:not([id^=plot-])") == []
    browser.driver.execute_script("document.getElementById('logs').scrollIntoView()")
    browser.screenshot("big_02_search_hostile_id_logs")
