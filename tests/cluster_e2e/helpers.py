"""Small helpers shared by the cluster end-to-end tests (no airflow import here)."""

from __future__ import annotations

import importlib.util
from collections import Counter
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
START = datetime(2026, 1, 1)


def example1_data():
    """dags_examples/example1_data.py (not a package), loaded by path."""
    spec = importlib.util.spec_from_file_location("example1_data_cluster_e2e", REPO / "dags_examples" / "example1_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_inputs(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"in_{i}.txt").write_text(f"value {i}\n")
    (folder / "common.txt").write_text("common\n")
    return folder


def read_events(exec_dir: Path) -> dict[str, list[tuple[float, str, str, str]]]:
    """exec/events_<manager> → {manager: [(time, task index, start|end, rc), ...]} in file order."""
    events = {}
    for path in sorted(exec_dir.glob("events_*")):
        rows = []
        for line in path.read_text().splitlines():
            fields = line.split()
            rows.append((float(fields[0]), fields[1], fields[2], fields[3]))
        events[path.name.removeprefix("events_")] = rows
    return events


def max_concurrency(rows: list[tuple[float, str, str, str]]) -> int:
    """Most tasks running at once, from start/end events (ends first on equal times)."""
    running = peak = 0
    for _, _, kind, _ in sorted(rows, key=lambda r: (r[0], r[2] == "start")):
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    return peak


def starts_per_task(exec_dir: Path) -> Counter:
    """How many times each task index (a string) was started, over every manager and round."""
    return Counter(index for rows in read_events(exec_dir).values() for _, index, kind, _ in rows if kind == "start")
