"""Shared fixtures: run one round of a swarm through the real bash manager, and stop
every manager a test started (by the pid the manager recorded) when the test ends."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from airflow_provider_locusts.swarm.progress import PollResult, SwarmProgress, Verdict, assess


@dataclass
class RoundRun:
    verdict: Verdict
    progress: SwarmProgress
    last_poll: PollResult
    seconds: float


@pytest.fixture
def run_swarm_round():
    """`run(engine, round_, timeout=60)`: start the round, poll (bounded) until assess() says
    finished, return a RoundRun. Managers started here are cancelled at teardown."""
    started = []

    def run(engine, round_, timeout: float = 60.0, heartbeat_timeout: float = 30.0) -> RoundRun:
        started.append(engine)
        engine.start(round_)
        progress = SwarmProgress(total=round_.task_count, offsets={m: 0 for m in round_.managers})
        t0 = time.monotonic()
        while True:
            poll = engine.poll(dict(progress.offsets))
            for manager, chunk in poll.chunks.items():
                progress.feed(manager, chunk)
            waited = time.monotonic() - t0
            verdict = assess(poll, heartbeat_timeout, waited)
            if verdict.finished:
                return RoundRun(verdict, progress, poll, waited)
            if waited > timeout:
                raise AssertionError(f"round {round_.number} not finished after {timeout}s: {progress.line()}")
            time.sleep(0.05)

    run.started = started
    yield run
    for engine in started:
        try:
            engine.cancel()  # cancel.sh signals only pids recorded in exec/pid_<manager>, if still that manager
        except Exception:  # noqa: BLE001 - teardown must not hide the test's own failure
            pass
