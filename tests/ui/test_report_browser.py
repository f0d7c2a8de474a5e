"""The HTML report opened as a user would: from file://, in a real browser with its network cut
(DevTools network emulation), at 100 and at 100,000 tasks."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from airflow_provider_locusts.www.report import write_report
from tests.ui.airflow_ui import wait_for_text
from tests.www.records import HOSTILE_IDS, swarm_records

pytestmark = pytest.mark.browser


def make_report(folder, count: int, managers: int, processes: int):
    ids = [str(i) for i in range(count)]
    ids[22], ids[45] = HOSTILE_IDS[0], HOSTILE_IDS[1]  # both fail (every 23rd task fails)
    records = swarm_records(count, managers=managers, processes=processes, ids=ids)
    tails = {r["id"]: {"stderr": f"Traceback (most recent call last):\nValueError: bad input {r['id']}\n",
                       "stdout": f"processing {r['id']}\n"} for r in records if r["state"] == "failed"}
    t0 = time.perf_counter()
    path = write_report(folder, f"report-{count}", records, {"output_dir": str(folder)}, tails)
    print(f"\nreport of {count:,} tasks: {path.stat().st_size:,} bytes written in {time.perf_counter() - t0:.2f} s")
    return path, Counter(r["state"] for r in records)


@pytest.mark.parametrize("count,managers,processes", [(100, 2, 4), (100_000, 8, 16)])
def test_the_report_reads_offline_from_file(browser, tmp_path, count, managers, processes):
    from selenium.webdriver.common.by import By

    path, states = make_report(tmp_path, count, managers, processes)
    browser.go_offline()
    driver = browser.driver
    driver.get(path.as_uri())
    text = wait_for_text(browser, f"Failures ({states['failed']:,})")
    assert driver.find_element(By.ID, "count-total").text == f"{count:,}"
    assert driver.find_element(By.ID, "count-succeeded").text == f"{states['succeeded']:,}"
    assert driver.find_element(By.ID, "count-failed").text == f"{states['failed']:,}"
    # Hostile ids show as text, nothing they carry runs or loads.
    assert f"task {HOSTILE_IDS[0]}" in text and f"task {HOSTILE_IDS[1]}" in text
    assert "ValueError: bad input " + HOSTILE_IDS[1] in text
    assert driver.find_elements(By.TAG_NAME, "img") == [] and driver.find_elements(By.TAG_NAME, "script") == []
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
    for plot in ("timeline", "completion", "durations"):
        svg = driver.find_element(By.CSS_SELECTOR, f"#plot-{plot} svg")
        assert svg.size["width"] > 600 and svg.size["height"] > 100, (plot, svg.size)
    assert ("Showing the first 200 of" in text) == (states["failed"] > 200)
    browser.screenshot(f"report_{count}_tasks_top", full_page=True, max_height=2400)  # summary and plots
    browser.screenshot(f"report_{count}_tasks", full_page=True, max_height=6000)
