"""Watching one round of a swarm: one step, shared by the trigger (async) and the worker (blocking).

The caller runs `command()` on the swarm's host however it can and hands what came back
to `observe()` (or the connection error to `failed()`); each step says how long to wait
before the next poll, what to log, and — once the round is over — the event to end with.
Every outcome is an event: the round finished, some manager was lost, or the watch lost
track of the swarm (with why). Nothing escapes as an exception.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from airflow_provider_locusts.swarm.errors import SwarmExecutionError
from airflow_provider_locusts.swarm.handle import SwarmHandle
from airflow_provider_locusts.swarm.host_commands import PollRequest, WaitedPoll, parse_poll_wait, poll_wait_command
from airflow_provider_locusts.swarm.layout import SwarmLayout
from airflow_provider_locusts.swarm.progress import SwarmProgress, assess, parse_poll_output, poll_backoff
from airflow_provider_locusts.swarm.shell import EXIT_NO_SWARM_ROOT, CommandResult

# Why a watch ended in error (event["reason"]).
NOT_VISIBLE = "not_visible"  # the root is not where the watch runs (local mode, several hosts)
UNREACHABLE = "unreachable"  # the host could not be polled max_poll_failures times in a row
POLL_FAILED = "poll_failed"  # the host answered, but the poll failed or made no sense

LOCAL_MODE_ADVICE = (
    "Local mode (no ssh_conn_id) only works when the worker and the triggerer run on one machine: "
    "give an SSH connection (ssh_conn_id, even to the worker's own host) so any machine can reach the swarm, "
    "or set deferrable=False so the worker that started it watches it."
)


@dataclass(frozen=True)
class WatchStep:
    delay: float = 0.0  # seconds before the next poll
    event: dict | None = None  # the round is over (or the watch gave up): end with this
    info: str | None = None  # a progress line, when it changed
    warning: str | None = None


class SwarmWatch:
    """The state of one watch: the round's handle, event offsets and counts, failed polls."""

    def __init__(
        self,
        handle: SwarmHandle,
        poll_interval: float,
        heartbeat_timeout: float,
        max_poll_failures: int,
        offsets: dict[str, int] | None = None,
        counts: dict[str, int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        hostname: str | None = None,
    ):
        self.handle = handle
        self.poll_interval = poll_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.max_poll_failures = max_poll_failures
        self.progress = SwarmProgress(
            total=handle.round_tasks, offsets=dict(offsets or {m: 0 for m in handle.managers}), **(counts or {})
        )
        self.clock = clock
        self.began = clock()  # this watcher's own clock: never compared with another machine's
        self.hostname = hostname or socket.gethostname()
        self.failures = 0
        self._last_line: str | None = None

    # --- the parts a trigger serializes ---------------------------------------------------
    @property
    def offsets(self) -> dict[str, int]:
        return dict(self.progress.offsets)

    @property
    def counts(self) -> dict[str, int]:
        p = self.progress
        return {"started": p.started, "finished": p.finished, "failed": p.failed}

    # --- steps ------------------------------------------------------------------------------
    def precheck(self) -> WatchStep | None:
        """Before the first poll: a local-mode swarm started directly on another machine
        cannot be watched from here (its processes and files are there)."""
        h = self.handle
        if h.local and h.scheduler == "direct" and h.origin_host and h.origin_host != self.hostname:
            return self._end(
                "error",
                f"the swarm runs on host {h.origin_host} (in {h.root}) but is watched from host {self.hostname}. "
                + LOCAL_MODE_ADVICE,
                reason=NOT_VISIBLE,
            )
        return None

    @property
    def wait(self) -> float:
        """How long a poll may wait on the host for the round to end: one poll interval."""
        return self.poll_interval

    def request(self) -> PollRequest:
        return PollRequest.of(SwarmLayout(self.handle.root), self.progress.offsets)

    def command(self) -> tuple[str, list[str]]:
        """This swarm's waiting poll as one command (see templates/poll_wait.sh)."""
        return poll_wait_command([self.request()], self.wait)

    def observe(self, result: CommandResult) -> WatchStep:
        """What `command()` brought back."""
        try:
            (polled,) = parse_poll_wait(result, 1)
        except (SwarmExecutionError, ValueError, IndexError) as error:
            return self._end("error", f"the swarm's poll failed: {error}", reason=POLL_FAILED)
        return self.observe_poll(polled)

    def observe_poll(self, polled: WaitedPoll) -> WatchStep:
        """One swarm's part of a waiting poll. The host waited up to a poll interval already:
        poll again at once, unless it stopped early for this swarm and the round is not over
        (a SLURM job still completing): then a second later, not in a tight loop."""
        step = self._observe(polled.result)
        if step.event is not None:
            return step
        if polled.worth_reporting:
            delay = min(1.0, self.poll_interval)
        else:
            delay = max(0.0, self.poll_interval - polled.waited)
        return WatchStep(delay=delay, info=step.info)

    def _observe(self, result: CommandResult) -> WatchStep:
        if result.returncode == EXIT_NO_SWARM_ROOT:
            detail = result.stderr.decode(errors="replace").strip()
            advice = f" {LOCAL_MODE_ADVICE}" if self.handle.local else ""
            return self._end("error", f"{detail}.{advice}", reason=NOT_VISIBLE)
        try:
            poll = parse_poll_output(result.check("polling the swarm").stdout)
        except (SwarmExecutionError, ValueError, IndexError) as error:
            return self._end("error", f"the swarm's poll failed: {error}", reason=POLL_FAILED)
        self.failures = 0
        for manager, chunk in poll.chunks.items():
            self.progress.feed(manager, chunk)
        line = self.progress.line()
        info = line if line != self._last_line else None
        self._last_line = line
        verdict = assess(poll, self.heartbeat_timeout, self.clock() - self.began)
        if verdict.finished:
            return self._end("lost" if verdict.lost else "finished", verdict.detail, lost=verdict.lost, info=info)
        return WatchStep(delay=self.poll_interval, info=info)

    def failed(self, error: BaseException) -> WatchStep:
        """A poll that could not reach the host: back off, or give up past max_poll_failures."""
        self.failures += 1
        if self.failures > self.max_poll_failures:
            return self._end(
                "error",
                f"the swarm's host could not be polled {self.failures} times in a row: {type(error).__name__}: {error}",
                reason=UNREACHABLE,
            )
        delay = poll_backoff(self.failures)
        return WatchStep(
            delay=delay,
            warning=f"Poll failed ({self.failures}/{self.max_poll_failures}), retrying in {delay:.1f} s: {error}",
        )

    def _end(self, status: str, message: str, lost: list[str] | None = None, reason: str | None = None, info: str | None = None) -> WatchStep:
        event = {
            "status": status,
            "handle": self.handle.to_dict(),
            "lost": lost or [],
            "message": message,
            "reason": reason,
            "finished": self.progress.finished,
            "failed": self.progress.failed,
            "total": self.progress.total,
        }
        return WatchStep(event=event, info=info)
