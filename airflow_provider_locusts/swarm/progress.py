"""Reading the managers' cache files: poll output → progress counts; event logs → task outcomes."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from airflow_provider_locusts.swarm.schedulers import ACTIVE_JOB_STATES, ENDED_EARLY_JOB_STATES

LIVE_STATES = frozenset({"running", "starting", "queued"})
# Job states that end a job early (its manager's unfinished tasks were cut off, even when the
# manager itself got to write its done file), and of a job not ended yet: each scheduler's.
FAILED_JOB_STATES = ENDED_EARLY_JOB_STATES


@dataclass(frozen=True)
class ManagerStatus:
    name: str
    state: str  # done | running | starting | queued | dead
    heartbeat_age: int | None
    job_state: str | None  # scheduler's state, None when started directly
    since_launch: int | None = None  # seconds since it was launched or submitted (host clock)
    job_id: str | None = None  # its scheduler job, when submitted
    host: str | None = None  # where it runs, once started


@dataclass(frozen=True)
class PollResult:
    now: int
    managers: dict[str, ManagerStatus]
    chunks: dict[str, bytes]


def parse_poll_output(data: bytes) -> PollResult:
    """Parse what poll.sh printed (headers, each followed by exactly the announced bytes)."""
    pos = 0
    now = 0
    managers: dict[str, ManagerStatus] = {}
    chunks: dict[str, bytes] = {}
    while pos < len(data):
        end = data.index(b"\n", pos)
        line = data[pos:end]
        header = line.decode(errors="replace").split() or [""]
        pos = end + 1
        if header[0] == "@now":
            now = int(header[1])
        elif header[0] == "@manager":
            # Older roots' poll.sh print fewer fields; the byte count always comes last.
            name, state, age, job = header[1:5]
            nbytes = header[-1]
            since, job_id, host = (header[5:-1] + ["-", "-", "-"])[:3]
            n = int(nbytes)
            chunks[name] = data[pos : pos + n]
            pos += n
            managers[name] = ManagerStatus(
                name=name,
                state=state,
                heartbeat_age=None if age == "-" else int(age),
                job_state=None if job == "-" else job,
                since_launch=None if since == "-" else int(since),
                job_id=None if job_id == "-" else job_id,
                host=None if host == "-" else host,
            )
        else:
            raise ValueError(f"unexpected line in poll output: {line!r}")
    return PollResult(now=now, managers=managers, chunks=chunks)


@dataclass
class SwarmProgress:
    """Counts kept up to date from new event bytes; small enough to serialize with a trigger."""

    total: int
    offsets: dict[str, int]
    started: int = 0
    finished: int = 0
    failed: int = 0

    def feed(self, manager: str, chunk: bytes) -> None:
        """Count the complete lines of chunk; a trailing partial line is read again next poll."""
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offsets[manager] = self.offsets.get(manager, 0) + len(complete)
        for line in complete.splitlines():
            parts = line.split()
            if len(parts) < 3:
                continue
            if parts[2] == b"start":
                self.started += 1
            elif parts[2] == b"cut":
                self.started -= 1  # no longer running, not finished either
            elif parts[2] == b"end":
                self.finished += 1
                if parts[3] != b"0" or (len(parts) > 5 and parts[5] != b"0"):
                    self.failed += 1

    @property
    def running(self) -> int:
        return max(self.started - self.finished, 0)

    def line(self) -> str:
        return f"{self.finished}/{self.total} done, {self.failed} failed, {self.running} running"


@dataclass
class TaskOutcome:
    """What the event logs say about one task."""

    attempts: int = 0
    exit_code: int | None = None
    missing_outputs: bool = False
    timed_out: int = 0  # seconds after which the last attempt was stopped (0: it was not)
    host: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    manager: str | None = None  # the manager that recorded its last event

    @property
    def finished(self) -> bool:
        return self.exit_code is not None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.missing_outputs

    def cut_off_by(self, lost_managers: Iterable[str]) -> bool:
        """Did this task end because its manager went down? Unfinished, or killed by a signal
        (exit code above 128) in a manager that was lost: a job's end (TIMEOUT, NODE_FAIL…)
        signals the tasks too, and they may report before the manager is seen to go."""
        if not self.finished:
            return True
        return self.exit_code > 128 and self.manager in set(lost_managers)

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return round(self.ended_at - self.started_at, 3)


@dataclass
class EventFold:
    """Folds event lines (any number of managers and rounds) into one outcome per task index."""

    outcomes: dict[int, TaskOutcome] = field(default_factory=dict)

    def feed_lines(self, lines: Iterable[bytes], manager: str | None = None) -> None:
        # Once per event, two per task: no outcome made for nothing, each host's name decoded once.
        outcomes = self.outcomes
        hosts: dict[bytes, str] = {}
        for line in lines:
            parts = line.split()
            if len(parts) < 5:
                continue  # a torn line from a killed writer: ignore
            try:
                when, index, kind = float(parts[0]), int(parts[1]), parts[2]
            except ValueError:
                continue
            outcome = outcomes.get(index)
            if outcome is None:
                outcome = outcomes[index] = TaskOutcome()
            outcome.manager = manager
            host = hosts.get(parts[4])
            if host is None:
                host = hosts[parts[4]] = parts[4].decode(errors="replace")
            if kind == b"start":
                # A new attempt: forget what an earlier attempt ended with.
                outcome.attempts += 1
                outcome.exit_code = None
                outcome.missing_outputs = False
                outcome.timed_out = 0
                outcome.started_at, outcome.ended_at, outcome.host = when, None, host
            elif kind == b"end":
                outcome.exit_code = int(parts[3])
                outcome.missing_outputs = len(parts) > 5 and parts[5] != b"0"
                outcome.timed_out = int(parts[6]) if len(parts) > 6 and parts[6].isdigit() else 0
                outcome.ended_at, outcome.host = when, host
            elif kind == b"cut":
                # Stopped with its manager: neither succeeded nor failed, still unfinished.
                outcome.exit_code = None
                outcome.ended_at, outcome.host = None, host

    def feed_bytes(self, data: bytes, manager: str | None = None) -> None:
        self.feed_lines(data.splitlines(), manager)


@dataclass(frozen=True)
class Verdict:
    """Where a round stands after a poll."""

    finished: bool
    lost: list[str]  # managers that died (or whose job ended) before finishing
    detail: str


def assess(poll: PollResult, heartbeat_timeout: float, waited: float) -> Verdict:
    """Finished when every manager is done or lost. A manager is lost when its job ended
    without finishing, its process is gone, its heartbeat is older than heartbeat_timeout,
    or it never started within heartbeat_timeout of its launch (queued jobs may wait as long
    as their scheduler says). Ages come from the swarm host's clock; `waited` (the watcher's own
    clock since it began watching) stands in for a launch age the host cannot tell."""
    lost = []
    for status in poll.managers.values():
        if status.state == "dead" or (status.state == "done" and status.job_state in FAILED_JOB_STATES):
            lost.append(status.name)
        elif status.state == "running" and status.heartbeat_age is not None and status.heartbeat_age > heartbeat_timeout:
            lost.append(status.name)
        elif status.state == "starting" and status.job_state is None:
            since = status.since_launch if status.since_launch is not None else waited
            if since > heartbeat_timeout:
                lost.append(status.name)
    # A done manager whose job is still active waits for the job's final state: a job cut
    # short (SLURM's TIMEOUT, CANCELLED…, OAR's Error) can let its manager write "done" just before it ends.
    unfinished = [
        s
        for s in poll.managers.values()
        if s.name not in lost and (s.state != "done" or s.job_state in ACTIVE_JOB_STATES)
    ]
    details = [f"{s.name}: {s.state}" + (f" (job {s.job_state})" if s.job_state else "") for s in poll.managers.values() if s.name in lost]
    return Verdict(finished=not unfinished, lost=lost, detail="; ".join(details))


def poll_backoff(failures: int) -> float:
    """Seconds before the next poll after `failures` failed ones in a row: 1, 2, 4 … capped at
    60, plus up to half again at random so many watchers do not retry in lockstep."""
    base = min(2 ** (failures - 1), 60)
    return base + random.uniform(0, base / 2)
