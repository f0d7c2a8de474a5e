"""Server-side SVG plots: well-formed, showing the counts of their input, escaping user data,
and small and quick at 100,000 tasks."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from collections import Counter

import pytest

from airflow_provider_locusts.www import plots
from tests.www.records import HOSTILE_IDS, swarm_now, swarm_records

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # raises on malformed XML
    assert root.tag == f"{SVG}svg"
    return root


def texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def rects_of_class(root: ET.Element, cls: str) -> list[ET.Element]:
    return [r for r in root.iter(f"{SVG}rect") if cls in (r.get("class") or "").split()]


@pytest.mark.parametrize("records", [[], [{"id": "a", "state": "pending", "started_at": None}]])
def test_plots_of_a_swarm_that_has_not_started_say_so(records):
    for name, svg in plots.all_plots(records).items():
        shown = " ".join(texts(parse(svg)))
        assert "yet" in shown, (name, shown)


def test_timeline_draws_one_bar_per_task_coloured_by_outcome_and_counts_match():
    records = swarm_records(101, managers=2, processes=4, now_fraction=0.7)
    states = Counter(r["state"] for r in records)
    assert states["running"] and states["pending"] and states["failed"]
    root = parse(plots.timeline_svg(records, now=swarm_now(records)))
    assert len(rects_of_class(root, "ok")) == states["succeeded"]
    assert len(rects_of_class(root, "fail")) == states["failed"]
    assert len(rects_of_class(root, "run")) == states["running"]
    shown = "\n".join(texts(root))
    assert f"{states['succeeded']} succeeded · {states['failed']} failed · {states['running']} running · {states['pending']} pending" in shown
    assert f"{states['pending']} not started: not drawn" in shown
    assert "Timeline — 101 tasks on 2 manager(s)" in shown


def test_slots_follow_greedy_interval_assignment_and_never_overlap():
    records = swarm_records(400, managers=3, processes=5)
    spans = plots.to_spans(records)
    slots = plots.assign_slots(spans)
    by_lane: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for i, slot in enumerate(slots):
        by_lane.setdefault((spans.managers[i], slot), []).append((spans.starts[i], spans.ends[i]))
    for intervals in by_lane.values():
        intervals.sort()
        assert all(a_end <= b_start + 1e-9 for (_, a_end), (b_start, _) in zip(intervals, intervals[1:]))
    # The swarm ran 5 tasks at once per manager: greedy assignment needs exactly 5 slots each.
    assert {m: max(s for (mm, s) in by_lane if mm == m) + 1 for m in set(spans.managers)} == {"r0m0": 5, "r0m1": 5, "r0m2": 5}
    assert plots.assign_slots(plots.to_spans([
        {"id": "a", "state": "succeeded", "started_at": 0, "ended_at": 10, "manager": "m"},
        {"id": "b", "state": "succeeded", "started_at": 1, "ended_at": 2, "manager": "m"},
        {"id": "c", "state": "succeeded", "started_at": 2, "ended_at": 3, "manager": "m"},  # b's slot is free again
        {"id": "d", "state": "succeeded", "started_at": 2.5, "ended_at": 3, "manager": "m"},
    ])) == [0, 1, 1, 2]


def test_completion_curve_ends_at_the_finished_and_failed_counts():
    records = swarm_records(300, now_fraction=0.8)
    states = Counter(r["state"] for r in records)
    root = parse(plots.completion_svg(records, now=swarm_now(records)))
    shown = "\n".join(texts(root))
    finished = states["succeeded"] + states["failed"]
    assert f"{finished} of 300 tasks finished, {states['failed']} failed" in shown
    assert f"finished ({finished})" in shown and f"failed ({states['failed']})" in shown
    assert "total 300" in shown
    lines = {p.get("class"): p.get("points") for p in root.iter(f"{SVG}polyline")}
    assert set(lines) == {"done", "failed"}
    # The curve climbs: its last y is above (smaller than) its first.
    first_y, last_y = (float(pt.split(",")[1]) for pt in (lines["done"].split()[0], lines["done"].split()[-1]))
    assert last_y < first_y


def test_histogram_bars_add_up_to_the_finished_tasks_with_log_bins_for_a_wide_range():
    records = swarm_records(500)
    states = Counter(r["state"] for r in records)
    root = parse(plots.duration_histogram_svg(records))
    bins = [g for g in root.iter(f"{SVG}g") if g.get("class") == "bin"]
    assert sum(int(g.get("data-succeeded")) for g in bins) == states["succeeded"]
    assert sum(int(g.get("data-failed")) for g in bins) == states["failed"]
    shown = "\n".join(texts(root))
    assert "log-scaled bins" in shown  # log-normal durations span well over 50×
    assert f"succeeded ({states['succeeded']})" in shown


def test_histogram_uses_linear_bins_for_a_narrow_range():
    records = [{"id": str(i), "state": "succeeded", "duration": 10 + i / 100} for i in range(100)]
    root = parse(plots.duration_histogram_svg(records))
    assert "linear bins" in "\n".join(texts(root))
    edges, log_scale = plots.histogram_bins([r["duration"] for r in records])
    assert not log_scale and edges[0] == 10 and edges[-1] == pytest.approx(10.99)


def test_hostile_ids_and_manager_names_are_escaped():
    ids = [HOSTILE_IDS[i % 2] + str(i) for i in range(60)]
    records = swarm_records(60, ids=ids, managers=2, processes=3)
    records[0]["manager"] = "<b>m</b>"
    for name, svg in plots.all_plots(records).items():
        root = parse(svg)
        assert "<script" not in svg and "<img" not in svg and "<b>" not in svg, name
        if name == "timeline":
            tooltips = [t.text for t in root.iter(f"{SVG}title")]
            assert any(t and t.startswith("<script>alert(1)</script>0:") for t in tooltips)  # shown as text
            assert "&lt;script&gt;alert(1)&lt;/script&gt;0" in svg
            assert "<b>m</b>" in texts(root)


@pytest.mark.parametrize("count", [2_000, 2_001])
def test_timeline_switches_to_time_bins_above_the_detail_limit(count):
    root = parse(plots.timeline_svg(swarm_records(count, managers=4, processes=8)))
    per_task = rects_of_class(root, "task")
    assert len(per_task) == (count if count <= plots.DETAIL_LIMIT else 0)
    shown = "\n".join(texts(root))
    assert ("shade: share of slot time busy" in shown) == (count > plots.DETAIL_LIMIT)


def test_100000_tasks_stay_small_and_quick():
    records = swarm_records(100_000, managers=8, processes=16, now_fraction=0.9)
    now = swarm_now(records)
    sizes, seconds = {}, {}
    for name, draw in (("timeline", lambda: plots.timeline_svg(records, now)),
                       ("completion", lambda: plots.completion_svg(records, now)),
                       ("durations", lambda: plots.duration_histogram_svg(records))):
        t0 = time.perf_counter()
        svg = draw()
        seconds[name] = time.perf_counter() - t0
        sizes[name] = len(svg.encode())
        parse(svg)
    print(f"\n100,000 tasks: sizes {sizes} bytes; times { {k: round(v, 3) for k, v in seconds.items()} } s")
    assert sizes["timeline"] < 450_000
    assert sizes["completion"] < 80_000
    assert sizes["durations"] < 30_000
    # Generous bound for a loaded 2-core machine; about 0.4 s each when idle.
    assert sum(seconds.values()) < 15


def test_running_tasks_end_at_now_and_count_as_unfinished():
    records = [
        {"id": "a", "state": "succeeded", "started_at": 100.0, "ended_at": 110.0, "duration": 10.0, "manager": "r0m0"},
        {"id": "b", "state": "running", "started_at": 105.0, "ended_at": None, "duration": None, "manager": "r0m0"},
    ]
    spans = plots.to_spans(records, now=130.0)
    assert spans.ends == [110.0, 130.0]
    shown = "\n".join(texts(parse(plots.completion_svg(records, now=130.0))))
    assert "1 of 2 tasks finished, 0 failed" in shown
    ticks = texts(parse(plots.timeline_svg(records, now=130.0)))
    assert "time since the first start (s)" in ticks and re.search(r"^30$|^25$", "\n".join(ticks), re.MULTILINE)
