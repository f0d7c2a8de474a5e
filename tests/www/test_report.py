"""The self-contained HTML report: holds the summary, the failures with reasons and log tails
and the three plots, bounded at any size, escaping user data, with no external resource."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from airflow_provider_locusts.swarm.command import SwarmSpecError
from airflow_provider_locusts.www.report import (
    MAX_FAILURES,
    TAIL_BYTES,
    last_bytes,
    report_path,
    write_report,
)
from tests.www.records import HOSTILE_IDS, swarm_records


def failing_swarm(count: int, fail_every: int = 10, ids=None) -> tuple[list[dict], dict]:
    records = swarm_records(count, managers=2, processes=4, fail_every=fail_every, ids=ids)
    tails = {r["id"]: {"stderr": f"stderr of {r['id']}: no such file\n", "stdout": f"stdout of {r['id']}\n"}
             for r in records if r["state"] == "failed"}
    return records, tails


def test_the_report_holds_summary_failures_tails_and_plots(tmp_path):
    records, tails = failing_swarm(100)
    path = write_report(tmp_path, "demo_swarm", records, {"output_dir": str(tmp_path), "manifest": "m.jsonl"}, tails)
    assert path == report_path(tmp_path, "demo_swarm") == tmp_path / "locusts_report.demo_swarm.html"
    html = path.read_text()
    states = Counter(r["state"] for r in records)
    assert re.search(rf'id="count-succeeded">{states["succeeded"]}<', html)
    assert re.search(rf'id="count-failed">{states["failed"]}<', html)
    assert 'id="count-total">100<' in html
    for record in records:
        if record["state"] == "failed":
            assert f"task {record['id']}</h3>" in html
            assert f"stderr of {record['id']}: no such file" in html and f"stdout of {record['id']}" in html
    assert html.count('<div class="reason">exit code 3</div>') == states["failed"]
    for plot in ("timeline", "completion", "durations"):
        assert re.search(rf'<div class="plot" id="plot-{plot}"><svg xmlns="http://www.w3.org/2000/svg"', html)
    assert "node0" in html and "node1" in html  # hosts
    assert "failures-truncated" not in html


def test_failures_and_tails_are_bounded_and_say_so(tmp_path):
    records, tails = failing_swarm(3000, fail_every=10)  # 300 failures
    first_failed = next(r["id"] for r in records if r["state"] == "failed")
    tails[first_failed] = {"stderr": "BEGINNING-" + "x" * 10_000 + "-THE-END"}
    html = write_report(tmp_path, "big", records, {}, tails).read_text()
    assert html.count('<section class="failure">') == MAX_FAILURES
    assert f"Showing the first {MAX_FAILURES} of 300 failed tasks" in html
    assert "-THE-END" in html and "BEGINNING-" not in html
    assert f"last {TAIL_BYTES} bytes; {10_018 - TAIL_BYTES:,} earlier bytes not shown" in html


def test_hostile_ids_reasons_and_logs_show_as_text_and_nothing_external_loads(tmp_path):
    ids = [HOSTILE_IDS[i % 2] + f"-{i}" for i in range(40)]
    records, _ = failing_swarm(40, fail_every=2, ids=ids)
    for record in records:
        if record["state"] == "failed":
            record["reason"] = "missing outputs: <img src=x onerror=alert(2)>"
            record["host"] = "<b>host</b>"
    tails = {r["id"]: {"stderr": "</pre><script>alert(3)</script>"} for r in records}
    html = write_report(tmp_path, "hostile", records, {"output_dir": "<i>out</i>"}, tails).read_text()
    assert "<script" not in html and "<img" not in html and "<b>host" not in html and "<i>out" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;-1" in html
    assert "missing outputs: &lt;img src=x onerror=alert(2)&gt;" in html
    assert "&lt;/pre&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in html
    # No resource of any kind: no src/href attribute, no CSS url() or @import; the only "http"
    # is the SVG namespace; the CSP forbids every load and every script anyway.
    assert not re.search(r"<[a-zA-Z][^>]*\s(src|href)\s*=", html, re.IGNORECASE)  # in a tag: user text has no "<"
    assert "url(" not in html and "@import" not in html
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) == {"http://www.w3.org/2000/svg"}
    assert "default-src 'none'" in html


def test_a_swarm_id_that_is_not_a_plain_name_is_refused(tmp_path):
    with pytest.raises(SwarmSpecError):
        write_report(tmp_path, "../escape", [], {}, {})
    assert list(tmp_path.iterdir()) == []


def test_last_bytes_keeps_the_end_and_never_half_a_character():
    text = "é" * 10  # 2 bytes each
    kept, cut = last_bytes(text, 5)
    assert kept == "éé" and cut == 16
    assert last_bytes("short", 100) == ("short", 0)
    assert last_bytes(None, 10) == ("", 0)


def test_a_swarm_without_failures_or_times_still_reports(tmp_path):
    records = [{"index": 0, "id": "0", "state": "succeeded", "duration": None, "started_at": None, "ended_at": None}]
    html = write_report(tmp_path, "bare", records).read_text()
    assert "No task failed." in html and "No task has started yet." in html


def test_a_custom_environment_report_shows_the_tree_changes(tmp_path):
    records, tails = failing_swarm(20, fail_every=10)
    for record in records:
        record["changes"] = {"created": [f"results/out_{record['id']}.txt"], "modified": ["logs/run.log"], "deleted": []}
        if record["state"] == "succeeded":
            record["outputs"] = ["/out/a", "/out/b"]
    failed = next(r for r in records if r["state"] == "failed")
    failed["changes"]["read_only_changed"] = {"conf/<b>app</b>.ini": "modified"}
    failed["changes"]["not_collected"] = {"results/x": "symbolic link to /etc/passwd"}
    html = write_report(tmp_path, "env", records, {}, tails).read_text()
    succeeded = sum(1 for r in records if r["state"] == "succeeded")
    assert re.search(r'<table id="tree-changes">.*?<td>20</td><td>20</td><td>0</td><td>1</td>'
                     rf"<td>{2 * succeeded}</td><td>1</td>", html, re.S)
    assert "read-only part changed: modified conf/&lt;b&gt;app&lt;/b&gt;.ini" in html  # names are text
    assert "not collected: results/x (symbolic link to /etc/passwd)" in html
    # The Default Environment's report has no such section.
    assert "tree-changes" not in write_report(tmp_path, "plain", failing_swarm(20)[0], {}, {}).read_text()
