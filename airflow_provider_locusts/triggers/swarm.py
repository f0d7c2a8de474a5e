"""LocustsSwarmTrigger: watches a running swarm from the triggerer, never blocking its event loop.

Each poll is one command (a local subprocess, or one SSH command on a reused asyncssh
connection) that waits on the host, up to a poll interval, for the round to end, then
returns the managers' states and only the events since the last offsets. Over SSH, the
polls of every trigger of a connection travel together as one command (hooks/ssh_shell.py).
The watching itself (SwarmWatch) is the same step the worker runs when not deferrable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_locusts.hooks.locusts import TRANSIENT_ERRORS, LocustsAsyncHook
from airflow_provider_locusts.swarm.handle import SwarmHandle
from airflow_provider_locusts.swarm.watch import POLL_FAILED, SwarmWatch

# Longest a single poll may take on the host before it counts as a failed poll.
POLL_TIMEOUT = 120.0


class LocustsSwarmTrigger(BaseTrigger):
    """Fires when every manager of the round has finished, some manager is lost, or the
    swarm cannot be watched any more (an "error" event saying why). Never raises.

    :param handle: the swarm's handle (SwarmHandle.to_dict()): root, connection, round, managers
    :param poll_interval: seconds between polls
    :param heartbeat_timeout: seconds without a heartbeat (or without starting) before a manager counts as lost
    :param max_poll_failures: consecutive failed polls (with backoff) before giving up
    :param offsets: bytes of each manager's event file already read
    :param counts: progress counts matching `offsets`
    """

    def __init__(
        self,
        handle: dict[str, Any],
        poll_interval: float = 5.0,
        heartbeat_timeout: float = 120.0,
        max_poll_failures: int = 8,
        offsets: dict[str, int] | None = None,
        counts: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.handle = SwarmHandle.from_dict(handle)
        self.poll_interval = poll_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.max_poll_failures = max_poll_failures
        self.offsets = dict(offsets or {})
        self.counts = dict(counts or {})

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "handle": self.handle.to_dict(),
                "poll_interval": self.poll_interval,
                "heartbeat_timeout": self.heartbeat_timeout,
                "max_poll_failures": self.max_poll_failures,
                "offsets": self.offsets,
                "counts": self.counts,
            },
        )

    def _watch(self) -> SwarmWatch:
        return SwarmWatch(
            self.handle,
            self.poll_interval,
            self.heartbeat_timeout,
            self.max_poll_failures,
            offsets=self.offsets or None,
            counts=self.counts or None,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        watch = self._watch()
        try:
            event = await self._run_watch(watch)
        except Exception as error:  # the trigger never dies with an exception: the task decides
            self.log.exception("Watching swarm %s failed", self.handle.root)
            event = watch._end("error", f"watching the swarm failed: {type(error).__name__}: {error}", reason=POLL_FAILED).event
        yield TriggerEvent(event)

    async def _run_watch(self, watch: SwarmWatch) -> dict:
        step = watch.precheck()
        if step is not None:
            return step.event
        await self._prime_state_lookup()
        hook = LocustsAsyncHook(ssh_conn_id=self.handle.ssh_conn_id)
        try:
            while True:
                try:
                    step = watch.observe_poll(await hook.poll_wait(watch.request(), watch.wait, timeout=POLL_TIMEOUT))
                except TRANSIENT_ERRORS as error:
                    # The broken connection was dropped; the next poll opens a new one.
                    step = watch.failed(error)
                if step.info:
                    self.log.info("Swarm %s: %s", self.handle.swarm_id, step.info)
                if step.warning:
                    self.log.warning("Swarm %s: %s", self.handle.swarm_id, step.warning)
                if step.event is not None:
                    return step.event
                if step.delay > 0:
                    await asyncio.sleep(step.delay)
        finally:
            await hook.close()

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
                self.handle.root,
            )
            return
        hook = LocustsAsyncHook(ssh_conn_id=self.handle.ssh_conn_id)
        try:
            report = await hook.cancel(self.handle, list(self.handle.managers))
            self.log.info("Cancelled swarm %s: %s", self.handle.root, report.line())
        except Exception as error:
            self.log.error("Cancelling swarm %s failed: %s", self.handle.root, error)
        finally:
            await hook.close()


# Whether this process has made its first task-state lookup (see _prime_state_lookup).
_STATE_LOOKUP_PRIMED = False

# Longest on_kill() waits through repeated cancels (the triggerer's own on_kill_timeout
# defaults to 30 s). Past it, the stop goes on in the background, unlogged.
ON_KILL_DEADLINE = 30.0

# Swarm-stopping tasks still running after their on_kill() was cancelled: kept referenced
# until they finish.
_STOPPING: set[asyncio.Future] = set()
