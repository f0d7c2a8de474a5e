"""Waiting polls of many swarms on one host, sent together: one command, one SSH channel.

Each trigger's poll waits on the host up to its poll interval for its round to end
(templates/poll_wait.sh). Fifty triggers each holding a channel for that long would queue
behind sshd's cap on channels per connection; instead the polls asked for within a short
window travel as one command, which returns as soon as any of its swarms may be over (or
when the shortest wait is up). At most MAX_IN_FLIGHT such commands run at once, so a poll
asked for while one is out is not held back for a whole interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from airflow_provider_locusts.swarm.host_commands import PollRequest, WaitedPoll, parse_poll_wait, poll_wait_command
from airflow_provider_locusts.swarm.shell import CommandResult

# Seconds a batch stays open for the polls asked for together (triggers resumed by one answer).
GATHER_WINDOW = 0.02
# Batched poll commands running at once on one connection (each holds one channel).
MAX_IN_FLIGHT = 2

Runner = Callable[[str, list[str], float], Awaitable[CommandResult]]


@dataclass
class _Asked:
    request: PollRequest
    wait: float
    timeout: float
    answer: asyncio.Future


class PollBatcher:
    """Batches the waiting polls of one connection (one per event loop and connection id)."""

    def __init__(self, run: Runner):
        self._run = run
        self._queue: list[_Asked] = []
        self._in_flight = 0
        self._wakeup: asyncio.Event | None = None
        self._sender: asyncio.Task | None = None

    async def poll(self, request: PollRequest, wait: float, timeout: float) -> WaitedPoll:
        answer = asyncio.get_running_loop().create_future()
        self._queue.append(_Asked(request, wait, timeout, answer))
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        self._wakeup.set()
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._send_batches())
        return await answer

    async def _send_batches(self) -> None:
        """Send what is queued, in batches, while there is anything to send."""
        running: set[asyncio.Task] = set()
        while self._queue or running:
            if self._queue and self._in_flight < MAX_IN_FLIGHT:
                await asyncio.sleep(GATHER_WINDOW)
                batch = [asked for asked in self._queue if not asked.answer.done()]
                self._queue.clear()
                if batch:
                    self._in_flight += 1
                    task = asyncio.ensure_future(self._send(batch))
                    running.add(task)
                    task.add_done_callback(running.discard)
                continue
            # Wait for a new poll or for a batch to come back, whichever is first.
            self._wakeup.clear()
            waiters = [asyncio.ensure_future(self._wakeup.wait()), *running]
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if waiters[0] not in done:
                waiters[0].cancel()

    async def _send(self, batch: list[_Asked]) -> None:
        try:
            wait = min(asked.wait for asked in batch)
            script, args = poll_wait_command([asked.request for asked in batch], wait)
            try:
                result = await self._run(script, args, max(asked.timeout for asked in batch) + wait)
                polls = parse_poll_wait(result, len(batch))
            except Exception as error:  # every poll of the batch failed the same way
                for asked in batch:
                    if not asked.answer.done():
                        asked.answer.set_exception(error)
                return
            for asked, polled in zip(batch, polls):
                if not asked.answer.done():
                    asked.answer.set_result(polled)
        finally:
            self._in_flight -= 1
