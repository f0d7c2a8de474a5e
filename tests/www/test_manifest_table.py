"""The per-task table of an ended swarm: results.jsonl parsed once into columns, paged with
"failed only", search by id and sort by duration; the bounded cache that re-reads a manifest
only when its fingerprint on the host changed. The 100,000-task figures are printed."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from airflow_provider_locusts.swarm.host_commands import parse_read_changed, read_changed_command
from airflow_provider_locusts.swarm.shell import LocalShell
from airflow_provider_locusts.www.manifest_table import (
    MAX_MANIFEST_BYTES,
    MAX_MANIFESTS,
    PER_PAGE_MAX,
    ManifestCache,
    ManifestTable,
    ManifestTooLarge,
)
from tests.www.records import HOSTILE_IDS, swarm_records


def manifest_bytes(records: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def small_table() -> tuple[ManifestTable, list[dict]]:
    ids = [f"sample_{i}" for i in range(100)]
    ids[22], ids[45] = HOSTILE_IDS
    records = swarm_records(100, managers=2, processes=4, ids=ids)  # every 23rd fails
    return ManifestTable(manifest_bytes(records), "fp"), records


def test_a_manifest_reads_back_row_for_row():
    table, records = small_table()
    assert len(table) == 100
    assert table.counts() == {"succeeded": 96, "failed": 4}
    page = table.page(1, 50)
    assert (page["total_rows"], page["pages"], page["page"]) == (100, 2, 1)
    first = page["rows"][22]
    assert first == {key: records[22][key] for key in ("index", "id", "state", "reason", "exit_code", "attempts", "duration",
                                                      "host", "manager", "started_at", "ended_at")}
    assert first["id"] == HOSTILE_IDS[0] and first["state"] == "failed" and first["reason"] == "exit code 3"
    assert [r["index"] for r in table.page(2, 50)["rows"]] == list(range(50, 100))
    assert table.page(99, 50)["page"] == 2  # past the end: the last page


def test_failed_only_search_and_sort_combine():
    table, records = small_table()
    failed = table.page(failed_only=True)
    assert [r["index"] for r in failed["rows"]] == [22, 45, 68, 91]
    assert table.page(query="SAMPLE_1")["total_rows"] == 11  # 1, 10..19; case-insensitive
    assert [r["id"] for r in table.page(query="onerror")["rows"]] == [HOSTILE_IDS[1]]
    assert [r["id"] for r in table.page(query="<script>", failed_only=True)["rows"]] == [HOSTILE_IDS[0]]
    by_duration = sorted(records, key=lambda r: r["duration"])
    assert [r["index"] for r in table.page(1, 10, sort="duration")["rows"]] == [r["index"] for r in by_duration[:10]]
    assert [r["index"] for r in table.page(1, 10, sort="-duration")["rows"]] == [r["index"] for r in by_duration[::-1][:10]]
    failed_longest = sorted((r for r in records if r["state"] == "failed"), key=lambda r: -r["duration"])
    assert [r["index"] for r in table.page(sort="-duration", failed_only=True)["rows"]] == [r["index"] for r in failed_longest]
    assert table.page(per_page=10_000)["per_page"] == PER_PAGE_MAX
    with pytest.raises(ValueError):
        table.page(sort="id; rm -rf /")


def test_tasks_without_a_duration_sort_last_both_ways_and_odd_lines_are_read():
    lines = [
        {"index": 0, "id": "a", "state": "failed", "reason": "never started", "exit_code": None, "attempts": 0, "duration": None},
        {"index": 1, "id": "b", "state": "succeeded", "exit_code": 0, "attempts": 1, "duration": 2.0},
        {"index": 2, "id": "c", "state": "succeeded", "exit_code": 0, "attempts": 1, "duration": 1.0},
        {"index": 3, "id": 7, "state": "succeeded", "exit_code": "0", "attempts": True, "duration": "slow"},  # odd types
    ]
    data = (manifest_bytes(lines) + b"\n   \nnot json\n" + json.dumps({"index": 4, "id": "bad\udc80name", "state": "failed"}).encode()
            + b"\n" + json.dumps({"index": 5, "id": "inf", "state": "succeeded", "duration": float("inf")}).encode() + b"\n")
    table = ManifestTable(data)
    assert [r["id"] for r in table.page(sort="duration")["rows"]] == ["c", "b", "inf", "a", "7", "bad\ufffdname"]
    assert [r["id"] for r in table.page(sort="-duration")["rows"]] == ["inf", "b", "c", "a", "7", "bad\ufffdname"]
    assert table.page(query="inf")["rows"][0]["duration"] is None  # JSON has no Infinity
    odd = table.page()["rows"][3]
    assert (odd["exit_code"], odd["attempts"], odd["duration"]) == (None, 0, None)
    json.dumps(table.page(), allow_nan=False).encode("utf-8")  # every value encodes as JSON text


def test_plots_are_drawn_once_from_the_columns():
    table, records = small_table()
    plots = table.plots()
    assert set(plots) == {"timeline", "completion", "durations"}
    assert "100 tasks" in plots["timeline"] and "&lt;script&gt;" in plots["timeline"] and "<script>" not in plots["timeline"]
    assert table.plots() is plots


class Host:
    """A results.jsonl read through the real host command, locally (as for a local swarm)."""

    def __init__(self, root: Path):
        self.root = root
        (root / "exec").mkdir(parents=True, exist_ok=True)
        self.reads: list[str | None] = []

    def write(self, data: bytes) -> None:
        path = self.root / "exec" / "results.jsonl"
        tmp = path.with_name(".results.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # as gather writes it: a new file, never rewritten in place

    def read(self, known):
        self.reads.append(known)
        script, args = read_changed_command(str(self.root), "exec/results.jsonl", known, MAX_MANIFEST_BYTES, gzip=True)
        return parse_read_changed(LocalShell().run_script(script, args).check("reading").stdout)


def test_the_cache_rereads_only_a_changed_manifest_and_holds_at_most_two(tmp_path):
    now = [0.0]
    cache = ManifestCache(recheck_seconds=2.0, clock=lambda: now[0])
    host = Host(tmp_path / "root")
    assert cache.get("a", host.read) is None  # no results yet
    host.write(manifest_bytes(swarm_records(30)))
    first = cache.get("a", host.read)
    assert len(first) == 30 and cache.parses == 1
    assert cache.get("a", host.read) is first and len(host.reads) == 2  # checked less than 2 s ago: not read
    now[0] += 3
    assert cache.get("a", host.read) is first and cache.parses == 1  # unchanged on the host: kept
    assert host.reads[-1] == first.fingerprint
    host.write(manifest_bytes(swarm_records(40)))
    now[0] += 3
    second = cache.get("a", host.read)
    assert len(second) == 40 and cache.parses == 2
    for key in ("b", "c", "d"):
        cache.get(key, Host(tmp_path / key).read) or None
        other = Host(tmp_path / f"{key}-data")
        other.write(manifest_bytes(swarm_records(5)))
        cache.get(key, other.read)
    assert len(cache) == MAX_MANIFESTS == 2
    assert list(cache._entries) == ["c", "d"]


def test_a_manifest_over_the_limit_is_refused_before_it_is_read(tmp_path):
    host = Host(tmp_path / "root")
    host.write(manifest_bytes(swarm_records(50)))
    script, args = read_changed_command(str(host.root), "exec/results.jsonl", None, 100, gzip=False)
    answer = parse_read_changed(LocalShell().run_script(script, args).stdout)
    assert answer.status == "toolarge" and answer.data == b""
    with pytest.raises(ManifestTooLarge):
        ManifestCache().get("k", lambda known: answer)
    with pytest.raises(ValueError):
        read_changed_command(str(host.root), "../../etc/passwd", None, 100, gzip=False)


def test_100000_tasks_first_and_later_pages(tmp_path):
    """Server-side cost of the table at 100,000 tasks: the first request reads and parses
    the manifest, later ones page from memory. Figures printed, not asserted."""
    host = Host(tmp_path / "root")
    records = swarm_records(100_000, managers=8, processes=16)
    for r in records:
        r["outputs"] = [f"/data/out/count_{r['index']}.txt"]
        r["folder"] = f"/scratch/swarms/big/work/batch_{r['index'] // 10000}/task_{r['index']}"
    data = manifest_bytes(records)
    host.write(data)
    cache = ManifestCache()
    figures = {}
    t0 = time.perf_counter()
    page = cache.get("big", host.read).page(1, 50)
    figures["first page (read + parse + page)"] = time.perf_counter() - t0
    assert page["total_rows"] == 100_000 and page["rows"][0]["index"] == 0
    for name, kwargs in (("page 2000", {"page": 2000}), ("failed only", {"failed_only": True}),
                         ("search '9999'", {"query": "9999"}), ("longest first", {"sort": "-duration"}),
                         ("failed, longest first, page 3", {"failed_only": True, "sort": "-duration", "page": 3})):
        t0 = time.perf_counter()
        table = cache.get("big", host.read)
        result = table.page(**kwargs)
        figures[name] = time.perf_counter() - t0
        assert result["rows"]
    assert cache.parses == 1
    failed = [r for r in records if r["state"] == "failed"]
    assert table.page(failed_only=True)["total_rows"] == len(failed)
    longest = max(failed, key=lambda r: r["duration"])
    assert table.page(failed_only=True, sort="-duration")["rows"][0]["index"] == longest["index"]
    assert {r["id"] for r in table.page(query="9999", per_page=200)["rows"]} == {r["id"] for r in records if "9999" in r["id"]}
    print(f"\nmanifest of 100,000 tasks: {len(data) / 1e6:.1f} MB")
    for name, seconds in figures.items():
        print(f"  {name}: {seconds * 1000:.0f} ms")
