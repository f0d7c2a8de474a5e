"""Server-side SVG plots of a swarm, from its task records (manifest lines, or the task table of
a running swarm): a timeline per manager slot, the completion curve, a histogram of durations.

Pure Python, no Airflow and no JavaScript: the same SVG goes inline into the Swarm view and
into the self-contained HTML report. Each plot stays small at any swarm size: above
`DETAIL_LIMIT` tasks the timeline draws time bins per row of slots instead of one rectangle
per task, the completion curve is sampled, the histogram has a fixed number of bins.

A record is a mapping with at least `id`, `state` ("succeeded", "failed" or "running"),
`started_at` / `ended_at` (epoch seconds, start and end of the last attempt; None when not
known), `duration` and `manager` (e.g. "r0m1").
"""

from __future__ import annotations

import bisect
import heapq
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from airflow_provider_locusts.www.svg import (
    Svg,
    format_duration,
    format_number,
    nice_ticks,
    time_unit,
)

SUCCEEDED, FAILED, RUNNING = "succeeded", "failed", "running"
OUTCOME_CLASS = {SUCCEEDED: "ok", FAILED: "fail", RUNNING: "run"}
COLOURS = {"ok": "#2e8b57", "fail": "#d62728", "run": "#1f77b4"}
# Aggregated timeline cells: colour says the share of failed (or running) task time in the cell.
CELL_KINDS = {"ok": "#2e8b57", "f1": "#8fae3a", "f2": "#e8702a", "f3": "#d62728", "run": "#1f77b4"}
CELL_KIND_LABELS = {
    "ok": "no failure",
    "f1": "≤ 10% failed",
    "f2": "≤ 50% failed",
    "f3": "> 50% failed",
    "run": "mostly running",
}

DETAIL_LIMIT = 2000  # tasks; above this the timeline is aggregated
MAX_DETAIL_LANES = 280  # below 2 px a lane no longer reads as a bar
AGGREGATED_ROWS = 48
AGGREGATED_BINS = 150
CURVE_POINTS = 600
HISTOGRAM_BINS = 30

WIDTH = 900
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 78, 20, 58, 46


OUTCOMES = (SUCCEEDED, FAILED, RUNNING)  # outcome codes 0, 1, 2 index this
OK, FAIL, RUN = 0, 1, 2


@dataclass
class Spans:
    """The records that have a start time, as columns (fast to build and walk at 100,000 tasks);
    a running task ends at `now`, or at the latest time seen."""

    ids: list[str]
    outcomes: list[int]
    starts: list[float]
    ends: list[float]
    managers: list[str]
    left_out: int  # records without a start time: not drawn

    def __len__(self) -> int:
        return len(self.starts)


def state_counts(records: Sequence[Mapping]) -> Counter:
    """How many records are in each state (succeeded, failed, running; anything else by name)."""
    return Counter(str(r.get("state")) for r in records)


def to_spans(records: Iterable[Mapping], now: float | None = None) -> Spans:
    numbers = (int, float)
    ids, outcomes, starts, ends, managers = [], [], [], [], []
    left_out = 0
    latest = -math.inf
    for record in records:
        start = record.get("started_at")
        if not isinstance(start, numbers) or math.isnan(start):
            left_out += 1
            continue
        end = record.get("ended_at")
        state = record.get("state")
        outcome = OK if state == SUCCEEDED else FAIL if state == FAILED else RUN
        if outcome == RUN:
            end = None
        elif not isinstance(end, numbers):
            duration = record.get("duration")
            if isinstance(duration, numbers):
                end = start + duration
            else:
                outcome, end = RUN, None  # finished, but its end is unknown: drawn as running
        if end is not None and end > latest:
            latest = end
        latest = max(latest, start)
        ids.append(record.get("id"))
        outcomes.append(outcome)
        starts.append(float(start))
        ends.append(end)
        managers.append(record.get("manager") or "?")
    horizon = now if now is not None else latest
    for i, end in enumerate(ends):
        if end is None or end < starts[i]:
            ends[i] = max(float(horizon if end is None else end), starts[i])
    return Spans([str(x) for x in ids], outcomes, starts, ends, [str(m) for m in managers], left_out)


def natural_key(name: str) -> tuple:
    """r0m2 before r0m10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def assign_slots(spans: Spans) -> list[int]:
    """Slot of each task within its manager, by greedy interval assignment: by start time,
    each task takes the lowest-numbered slot that is free at its start."""
    starts, ends = spans.starts, spans.ends
    slots = [0] * len(starts)
    by_manager: dict[str, list[int]] = {}
    for i, manager in enumerate(spans.managers):
        by_manager.setdefault(manager, []).append(i)
    push, pop = heapq.heappush, heapq.heappop
    for indexes in by_manager.values():
        indexes.sort(key=starts.__getitem__)
        busy: list[tuple[float, int]] = []  # (end, slot)
        free: list[int] = []
        opened = 0
        for i in indexes:
            start = starts[i]
            while busy and busy[0][0] <= start:
                push(free, pop(busy)[1])
            if free:
                slot = pop(free)
            else:
                slot, opened = opened, opened + 1
            slots[i] = slot
            push(busy, (ends[i], slot))
    return slots


def all_plots(records: Sequence[Mapping], now: float | None = None) -> dict[str, str]:
    """The three plots, sharing one pass over the records: {"timeline", "completion", "durations"}."""
    spans = to_spans(records, now)
    return {
        "timeline": _timeline(records, spans),
        "completion": _completion(records, spans, now),
        "durations": duration_histogram_svg(records),
    }


# --- shared frame ---------------------------------------------------------------------------


def message_svg(title: str, message: str) -> str:
    """A plot's frame holding a message instead (nothing to draw yet, or why not)."""
    return _empty(title, message)


def _empty(title: str, message: str) -> str:
    svg = Svg(WIDTH, 120, title)
    svg.text(12, 24, title, class_="title")
    svg.text(WIDTH / 2, 70, message, text_anchor="middle")
    return svg.render()


def _time_axis(svg: Svg, x0: float, y: float, width: float, span: float) -> None:
    unit, seconds = time_unit(span)
    svg.line(x0, y, x0 + width, y, class_="axis")
    for tick in nice_ticks(span / seconds):
        x = x0 + tick * seconds / span * width
        svg.line(x, y, x, y + 4, class_="axis")
        svg.text(x, y + 16, format_number(tick), text_anchor="middle")
    svg.text(x0 + width / 2, y + 34, f"time since the first start ({unit})", text_anchor="middle")


def _count_axis(svg: Svg, x: float, y0: float, height: float, high: float, label: str, grid_to: float) -> None:
    svg.line(x, y0, x, y0 + height, class_="axis")
    for tick in nice_ticks(high, target=5):
        y = y0 + height - tick / high * height
        svg.line(x - 4, y, x, y, class_="axis")
        if tick:
            svg.line(x, y, grid_to, y, class_="grid")
        svg.text(x - 7, y + 4, format_number(tick), text_anchor="end")
    svg.text(16, y0 + height / 2, label, text_anchor="middle", transform=f"rotate(-90 16 {y0 + height / 2:.0f})")


def _legend(svg: Svg, x: float, y: float, items: list[tuple[str, str]]) -> None:
    """Swatch + label pairs on one line from (x, y)."""
    for colour, label in items:
        svg.rect(x, y - 9, 11, 11, fill=colour)
        svg.text(x + 15, y, label)
        x += 15 + 7 * len(label) + 18


def _started_label(t0: float) -> str:
    return "first start " + datetime.fromtimestamp(t0, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _counts_line(records: Sequence[Mapping]) -> str:
    counts = state_counts(records)
    parts = [f"{format_number(counts.get(s, 0))} {s}" for s in (SUCCEEDED, FAILED, RUNNING)]
    others = sorted(k for k in counts if k not in (SUCCEEDED, FAILED, RUNNING))
    parts += [f"{format_number(counts[k])} {k}" for k in others]
    return " · ".join(parts)


# --- timeline -------------------------------------------------------------------------------


def timeline_svg(records: Sequence[Mapping], now: float | None = None) -> str:
    """Tasks over time, one lane per manager slot, coloured by outcome (aggregated in time bins
    per row of slots above DETAIL_LIMIT tasks)."""
    return _timeline(records, to_spans(records, now))


def _timeline(records: Sequence[Mapping], spans: Spans, title: str = "Timeline") -> str:
    if not len(spans):
        return _empty(title, "No task has started yet.")
    left_out = spans.left_out
    slots = assign_slots(spans)
    lanes_per_manager: dict[str, int] = {}
    for manager, slot in zip(spans.managers, slots):
        if slot >= lanes_per_manager.get(manager, 0):
            lanes_per_manager[manager] = slot + 1
    managers = sorted(lanes_per_manager, key=natural_key)
    lane_base, total_lanes = {}, 0
    for manager in managers:
        lane_base[manager] = total_lanes
        total_lanes += lanes_per_manager[manager]
    lanes = [lane_base[manager] + slot for manager, slot in zip(spans.managers, slots)]

    t0 = min(spans.starts)
    t1 = max(spans.ends)
    duration = max(t1 - t0, 1e-3)
    detailed = len(spans) <= DETAIL_LIMIT and total_lanes <= MAX_DETAIL_LANES
    # Rows of lanes: one lane per row in detailed mode, at most AGGREGATED_ROWS rows otherwise.
    lanes_per_row = 1 if detailed else math.ceil(total_lanes / AGGREGATED_ROWS)
    rows = math.ceil(total_lanes / lanes_per_row)
    plot_h = min(max(rows * 14, 120), 560)
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    height = MARGIN_TOP + plot_h + MARGIN_BOTTOM + 22
    row_h = plot_h / rows

    css = "".join(f".{k}{{fill:{c}}}" for k, c in COLOURS.items())
    if not detailed:
        css += "".join(f".{k}{q}{{fill:{c};fill-opacity:{q / 4:g}}}" for k, c in CELL_KINDS.items() for q in (1, 2, 3, 4))
    svg = Svg(WIDTH, height, f"{title}: {len(records)} tasks", css)
    svg.text(12, 20, f"{title} — {format_number(len(records))} tasks on {len(managers)} manager(s), {total_lanes} slot(s)", class_="title")
    svg.text(12, 38, _counts_line(records) + f" · {_started_label(t0)}" + (f" · {format_number(left_out)} not started: not drawn" if left_out else ""))

    x0, y0 = MARGIN_LEFT, MARGIN_TOP
    scale = plot_w / duration
    _manager_labels(svg, managers, lane_base, lanes_per_manager, lanes_per_row, row_h, x0, y0, plot_w)

    if detailed:
        for i, lane in enumerate(lanes):
            start, end, outcome = spans.starts[i], spans.ends[i], OUTCOMES[spans.outcomes[i]]
            tooltip = f"{spans.ids[i]}: {outcome}, {format_duration(end - start)} on {spans.managers[i]}"
            svg.rect(
                x0 + (start - t0) * scale, y0 + lane * row_h + 0.5, max((end - start) * scale, 1.0), max(row_h - 1, 1.0),
                tooltip=tooltip, class_=f"task {OUTCOME_CLASS[outcome]}",
            )
        _legend(svg, x0, height - 8, [(COLOURS["ok"], "succeeded"), (COLOURS["fail"], "failed"), (COLOURS["run"], "running")])
    else:
        _aggregated_cells(svg, spans, lanes, rows, lanes_per_row, total_lanes, t0, duration, x0, y0, plot_w, row_h)
        _legend(svg, x0, height - 8, [(c, CELL_KIND_LABELS[k]) for k, c in CELL_KINDS.items()])
        svg.text(WIDTH - MARGIN_RIGHT, height - 8, "shade: share of slot time busy", text_anchor="end")
    _time_axis(svg, x0, y0 + plot_h, plot_w, duration)
    return svg.render()


def _manager_labels(svg, managers, lane_base, lanes_per_manager, lanes_per_row, row_h, x0, y0, plot_w) -> None:
    last_label_y = -math.inf
    for manager in managers:
        first_row = lane_base[manager] // lanes_per_row
        y = y0 + first_row * row_h
        if first_row:
            svg.line(x0, y, x0 + plot_w, y, class_="grid")
        label_y = y + min(row_h * lanes_per_manager[manager] / lanes_per_row, 24) / 2 + 4
        if label_y - last_label_y >= 12:
            svg.text(x0 - 6, label_y, manager, text_anchor="end")
            last_label_y = label_y
    svg.line(x0, y0, x0, y0 + row_h * math.ceil(sum(lanes_per_manager.values()) / lanes_per_row), class_="axis")


def _aggregated_cells(svg, spans: Spans, lanes, rows, lanes_per_row, total_lanes, t0, duration, x0, y0, plot_w, row_h) -> None:
    """Per row of slots and time bin: busy seconds per outcome, summed with difference arrays so
    the cost is one pass over the tasks plus rows × bins, whatever the tasks' lengths."""
    bins = AGGREGATED_BINS
    width = duration / bins
    stride = bins + 1
    # Flat arrays indexed [(outcome * rows + row) * stride + bin].
    busy = [0.0] * (3 * rows * stride)
    full = [0] * (3 * rows * stride)
    last_bin = bins - 1
    for start, end, outcome, lane in zip(spans.starts, spans.ends, spans.outcomes, lanes):
        base = (outcome * rows + lane // lanes_per_row) * stride
        a = (start - t0) / width
        b = (end - t0) / width
        first = int(a)
        last = int(b)
        first = min(first, last_bin)
        last = min(last, last_bin)
        if first == last:
            busy[base + first] += (b - a) * width
        else:
            busy[base + first] += (first + 1 - a) * width
            busy[base + last] += (b - last) * width
            full[base + first + 1] += 1
            full[base + last] -= 1
    for row in range(rows):
        lanes_in_row = min(lanes_per_row, total_lanes - row * lanes_per_row)
        capacity = width * lanes_in_row
        bases = [(k * rows + row) * stride for k in (OK, FAIL, RUN)]
        covering = [0, 0, 0]
        classes = []
        for b in range(bins):
            seconds = [0.0, 0.0, 0.0]
            for k, base in enumerate(bases):
                covering[k] += full[base + b]
                seconds[k] = busy[base + b] + covering[k] * width
            classes.append(_cell_class(seconds, capacity))
        y = y0 + row * row_h + 0.5
        h = max(row_h - 1, 1.0)
        b = 0
        while b < bins:  # one rectangle per run of equal cells
            end = b
            while end + 1 < bins and classes[end + 1] == classes[b]:
                end += 1
            if classes[b]:
                svg.rect(x0 + b * plot_w / bins, y, (end - b + 1) * plot_w / bins, h, class_=classes[b])
            b = end + 1


def _cell_class(seconds: list[float], capacity: float) -> str:
    """Colour by share of failed (or running) task time, shade by share of slot time busy."""
    total = seconds[OK] + seconds[FAIL] + seconds[RUN]
    if total <= 1e-12:
        return ""
    shade = min(4, max(1, math.ceil(total / capacity * 4 - 1e-9)))
    if seconds[RUN] >= total / 2:
        kind = "run"
    else:
        failed = seconds[FAIL] / total
        kind = "ok" if failed == 0 else "f1" if failed <= 0.1 else "f2" if failed <= 0.5 else "f3"
    return f"{kind}{shade}"


# --- completion curve -----------------------------------------------------------------------


def completion_svg(records: Sequence[Mapping], now: float | None = None) -> str:
    """Tasks finished over time (all, and failed), against the swarm's total."""
    return _completion(records, to_spans(records, now), now)


def _completion(records: Sequence[Mapping], spans: Spans, now: float | None, title: str = "Completion") -> str:
    ends = sorted(end for end, outcome in zip(spans.ends, spans.outcomes) if outcome != RUN)
    failed_ends = sorted(end for end, outcome in zip(spans.ends, spans.outcomes) if outcome == FAIL)
    if not ends:
        return _empty(title, "No task has finished yet.")
    total = len(records)
    t0 = min(spans.starts)
    t1 = max(max(spans.ends), now or 0.0)
    duration = max(t1 - t0, 1e-3)
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = 260
    height = MARGIN_TOP + plot_h + MARGIN_BOTTOM + 22
    css = ".done{stroke:#2e8b57;stroke-width:2}.failed{stroke:#d62728;stroke-width:2}.total{stroke:#555;stroke-dasharray:4 3}"
    svg = Svg(WIDTH, height, f"{title}: {len(ends)} of {total} tasks finished", css)
    svg.text(12, 20, f"{title} — {format_number(len(ends))} of {format_number(total)} tasks finished, {format_number(len(failed_ends))} failed", class_="title")
    svg.text(12, 38, _counts_line(records) + f" · {_started_label(t0)}")
    x0, y0 = MARGIN_LEFT, MARGIN_TOP
    high = max(total, 1)
    _count_axis(svg, x0, y0, plot_h, high, "tasks finished", x0 + plot_w)
    y_total = y0
    svg.line(x0, y_total, x0 + plot_w, y_total, class_="total")
    svg.text(x0 + plot_w - 4, y_total - 4, f"total {format_number(total)}", text_anchor="end")

    def to_xy(t: float, count: int) -> tuple[float, float]:
        return x0 + (t - t0) / duration * plot_w, y0 + plot_h - count / high * plot_h

    for times, cls in ((ends, "done"), (failed_ends, "failed")):
        if times:
            svg.polyline(_step_points(times, t0, t1, to_xy), class_=cls)
    _time_axis(svg, x0, y0 + plot_h, plot_w, duration)
    _legend(svg, x0, height - 8, [(COLOURS["ok"], f"finished ({format_number(len(ends))})"), (COLOURS["fail"], f"failed ({format_number(len(failed_ends))})")])
    return svg.render()


def _step_points(times: list[float], t0: float, t1: float, to_xy) -> list[tuple[float, float]]:
    """A step curve of the cumulative count, sampled at no more than CURVE_POINTS times."""
    if len(times) <= CURVE_POINTS:
        samples = times
    else:
        samples = [t0 + (t1 - t0) * i / CURVE_POINTS for i in range(1, CURVE_POINTS + 1)]
    points = [to_xy(t0, 0)]
    previous = 0
    for t in samples:
        count = bisect.bisect_right(times, t)
        if count != previous:
            points.append(to_xy(t, previous))
            points.append(to_xy(t, count))
            previous = count
    points.append(to_xy(t1, previous))
    return points


def completion_series_svg(
    points: Sequence[tuple[float, int, int]], total: int, first_start: float | None, now: float | None,
    title: str = "Completion",
) -> str:
    """The completion curve of a running swarm from binned counts: `points` are (time, tasks
    ended so far, failed so far) in time order (live.CompletionBins), `total` the tasks to run."""
    if not points or first_start is None:
        return _empty(title, "No task has finished yet.")
    t0 = min(first_start, points[0][0])
    t1 = max(points[-1][0], now or 0.0)
    duration = max(t1 - t0, 1e-3)
    ended, failed = points[-1][1], points[-1][2]
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = 260
    height = MARGIN_TOP + plot_h + MARGIN_BOTTOM + 22
    css = ".done{stroke:#2e8b57;stroke-width:2}.failed{stroke:#d62728;stroke-width:2}.total{stroke:#555;stroke-dasharray:4 3}"
    svg = Svg(WIDTH, height, f"{title}: {ended} of {total} tasks finished", css)
    svg.text(12, 20, f"{title} — {format_number(ended)} of {format_number(total)} tasks finished, {format_number(failed)} failed", class_="title")
    svg.text(12, 38, f"{_started_label(t0)} · live")
    x0, y0 = MARGIN_LEFT, MARGIN_TOP
    high = max(total, ended, 1)
    _count_axis(svg, x0, y0, plot_h, high, "tasks finished", x0 + plot_w)
    svg.line(x0, y0, x0 + plot_w, y0, class_="total")
    svg.text(x0 + plot_w - 4, y0 - 4, f"total {format_number(total)}", text_anchor="end")

    def to_xy(t: float, count: int) -> tuple[float, float]:
        return x0 + (min(t, t1) - t0) / duration * plot_w, y0 + plot_h - max(count, 0) / high * plot_h

    for column, cls in ((1, "done"), (2, "failed")):
        line = [to_xy(t0, 0)]
        for point in points:
            line.append(to_xy(point[0], point[column]))
        line.append(to_xy(t1, points[-1][column]))
        svg.polyline(line, class_=cls)
    _time_axis(svg, x0, y0 + plot_h, plot_w, duration)
    _legend(svg, x0, height - 8, [(COLOURS["ok"], f"finished ({format_number(ended)})"), (COLOURS["fail"], f"failed ({format_number(failed)})")])
    return svg.render()


# --- duration histogram ---------------------------------------------------------------------


def _durations(records: Sequence[Mapping]) -> tuple[list[float], list[float]]:
    succeeded, failed = [], []
    for record in records:
        outcome = record.get("state")
        if outcome not in (SUCCEEDED, FAILED):
            continue
        duration = record.get("duration")
        if not isinstance(duration, (int, float)):
            start, end = record.get("started_at"), record.get("ended_at")
            if not (isinstance(start, (int, float)) and isinstance(end, (int, float))):
                continue
            duration = end - start
        if math.isfinite(duration) and duration >= 0:
            (succeeded if outcome == SUCCEEDED else failed).append(float(duration))
    return succeeded, failed


def histogram_bins(durations: Sequence[float], bins: int = HISTOGRAM_BINS) -> tuple[list[float], bool]:
    """Bin edges, and whether they are log-scaled (when the longest is ≥ 50 × the shortest)."""
    low, high = min(durations), max(durations)
    positive = [d for d in durations if d > 0]
    if positive and high / min(positive) >= 50:
        low = min(positive)
        ratio = (high / low) ** (1 / bins)
        return [low * ratio**i for i in range(bins)] + [high], True
    if high - low < 1e-9:
        low, high = max(low - 0.5, 0.0), high + 0.5
    step = (high - low) / bins
    return [low + step * i for i in range(bins)] + [high], False


def _bin_of(edges: list[float], value: float) -> int:
    return min(max(bisect.bisect_right(edges, value) - 1, 0), len(edges) - 2)


def duration_histogram_svg(records: Sequence[Mapping], title: str = "Task durations") -> str:
    """How many finished tasks took how long, succeeded and failed stacked."""
    succeeded, failed = _durations(records)
    if not succeeded and not failed:
        return _empty(title, "No finished task with a duration yet.")
    edges, log_scale = histogram_bins(succeeded + failed)
    n = len(edges) - 1
    ok_counts, fail_counts = [0] * n, [0] * n
    for counts, values in ((ok_counts, succeeded), (fail_counts, failed)):
        for value in values:
            counts[_bin_of(edges, value)] += 1
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = 240
    height = MARGIN_TOP + plot_h + MARGIN_BOTTOM + 22
    css = "".join(f".{k}{{fill:{c}}}" for k, c in COLOURS.items())
    finished = len(succeeded) + len(failed)
    svg = Svg(WIDTH, height, f"{title}: {finished} finished tasks", css)
    scale_note = "log-scaled bins" if log_scale else "linear bins"
    svg.text(12, 20, f"{title} — {format_number(finished)} finished tasks", class_="title")
    all_durations = sorted(succeeded + failed)
    median = all_durations[len(all_durations) // 2]
    svg.text(12, 38, f"shortest {format_duration(all_durations[0])} · median {format_duration(median)} · longest {format_duration(all_durations[-1])} · {scale_note}")
    x0, y0 = MARGIN_LEFT, MARGIN_TOP
    high = max(a + b for a, b in zip(ok_counts, fail_counts))
    _count_axis(svg, x0, y0, plot_h, high, "tasks", x0 + plot_w)
    bar_w = plot_w / n
    for i in range(n):
        ok, bad = ok_counts[i], fail_counts[i]
        if not ok and not bad:
            continue
        tooltip = f"{format_duration(edges[i])} – {format_duration(edges[i + 1])}: {ok} succeeded, {bad} failed"
        x = x0 + i * bar_w + 0.5
        h_ok, h_bad = ok / high * plot_h, bad / high * plot_h
        bar = Svg(0, 0, "")  # collects the bar's parts, escaped like the rest
        if ok:
            bar.rect(x, y0 + plot_h - h_ok, bar_w - 1, h_ok, class_="ok")
        if bad:
            bar.rect(x, y0 + plot_h - h_ok - h_bad, bar_w - 1, h_bad, class_="fail")
        svg.raw_group([*bar.parts, f"<title>{escape(tooltip)}</title>"], class_="bin", data_succeeded=ok, data_failed=bad)
    _duration_axis(svg, edges, log_scale, x0, y0 + plot_h, plot_w)
    _legend(svg, x0, height - 8, [(COLOURS["ok"], f"succeeded ({format_number(len(succeeded))})"), (COLOURS["fail"], f"failed ({format_number(len(failed))})")])
    return svg.render()


def _duration_axis(svg: Svg, edges: list[float], log_scale: bool, x0: float, y: float, width: float) -> None:
    low, high = edges[0], edges[-1]
    svg.line(x0, y, x0 + width, y, class_="axis")
    if log_scale:
        position = lambda v: x0 + math.log(v / low) / math.log(high / low) * width
        decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
        multiples = (1, 2, 5) if len(decades) <= 4 else (1,)
        ticks = [m * 10.0**d for d in decades for m in multiples if low <= m * 10.0**d <= high]
        labels = [format_duration(t) for t in ticks]
        axis_label = "task duration (log scale)"
    else:
        unit, seconds = time_unit(high)
        position = lambda v: x0 + (v - low) / (high - low) * width
        step_ticks = nice_ticks(high / seconds)
        ticks = [t * seconds for t in step_ticks if low <= t * seconds <= high]
        labels = [format_number(t / seconds) for t in ticks]
        axis_label = f"task duration ({unit})"
    for tick, label in zip(ticks, labels):
        x = position(tick)
        svg.line(x, y, x, y + 4, class_="axis")
        svg.text(x, y + 16, label, text_anchor="middle")
    svg.text(x0 + width / 2, y + 34, axis_label, text_anchor="middle")
