"""The Swarm view's live state: counts from event bytes (retries, cut-off tasks, torn lines), a
bounded completion histogram, throughput and ETA; the registry's bounds and shared polls."""

from __future__ import annotations

import threading
import time

import pytest

from airflow_provider_locusts.swarm.progress import ManagerStatus, PollResult
from airflow_provider_locusts.www.live import (
    MAX_BINS,
    RECENT_FAILURES,
    RETRY_WINDOW,
    CompletionBins,
    LiveRegistry,
    LiveState,
    display_state,
)


def start(t: float, i: int, host: str = "node1") -> bytes:
    return f"{t:.6f} {i} start - {host}\n".encode()


def end(t: float, i: int, rc: int = 0, missing: int = 0, host: str = "node1") -> bytes:
    return f"{t:.6f} {i} end {rc} {host} {missing}\n".encode()


def cut(t: float, i: int, rc: int = 143, host: str = "node1") -> bytes:
    return f"{t:.6f} {i} cut {rc} {host} 0\n".encode()


def test_counts_follow_starts_ends_failures_and_cut_off_tasks():
    state = LiveState(["r0m0", "r0m1"], try_tasks=10, total=10)
    state.feed("r0m0", start(100, 0) + start(100, 1) + end(101, 0) + end(102, 1, rc=3))
    state.feed("r0m1", start(100, 5) + start(100, 6) + end(103, 5, missing=1) + start(104, 7))
    assert state.counts() == {"total": 10, "succeeded": 1, "failed": 2, "running": 2, "pending": 5, "earlier": 0}
    # A task stopped with its manager is pending again, not failed.
    state.feed("r0m1", cut(105, 6))
    assert state.counts()["running"] == 1 and state.counts()["pending"] == 6
    rows = {m["name"]: m for m in state.managers()}
    assert (rows["r0m0"]["finished"], rows["r0m0"]["failed"], rows["r0m0"]["running"]) == (2, 1, 0)
    assert (rows["r0m1"]["finished"], rows["r0m1"]["failed"], rows["r0m1"]["running"]) == (1, 1, 1)
    assert [(f["index"], f["exit_code"], f["missing_outputs"]) for f in state.snapshot()["recent_failures"]] == [(5, 0, True), (1, 3, False)]


def test_a_failed_attempt_run_again_counts_once_and_leaves_the_failures():
    state = LiveState(["r0m0"], try_tasks=3, total=3)
    state.feed("r0m0", start(10, 0) + end(11, 0, rc=1) + start(11.1, 0))
    assert state.counts() == {"total": 3, "succeeded": 0, "failed": 0, "running": 1, "pending": 2, "earlier": 0}
    state.feed("r0m0", end(12, 0))
    assert state.counts()["succeeded"] == 1 and state.counts()["failed"] == 0
    assert state.completion.points()[-1][1:] == (1, 0)
    # Its next round (a reschedule) on another manager: the same rule across managers.
    state.feed("r0m0", start(13, 1) + end(14, 1, rc=137))
    state.feed("r1m0", start(20, 1) + end(21, 1))
    rows = {m["name"]: m for m in state.managers()}
    assert (rows["r0m0"]["started"], rows["r0m0"]["failed"], rows["r1m0"]["finished"]) == (1, 0, 1)
    assert state.counts()["succeeded"] == 2


def test_earlier_tries_successes_count_as_succeeded():
    state = LiveState(["r1m0"], try_tasks=4, total=100)
    state.feed("r1m0", start(1, 3) + end(2, 3))
    assert state.counts() == {"total": 100, "succeeded": 97, "failed": 0, "running": 0, "pending": 3, "earlier": 96}


def test_a_partial_last_line_waits_for_the_next_poll_and_torn_lines_are_skipped():
    state = LiveState(["r0m0"], try_tasks=2, total=2)
    data = start(1, 0) + end(2, 0)
    state.feed("r0m0", data[:-5])
    assert state.offsets["r0m0"] == len(start(1, 0)) and state.counts()["running"] == 1
    state.feed("r0m0", data[state.offsets["r0m0"]:] + b"garbage\n" + b"x y end\n")
    assert state.offsets["r0m0"] == len(data) + len(b"garbage\n") + len(b"x y end\n")
    assert state.counts()["succeeded"] == 1


def test_memory_stays_bounded_whatever_the_swarm_size():
    state = LiveState(["r0m0"], try_tasks=200_000, total=200_000)
    lines = []
    for i in range(200_000):
        t = 1_700_000_000 + i * 0.5  # 28 hours of ends
        lines.append(start(t, i) + end(t + 0.4, i, rc=1 if i % 10 == 0 else 0))
    state.feed("r0m0", b"".join(lines))
    assert len(state.completion.bins) <= MAX_BINS
    assert state.completion.points()[-1][1:] == (200_000, 20_000)
    assert len(state.recent_failures) == RECENT_FAILURES
    assert len(state._failed_ends) == RETRY_WINDOW
    assert state.counts()["succeeded"] == 180_000 and state.counts()["failed"] == 20_000


def test_completion_bins_merge_and_keep_every_end():
    bins = CompletionBins(width=1.0, max_bins=10)
    for t in range(100):
        bins.add(float(t), failed=t % 2 == 0)
    assert len(bins.bins) <= 10 and bins.width == 16.0
    assert bins.points()[-1][1:] == (100, 50)
    assert [p[1] for p in bins.points()] == sorted(p[1] for p in bins.points())


def test_throughput_and_eta_come_from_recent_ends_in_the_hosts_clock():
    state = LiveState(["r0m0"], try_tasks=1000, total=1000)
    t0 = 5_000.0
    state.feed("r0m0", b"".join(start(t0 + i * 0.1, i) + end(t0 + i * 0.1 + 0.05, i) for i in range(600)))  # 10 tasks/s for 60 s
    state.feed("r0m0", start(t0 + 60, 600))
    state.feed_poll(PollResult(now=int(t0 + 60), managers={}, chunks={}))
    rate = state.throughput()
    assert 9 <= rate <= 11
    counts = state.counts()
    assert counts["running"] == 1 and counts["pending"] == 399
    assert state.eta_seconds(counts) == pytest.approx(400 / rate)
    assert LiveState(["r0m0"], 3, 3).throughput() is None


def test_manager_states_shown_to_people():
    def status(state, age=None, job=None):
        return ManagerStatus("r0m0", state, age, job)

    assert display_state(status("dead"), 10) == "lost"
    assert display_state(status("done", job="TIMEOUT"), 10) == "lost"
    assert display_state(status("done", job="COMPLETED"), 10) == "done"
    assert display_state(status("running", age=5), 10) == "running"
    assert display_state(status("running", age=31), 10) == "late"
    assert display_state(status("queued", job="PENDING"), 10) == "queued"
    assert display_state(None, 10) == "unknown"


def poll_result(now: int, chunk: bytes = b"") -> PollResult:
    return PollResult(now=now, managers={"r0m0": ManagerStatus("r0m0", "running", 1, "RUNNING", 3, "4242", "node1")},
                      chunks={"r0m0": chunk})


def test_the_registry_keeps_a_bounded_number_of_swarms():
    registry = LiveRegistry(max_swarms=3)
    for n in range(10):
        registry.refresh(("c", f"/root{n}", 0), lambda: LiveState(["r0m0"], 1, 1), lambda offsets: poll_result(1))
    assert len(registry) == 3
    assert list(registry._entries) == [("c", f"/root{n}", 0) for n in (7, 8, 9)]


def test_viewers_within_the_share_interval_share_one_poll():
    now = [100.0]
    registry = LiveRegistry(share_seconds=2.0, clock=lambda: now[0])
    polls: list[dict] = []
    release = threading.Event()

    def slow_poll(offsets):
        polls.append(dict(offsets))
        release.wait(10)
        return poll_result(1, start(1, 0))

    results = []

    def viewer():
        results.append(registry.refresh("swarm", lambda: LiveState(["r0m0"], 5, 5), slow_poll))

    threads = [threading.Thread(target=viewer) for _ in range(5)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while not polls and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # the other viewers are now waiting on the swarm's lock
    release.set()
    for thread in threads:
        thread.join(10)
    assert len(polls) == 1, "five viewers at once: one poll"
    assert sorted(shared for _, shared in results) == [False, True, True, True, True]
    assert {snapshot["counts"]["running"] for snapshot, _ in results} == {1}
    assert results[0][0]["managers"][0]["job_id"] == "4242"

    now[0] += 1.9
    registry.refresh("swarm", lambda: LiveState(["r0m0"], 5, 5), slow_poll)
    assert len(polls) == 1
    now[0] += 0.2
    snapshot, shared = registry.refresh("swarm", lambda: LiveState(["r0m0"], 5, 5), slow_poll)
    assert len(polls) == 2 and not shared
    assert polls[1] == {"r0m0": len(start(1, 0))}, "the next poll asks only for bytes after the offsets"


def test_a_failed_poll_keeps_the_counts_says_why_and_is_shared_too():
    now = [0.0]
    registry = LiveRegistry(clock=lambda: now[0])
    registry.refresh("s", lambda: LiveState(["r0m0"], 2, 2), lambda offsets: poll_result(1, start(1, 0)))
    calls = []

    def broken(offsets):
        calls.append(1)
        raise OSError("connection reset")

    now[0] += 5
    snapshot, _ = registry.refresh("s", lambda: LiveState(["r0m0"], 2, 2), broken)
    assert snapshot["error"] == "OSError: connection reset" and snapshot["counts"]["running"] == 1
    now[0] += 1
    registry.refresh("s", lambda: LiveState(["r0m0"], 2, 2), broken)
    assert len(calls) == 1
