"""LocustsSwarmTrigger: watches a running swarm from the triggerer, never blocking its event loop.

Each poll is one command (a local subprocess, or one SSH command on a reused asyncssh
connection) returning the managers' states and only the events since the last offsets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_locusts.hooks.locusts import LocustsHook
from airflow_provider_locusts.swarm.engine import POLL_COMMAND, poll_arguments
from airflow_provider_locusts.swarm.layout import SwarmLayout
from airflow_provider_locusts.swarm.progress import SwarmProgress, assess, parse_poll_output, poll_backoff
from airflow_provider_locusts.swarm.render import render

# Connection-level errors worth a reconnect: sshd restarts, dropped links, timeouts.
_TRANSIENT = (OSError, TimeoutError, asyncio.TimeoutError)
try:
    import asyncssh

    _TRANSIENT = (*_TRANSIENT, asyncssh.Error)
except ImportError:  # pragma: no cover - asyncssh comes with the SSH provider
    pass


class LocustsSwarmTrigger(BaseTrigger):
    """Fires when every manager of the round has finished, or some manager is lost.

    :param root: the swarm root as the swarm's host sees it
    :param managers: names of the round's managers
    :param total: tasks in the round
    :param offsets: bytes of each manager's event file already read
    :param ssh_conn_id: SSH connection of the swarm's host; None: this machine
    :param poll_interval: seconds between polls
    :param heartbeat_timeout: seconds without a heartbeat (or without starting) before a manager counts as lost
    :param started_at: epoch seconds when the round was started
    :param max_poll_failures: consecutive failed polls (with backoff) before giving up
    """

    def __init__(
        self,
        root: str,
        managers: list[str],
        total: int,
        offsets: dict[str, int] | None = None,
        ssh_conn_id: str | None = None,
        poll_interval: float = 5.0,
        heartbeat_timeout: float = 120.0,
        started_at: float | None = None,
        max_poll_failures: int = 8,
        counts: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.root = root
        self.managers = list(managers)
        self.total = total
        self.offsets = dict(offsets or {m: 0 for m in managers})
        self.ssh_conn_id = ssh_conn_id
        self.poll_interval = poll_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.started_at = started_at if started_at is not None else time.time()
        self.max_poll_failures = max_poll_failures
        self.counts = dict(counts or {})

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "root": self.root,
                "managers": self.managers,
                "total": self.total,
                "offsets": self.offsets,
                "ssh_conn_id": self.ssh_conn_id,
                "poll_interval": self.poll_interval,
                "heartbeat_timeout": self.heartbeat_timeout,
                "started_at": self.started_at,
                "max_poll_failures": self.max_poll_failures,
                "counts": self.counts,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        layout = SwarmLayout(self.root)
        progress = SwarmProgress(total=self.total, offsets=self.offsets, **self.counts)
        await self._prime_state_lookup()
        executor = LocustsHook(ssh_conn_id=self.ssh_conn_id).async_executor()
        failures = 0
        last_line = None
        try:
            while True:
                try:
                    result = await executor.run_script(
                        POLL_COMMAND, poll_arguments(layout, progress.offsets), timeout=120
                    )
                    result.check("polling the swarm")
                    poll = parse_poll_output(result.stdout)
                except _TRANSIENT as error:
                    failures += 1
                    if failures > self.max_poll_failures:
                        yield TriggerEvent(self._event("error", progress, f"the swarm's host could not be polled {failures} times in a row: {error}"))
                        return
                    delay = poll_backoff(failures)
                    # The broken connection was dropped; the next poll opens a new one.
                    self.log.warning("Poll failed (%d/%d), retrying in %.1f s: %s", failures, self.max_poll_failures, delay, error)
                    await asyncio.sleep(delay)
                    continue
                failures = 0
                for manager, chunk in poll.chunks.items():
                    progress.feed(manager, chunk)
                line = progress.line()
                if line != last_line:
                    self.log.info("Swarm %s: %s", self.root, line)
                    last_line = line
                verdict = assess(poll, self.heartbeat_timeout, time.time() - self.started_at)
                if verdict.finished:
                    status = "lost" if verdict.lost else "finished"
                    yield TriggerEvent(self._event(status, progress, verdict.detail, lost=verdict.lost))
                    return
                await asyncio.sleep(self.poll_interval)
        finally:
            await executor.close()

    def _event(self, status: str, progress: SwarmProgress, message: str, lost: list[str] | None = None) -> dict:
        return {
            "status": status,
            "root": self.root,
            "managers": self.managers,
            "lost": lost or [],
            "message": message,
            "finished": progress.finished,
            "failed": progress.failed,
            "total": self.total,
        }

    async def _prime_state_lookup(self) -> None:
        """Make the first task-state lookup of this triggerer process now, not in on_kill().

        The triggerer answers it from an execution API it builds on first use (~3 s).
        on_kill() must finish within about two of the triggerer's one-second loops: it
        cancels on_kill() again on each, and with Python 3.11's asyncio.wait_for the second
        one abandons it — the swarm is still stopped, but the trigger's log has closed.
        """
        global _STATE_LOOKUP_PRIMED
        if _STATE_LOOKUP_PRIMED or self.task_instance is None:
            return
        _STATE_LOOKUP_PRIMED = True
        await self._task_still_deferred()

    async def _task_still_deferred(self) -> bool:
        """Whether Airflow still holds the task instance DEFERRED.

        Airflow 3.3 also calls on_kill when a trigger moves away from a triggerer that
        stalled past its health threshold (apache/airflow#73454). A user's kill (mark
        failed or success, clear) has already moved the task out of DEFERRED; a move has
        not — and then another triggerer is watching this swarm, which must go on.
        """
        ti = self.task_instance
        if ti is None:
            return False
        try:
            from airflow.sdk.execution_time import task_runner
            from airflow.sdk.execution_time.comms import GetTaskStates

            map_index = getattr(ti, "map_index", -1)
            map_index = -1 if map_index is None else map_index
            response = await task_runner.SUPERVISOR_COMMS.asend(
                GetTaskStates(dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id], map_index=map_index)
            )
            key = ti.task_id if map_index < 0 else f"{ti.task_id}_{map_index}"
            state = response.task_states.get(ti.run_id, {}).get(key)
        except Exception as error:  # no supervisor (tests, older Airflow): treat as a user's kill
            self.log.debug("Could not read the task's state before cancelling: %s", error)
            return False
        return str(getattr(state, "value", state)) == "deferred"

    async def on_kill(self) -> None:
        """The user killed the task (UI/API): stop the managers and their tasks. Not called on triggerer shutdown.

        The triggerer sends its cancel again on every loop while the trigger is still
        running, which cancels on_kill() itself (a state lookup or an SSH round trip
        takes seconds). The work is shielded and awaited through those repeated cancels,
        up to ON_KILL_DEADLINE, so the swarm is stopped — and says so in the trigger's
        log — before the trigger completes and its log closes.
        """
        work = asyncio.ensure_future(self._stop_swarm())
        _STOPPING.add(work)
        work.add_done_callback(_STOPPING.discard)
        deadline = time.monotonic() + ON_KILL_DEADLINE
        while True:
            try:
                await asyncio.shield(work)
                return
            except asyncio.CancelledError:
                if time.monotonic() >= deadline:
                    raise
                # A repeated cancel from the triggerer: keep waiting for the stop to finish.
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()

    async def _stop_swarm(self) -> None:
        if await self._task_still_deferred():
            self.log.warning(
                "Swarm %s: cancelled while its task is still deferred (the trigger moved to another triggerer); leaving it running.",
                self.root,
            )
            return
        executor = LocustsHook(ssh_conn_id=self.ssh_conn_id).async_executor()
        try:
            layout = SwarmLayout(self.root)
            result = await executor.run_script(render("cancel.sh.j2"), [layout.exec_dir, *self.managers], timeout=60)
            self.log.info("Cancelled swarm %s (exit code %s)", self.root, result.returncode)
        finally:
            await executor.close()


# Whether this process has made its first task-state lookup (see _prime_state_lookup).
_STATE_LOOKUP_PRIMED = False

# Longest on_kill() waits through repeated cancels (the triggerer's own on_kill_timeout
# defaults to 30 s). Past it, the stop goes on in the background, unlogged.
ON_KILL_DEADLINE = 30.0

# Swarm-stopping tasks still running after their on_kill() was cancelled: kept referenced
# until they finish.
_STOPPING: set[asyncio.Future] = set()
