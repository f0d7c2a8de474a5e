"""Shared fixtures: run one round of a swarm through the real bash manager, and stop
every manager a test started (by the pid the manager recorded) when the test ends."""

from __future__ import annotations

import os
import time
import uuid
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


class StandInTI:
    """Stand-in for the task instance in an operator's context.

    Used ONLY by tests that call operator.execute() / execute_complete() / on_kill()
    directly (cancelling a deferred swarm, start-up errors, each trigger event): a live task
    instance cannot be had outside a DAG run. It carries what the operator reads (dag_id,
    task_id, run_id, map_index) and records xcom_push calls. Everything else is real.
    """

    def __init__(self, dag_id: str, task_id: str = "swarm", run_id: str | None = None, map_index: int = -1):
        self.dag_id = dag_id
        self.task_id = task_id
        self.run_id = run_id or f"manual__{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.map_index = map_index
        self.xcoms: dict[str, object] = {}

    def xcom_push(self, key: str, value) -> None:
        self.xcoms[key] = value

    def xcom_pull(self, task_ids=None, key: str = "return_value", **_):
        return self.xcoms.get(key)


@pytest.fixture
def stand_in_context():
    def make(dag_id: str) -> dict:
        return {"ti": StandInTI(dag_id)}

    return make
