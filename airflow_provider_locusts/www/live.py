"""What the Swarm view knows about a running swarm, kept in the api-server between refreshes.

Each swarm (connection, root, round) has one LiveState, fed like the trigger's progress: one
poll command returns the managers' states and only the event bytes after the offsets held
here. A state's size does not grow with the swarm: counters per manager, a completion
histogram of at most MAX_BINS time bins (bins merge two by two as the swarm runs on), the
last RECENT_FAILURES failures, and a window of the last RETRY_WINDOW failed indexes (to see
a failed attempt that its manager runs again). At most MAX_SWARMS states are kept (least
recently used first out).

Polls are shared: a refresh within SHARE_SECONDS of the last poll of that swarm gets the
same result, and viewers refreshing at once wait for the one poll in flight (a lock per
swarm), so the swarm's host sees at most one poll per SHARE_SECONDS from this api-server,
however many people watch.

Airflow-free: the caller hands in the poll (a function of the offsets).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from airflow_provider_locusts.swarm.progress import FAILED_JOB_STATES, ManagerStatus, PollResult

SHARE_SECONDS = 2.0
MAX_SWARMS = 32
MAX_BINS = 240
RECENT_FAILURES = 50
RETRY_WINDOW = 4096
LOCK_TIMEOUT = 150.0  # a refresh waits at most this long for another viewer's poll
RATE_WINDOW = 60.0  # seconds of recent ends the throughput is measured over (at least)


class BusyError(RuntimeError):
    """Another refresh of this swarm holds its lock for longer than LOCK_TIMEOUT."""


@dataclass
class ManagerTally:
    started: int = 0  # tasks started and not cut off (a retried task counts once)
    finished: int = 0
    failed: int = 0
    status: ManagerStatus | None = None

    @property
    def running(self) -> int:
        return max(self.started - self.finished, 0)


class CompletionBins:
    """Ends per time bin, failed ends apart: the completion curve in bounded memory. When the
    swarm's span needs more than MAX_BINS bins, the bin width doubles and neighbours merge."""

    def __init__(self, width: float = 1.0, max_bins: int = MAX_BINS):
        self.width = width
        self.max_bins = max_bins
        self.bins: dict[int, list[int]] = {}  # bin → [ends, failed ends]

    def add(self, when: float, failed: bool, delta: int = 1) -> None:
        key = int(when // self.width)
        cell = self.bins.setdefault(key, [0, 0])
        cell[0] += delta
        if failed:
            cell[1] += delta
        while self.bins and max(self.bins) - min(self.bins) + 1 > self.max_bins:
            self._merge()

    def _merge(self) -> None:
        self.width *= 2
        merged: dict[int, list[int]] = {}
        for key, (ends, failed) in self.bins.items():
            cell = merged.setdefault(key // 2, [0, 0])
            cell[0] += ends
            cell[1] += failed
        self.bins = merged

    def points(self) -> list[tuple[float, int, int]]:
        """(end of bin, ends so far, failed ends so far), in time order."""
        points, ends, failed = [], 0, 0
        for key in sorted(self.bins):
            ends += self.bins[key][0]
            failed += self.bins[key][1]
            points.append(((key + 1) * self.width, ends, failed))
        return points

    def ends_since(self, since: float) -> tuple[int, float]:
        """Ends from the bin holding `since` on, and the time that bin starts."""
        first = int(since // self.width)
        count = sum(cell[0] for key, cell in self.bins.items() if key >= first)
        return count, first * self.width


class LiveState:
    """One swarm round's progress, from its managers' events.

    :param managers: the managers whose events count (the rounds of the current try)
    :param try_tasks: tasks the current try runs (its first round's); the swarm's other
        tasks had succeeded in earlier tries
    :param total: tasks in the whole swarm
    """

    def __init__(self, managers: list[str], try_tasks: int, total: int, heartbeat_interval: float | None = None):
        self.try_tasks = try_tasks
        self.total = max(total, try_tasks)
        self.heartbeat_interval = heartbeat_interval
        self.offsets: dict[str, int] = {m: 0 for m in managers}
        self.tallies: dict[str, ManagerTally] = {m: ManagerTally() for m in managers}
        self.completion = CompletionBins()
        self.recent_failures: deque[dict] = deque(maxlen=RECENT_FAILURES)
        self._failed_ends: OrderedDict[int, tuple[str, float]] = OrderedDict()  # index → (manager, end time)
        self.first_start: float | None = None
        self.host_now: int | None = None
        self.caught_up = True  # False while a poll's chunk hit the poll's byte cap
        self.polls = 0
        self.error: str | None = None

    # --- feeding -------------------------------------------------------------------------
    def feed_poll(self, poll: PollResult, max_chunk: int | None = None) -> None:
        self.host_now = poll.now
        self.caught_up = True
        for name, status in poll.managers.items():
            self.tallies.setdefault(name, ManagerTally()).status = status
        for name, chunk in poll.chunks.items():
            self.feed(name, chunk)
            if max_chunk is not None and len(chunk) >= max_chunk:
                self.caught_up = False
        self.polls += 1
        self.error = None

    def feed(self, manager: str, chunk: bytes) -> None:
        """Count the complete lines of `chunk`; a partial last line is read again next poll."""
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offsets[manager] = self.offsets.get(manager, 0) + len(complete)
        tally = self.tallies.setdefault(manager, ManagerTally())
        for line in complete.splitlines():
            parts = line.split()
            if len(parts) < 5:
                continue  # a torn line from a killed writer
            try:
                when, index = float(parts[0]), int(parts[1])
            except ValueError:
                continue
            kind = parts[2]
            if kind == b"start":
                self._started(tally, manager, index, when)
            elif kind == b"end":
                self._ended(tally, manager, index, when, parts)
            elif kind == b"cut":
                tally.started -= 1  # stopped with its manager: not running, not finished

    def _started(self, tally: ManagerTally, manager: str, index: int, when: float) -> None:
        if self.first_start is None or when < self.first_start:
            self.first_start = when
        earlier = self._failed_ends.pop(index, None)
        if earlier is not None:
            # Another attempt of a task whose last attempt failed: it is running again.
            old_manager, ended = earlier
            old = self.tallies[old_manager]
            old.started -= 1
            old.finished -= 1
            old.failed -= 1
            self.completion.add(ended, True, delta=-1)
        tally.started += 1

    def _ended(self, tally: ManagerTally, manager: str, index: int, when: float, parts: list[bytes]) -> None:
        try:
            rc = int(parts[3])
        except ValueError:
            rc = -1
        missing = len(parts) > 5 and parts[5] != b"0"
        failed = rc != 0 or missing
        tally.finished += 1
        self.completion.add(when, failed)
        if failed:
            tally.failed += 1
            self._failed_ends[index] = (manager, when)
            if len(self._failed_ends) > RETRY_WINDOW:
                self._failed_ends.popitem(last=False)
            host = parts[4].decode(errors="replace")
            self.recent_failures.append(
                {"index": index, "exit_code": rc, "missing_outputs": missing, "host": host, "manager": manager, "at": when}
            )

    # --- reading -------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        started = sum(t.started for t in self.tallies.values())
        finished = sum(t.finished for t in self.tallies.values())
        failed = sum(t.failed for t in self.tallies.values())
        earlier = self.total - self.try_tasks
        return {
            "total": self.total,
            "succeeded": earlier + finished - failed,
            "failed": failed,
            "running": max(started - finished, 0),
            "pending": max(self.try_tasks - started, 0),
            "earlier": earlier,
        }

    def throughput(self) -> float | None:
        """Tasks ended per second over the last RATE_WINDOW seconds (or more, when the bins
        are wider), in the swarm host's clock; None before the first end."""
        if self.host_now is None or self.first_start is None:
            return None
        window = max(RATE_WINDOW, 4 * self.completion.width)
        ends, start = self.completion.ends_since(max(self.host_now - window, self.first_start))
        span = self.host_now - start
        if span <= 0:
            return None
        return ends / span

    def eta_seconds(self, counts: dict[str, int]) -> float | None:
        left = counts["running"] + counts["pending"]
        if left == 0:
            return 0.0
        rate = self.throughput()
        return left / rate if rate else None

    def managers(self) -> list[dict]:
        rows = []
        for name, tally in self.tallies.items():
            status = tally.status
            rows.append({
                "name": name,
                "state": display_state(status, self.heartbeat_interval),
                "raw_state": status.state if status else None,
                "job_id": status.job_id if status else None,
                "job_state": status.job_state if status else None,
                "host": status.host if status else None,
                "heartbeat_age": status.heartbeat_age if status else None,
                "started": tally.started,
                "finished": tally.finished,
                "failed": tally.failed,
                "running": tally.running,
            })
        return rows

    def snapshot(self) -> dict:
        counts = self.counts()
        return {
            "counts": counts,
            "throughput": self.throughput(),
            "eta_seconds": self.eta_seconds(counts),
            "managers": self.managers(),
            "recent_failures": list(reversed(self.recent_failures)),
            "host_now": self.host_now,
            "first_start": self.first_start,
            "caught_up": self.caught_up,
            "polls": self.polls,
            "error": self.error,
            "completion": self.completion.points(),
        }


def display_state(status: ManagerStatus | None, heartbeat_interval: float | None) -> str:
    """queued | starting | running | late (no heartbeat for a while) | done | lost."""
    if status is None:
        return "unknown"
    if status.state == "dead" or (status.state == "done" and status.job_state in FAILED_JOB_STATES):
        return "lost"
    if status.state == "running" and status.heartbeat_age is not None:
        if status.heartbeat_age > max(3 * (heartbeat_interval or 10), 30):
            return "late"
    return status.state


@dataclass
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    state: LiveState | None = None
    polled_at: float | None = None  # monotonic time of the last poll (or failed poll)


class LiveRegistry:
    """The LiveStates of the swarms being watched: at most `max_swarms`, least recently used
    dropped first; one poll per swarm per `share_seconds` at most."""

    def __init__(self, max_swarms: int = MAX_SWARMS, share_seconds: float = SHARE_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.max_swarms = max_swarms
        self.share_seconds = share_seconds
        self.clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def _entry(self, key: Hashable) -> _Entry:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
                while len(self._entries) > self.max_swarms:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(key)
            return entry

    def refresh(
        self,
        key: Hashable,
        create: Callable[[], LiveState],
        poll: Callable[[dict[str, int]], PollResult],
        max_chunk: int | None = None,
    ) -> tuple[dict, bool]:
        """A snapshot of the swarm's state (LiveState.snapshot), polled now unless a poll of it
        ended less than share_seconds ago (then shared: the second value is True). `create`
        makes the state on first use (it may read the swarm's ledger); `poll(offsets)` runs
        one poll. A poll that fails leaves the counts as they were, with `error` set (shared
        like a result); an error of `create` is raised."""
        entry = self._entry(key)
        if not entry.lock.acquire(timeout=LOCK_TIMEOUT):
            raise BusyError("another refresh of this swarm is taking too long")
        try:
            if entry.state is not None and entry.polled_at is not None and self.clock() - entry.polled_at < self.share_seconds:
                return entry.state.snapshot(), True
            if entry.state is None:
                entry.state = create()
            try:
                result = poll(dict(entry.state.offsets))
            except Exception as error:  # noqa: BLE001 - shown to the viewer; the next refresh tries again
                entry.state.error = f"{type(error).__name__}: {error}"
            else:
                entry.state.feed_poll(result, max_chunk)
            entry.polled_at = self.clock()
            return entry.state.snapshot(), False
        finally:
            entry.lock.release()
