"""Synthetic task records shaped like manifest lines, made by actually scheduling the tasks on
manager slots (each manager runs `processes` tasks at once), so timelines look like swarms."""

from __future__ import annotations

import heapq
import random

HOSTILE_IDS = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>')


def swarm_records(
    count: int,
    managers: int = 4,
    processes: int = 8,
    fail_every: int = 23,
    now_fraction: float | None = None,
    seed: int = 7,
    start: float = 1_764_000_000.0,
    ids: list[str] | None = None,
) -> list[dict]:
    """`count` tasks spread round-robin over `managers`, each running `processes` at once with
    durations drawn from a log-normal law; every `fail_every`-th task fails. With
    `now_fraction`, the swarm is seen at that fraction of its length: tasks not started by then
    are "pending" (no start), those started but not ended are "running" (no end)."""
    rng = random.Random(seed)
    records = []
    free_at = {m: [start] * processes for m in range(managers)}
    for index in range(count):
        manager = index % managers
        slot_start = heapq.heappop(free_at[manager])
        duration = rng.lognormvariate(0.5, 0.9)
        heapq.heappush(free_at[manager], slot_start + duration)
        failed = fail_every and index % fail_every == fail_every - 1
        records.append({
            "index": index,
            "id": ids[index] if ids else str(index),
            "state": "failed" if failed else "succeeded",
            "reason": "exit code 3" if failed else None,
            "exit_code": 3 if failed else 0,
            "attempts": 1,
            "duration": duration,
            "host": f"node{manager % 2}",
            "outputs": [] if failed else [f"out_{index}.txt"],
            "folder": f"work/batch_0/task_{index}",
            "started_at": slot_start,
            "ended_at": slot_start + duration,
            "manager": f"r0m{manager}",
        })
    if now_fraction is not None:
        now = start + now_fraction * (max(r["ended_at"] for r in records) - start)
        for record in records:
            if record["started_at"] > now:
                record.update(state="pending", started_at=None, ended_at=None, duration=None, exit_code=None, reason=None, host=None)
            elif record["ended_at"] > now:
                record.update(state="running", ended_at=None, duration=None, exit_code=None, reason=None)
    return records


def swarm_now(records: list[dict]) -> float:
    """A `now` just after the latest time in the records."""
    return max(max(r["started_at"] or 0, r["ended_at"] or 0) for r in records) + 0.5
