"""The self-contained HTML report of a swarm, `locusts_report.<swarm_id>.html` next to the manifest.

One file that opens from disk with no network and no server: inline CSS, inline SVG plots, no
script at all (a Content-Security-Policy in the page forbids every external resource and every
script, so even a mistake elsewhere cannot make it load or run anything). Jinja2 autoescapes
every value; only the plots, built by the escaping SVG writer, go in as markup.

Bounded whatever the swarm's size: the first MAX_FAILURES failures are detailed, each with the
last TAIL_BYTES of its stderr and stdout, and the page says what it left out.
"""

from __future__ import annotations

import math
import os
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import jinja2
from markupsafe import Markup

from airflow_provider_locusts.swarm.collect import REPORT_PREFIX
from airflow_provider_locusts.www.plots import all_plots, state_counts
from airflow_provider_locusts.www.svg import format_duration
MAX_FAILURES = 200
TAIL_BYTES = 4096
TOP_REASONS = 10
TOP_HOSTS = 20

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("airflow_provider_locusts.www", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def report_path(output_dir: str | os.PathLike, swarm_id: str) -> Path:
    return Path(output_dir) / f"{REPORT_PREFIX}{swarm_id}.html"


def last_bytes(text: str | None, limit: int = TAIL_BYTES) -> tuple[str, int]:
    """The end of `text` that fits in `limit` UTF-8 bytes (never half a character), and how
    many bytes were cut from its start."""
    data = (text or "").encode("utf-8", errors="replace")
    if len(data) <= limit:
        return data.decode("utf-8", errors="replace"), 0
    kept = data[-limit:].decode("utf-8", errors="ignore")  # drops a character cut in two
    return kept, len(data) - len(kept.encode("utf-8"))


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not math.isnan(value) else None


def summarize(records: Sequence[Mapping]) -> dict:
    """Counts, durations and hosts of a swarm, from its records."""
    counts = state_counts(records)
    durations = sorted(d for d in (_number(r.get("duration")) for r in records) if d is not None)
    starts = [s for s in (_number(r.get("started_at")) for r in records) if s is not None]
    ends = [e for e in (_number(r.get("ended_at")) for r in records) if e is not None]
    hosts: dict[str, Counter] = {}
    for record in records:
        host = record.get("host")
        if host:
            hosts.setdefault(str(host), Counter())[str(record.get("state"))] += 1
    by_tasks = sorted(hosts.items(), key=lambda item: (-sum(item[1].values()), item[0]))
    summary = {
        "total": len(records),
        "succeeded": counts.get("succeeded", 0),
        "failed": counts.get("failed", 0),
        "other_states": sorted((k, v) for k, v in counts.items() if k not in ("succeeded", "failed")),
        "retried": sum(1 for r in records if isinstance(r.get("attempts"), int) and r["attempts"] > 1),
        "managers": len({r.get("manager") for r in records if r.get("manager")}),
        "hosts": [(host, sum(c.values()), c.get("failed", 0)) for host, c in by_tasks[:TOP_HOSTS]],
        "hosts_not_shown": max(0, len(by_tasks) - TOP_HOSTS),
        "host_count": len(by_tasks),
        "durations": None,
        "wall": None,
        "first_start": None,
    }
    if durations:
        summary["durations"] = {
            "shortest": format_duration(durations[0]),
            "median": format_duration(statistics.median(durations)),
            "p95": format_duration(durations[min(len(durations) - 1, int(len(durations) * 0.95))]),
            "longest": format_duration(durations[-1]),
            "total": format_duration(sum(durations)),
        }
    if starts and ends:
        summary["wall"] = format_duration(max(max(ends), max(starts)) - min(starts))
        summary["first_start"] = _utc(min(starts))
    return summary


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


CHANGE_KINDS = ("created", "modified", "deleted")
SHOWN_CHANGES = 20  # paths listed per kind for one failed task


def tree_changes(records: Sequence[Mapping]) -> dict | None:
    """A Custom Environment's changes over the swarm (the manifest's `changes`), None without."""
    entries = [r["changes"] for r in records if isinstance(r.get("changes"), Mapping)]
    if not entries:
        return None
    totals = {kind: sum(len(e.get(kind) or ()) for e in entries) for kind in CHANGE_KINDS}
    totals["not collected"] = sum(len(e.get("not_collected") or {}) for e in entries)
    return {
        "tasks": len(entries),
        "totals": totals,
        "read_only": sum(1 for e in entries if e.get("read_only_changed")),
        "collected": sum(len(r.get("outputs") or ()) for r in records if r.get("state") == "succeeded" and r.get("changes")),
    }


def _task_changes(changes) -> list[tuple[str, list[str], int]]:
    """(label, paths shown, paths not shown) for one task's changes."""
    if not isinstance(changes, Mapping):
        return []
    groups = [("read-only part changed", [f"{k} {p}" for p, k in sorted((changes.get("read_only_changed") or {}).items())])]
    groups += [(kind, list(changes.get(kind) or ())) for kind in CHANGE_KINDS]
    groups.append(("not collected", [f"{p} ({why})" for p, why in sorted((changes.get("not_collected") or {}).items())]))
    return [(label, paths[:SHOWN_CHANGES], max(0, len(paths) - SHOWN_CHANGES)) for label, paths in groups if paths]


def _failures(records: Sequence[Mapping], tails: Mapping[str, Mapping[str, str]], limit: int, tail_bytes: int) -> list[dict]:
    failed = sorted((r for r in records if r.get("state") == "failed"), key=lambda r: (r.get("index") is None, r.get("index") or 0))
    shown = []
    for record in failed[:limit]:
        tail = tails.get(str(record.get("id")), {}) or {}
        logs = []
        for stream in ("stderr", "stdout"):
            if stream in tail and tail[stream] is not None:
                text, cut = last_bytes(tail[stream], tail_bytes)
                logs.append({"name": stream, "text": text, "cut": cut})
        duration = _number(record.get("duration"))
        shown.append({
            "id": str(record.get("id")),
            "index": record.get("index"),
            "reason": record.get("reason") or "(no reason recorded)",
            "exit_code": record.get("exit_code"),
            "attempts": record.get("attempts"),
            "host": record.get("host"),
            "manager": record.get("manager"),
            "duration": format_duration(duration) if duration is not None else None,
            "folder": record.get("folder"),
            "logs": logs,
            "changes": _task_changes(record.get("changes")),
        })
    return shown


def render_report(
    records: Sequence[Mapping],
    summary: Mapping | None = None,
    tails: Mapping[str, Mapping[str, str]] | None = None,
    *,
    now: float | None = None,
    max_failures: int = MAX_FAILURES,
    tail_bytes: int = TAIL_BYTES,
) -> str:
    """The report as one HTML string. `summary` is the swarm's XCom summary (swarm_id,
    output_dir, manifest… only its scalar fields are shown); `tails` maps a task id to its
    {"stderr": text, "stdout": text}; `now` ends the bars of tasks still running."""
    summary = dict(summary or {})
    failed_total = sum(1 for r in records if r.get("state") == "failed")
    reasons = Counter(str(r.get("reason") or "(no reason recorded)") for r in records if r.get("state") == "failed")
    generated = now if now is not None else datetime.now(tz=UTC).timestamp()
    details = [
        (label, summary[key])
        for key, label in (("swarm_id", "swarm"), ("output_dir", "output folder"), ("manifest", "manifest"))
        if isinstance(summary.get(key), (str, int, float))
    ]
    return _env.get_template("report.html.j2").render(
        title=f"Swarm {summary.get('swarm_id') or ''}".strip(),
        details=details,
        stats=summarize(records),
        changes=tree_changes(records),
        reasons=reasons.most_common(TOP_REASONS),
        reasons_not_shown=max(0, len(reasons) - TOP_REASONS),
        failures=_failures(records, tails or {}, max_failures, tail_bytes),
        failed_total=failed_total,
        tail_bytes=tail_bytes,
        plots={name: Markup(svg) for name, svg in all_plots(records, now).items()},  # escaped by the SVG writer
        generated_at=_utc(generated),
    )


def gather_report(records: Sequence[Mapping], tails: Mapping[str, Mapping[str, str]], info: Mapping) -> str:
    """The report a gather writes (SwarmEngine.gather(report=gather_report)): `info` holds the
    swarm's id, output_dir and manifest path."""
    return render_report(records, info, tails)


def write_report(
    output_dir: str | os.PathLike,
    swarm_id: str,
    records: Sequence[Mapping],
    summary: Mapping | None = None,
    tails: Mapping[str, Mapping[str, str]] | None = None,
    **options,
) -> Path:
    """Write `locusts_report.<swarm_id>.html` into output_dir (through a temporary file, so a
    reader never sees half a report) and return its path."""
    from airflow_provider_locusts.swarm.layout import check_swarm_id

    path = report_path(output_dir, check_swarm_id(swarm_id))
    html = render_report(records, {"swarm_id": swarm_id, **dict(summary or {})}, tails, **options)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)
    return path
