"""The rendered bash manager, for real, on 1,000 tasks with injected failures: exact outcome
sets and reasons, never more than `processes` tasks at once, complete task folders, one
start and one end event per task."""

from __future__ import annotations

import glob
import logging
import os
import time
from pathlib import Path

from airflow_provider_locusts.swarm.engine import EngineOptions, SwarmEngine
from airflow_provider_locusts.swarm.shell import LocalShell
from airflow_provider_locusts.swarm.spec import build_spec

log = logging.getLogger(__name__)

N = 1000
PROCESSES = 4

# Every task says it ran (stdout, stderr, and a shared timeline outside the swarm root);
# ids divisible by 37 write their output, then exit 3; ids divisible by 41 (and not by 37)
# skip their compulsory output and exit 0.
COMMAND = (
    "n=<arg0>; "
    "printf '%s start %s\\n' \"$EPOCHREALTIME\" <id> >> <arg1>; "
    "echo \"out <id>\"; echo \"err <id>\" >&2; "
    "if (( n % 41 != 0 || n % 37 == 0 )); then printf 'result %s\\n' <id> > res_<id>.txt; fi; "
    "printf '%s end %s\\n' \"$EPOCHREALTIME\" <id> >> <arg1>; "
    "if (( n % 37 == 0 )); then exit 3; fi"
)


def max_concurrency(events: list[tuple[float, int]]) -> int:
    """events: (time, +1 for a start / -1 for an end); at equal times ends count first."""
    running = peak = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        running += delta
        peak = max(peak, running)
    return peak


def test_manager_runs_1000_tasks_with_failures(tmp_path, run_swarm_round):
    timeline = tmp_path / "timeline.txt"
    spec = build_spec(command=COMMAND, args=[[i, str(timeline)] for i in range(N)], outputs=["res_<id>.txt"],
                      output_dir=tmp_path / "out", processes=PROCESSES)
    root = tmp_path / "root"
    engine = SwarmEngine(spec, "big", str(root), LocalShell(), EngineOptions(heartbeat_interval=1))

    t0 = time.monotonic()
    round_ = engine.prepare_round()
    prepared = time.monotonic() - t0
    assert (round_.number, round_.managers, round_.task_count) == (0, ["r0m0"], N)
    run = run_swarm_round(engine, round_, timeout=100)
    result = engine.gather()
    log.info("1000 tasks, processes=%d: prepare %.2fs, run %.2fs, gather %.2fs", PROCESSES, prepared, run.seconds,
                time.monotonic() - t0 - prepared - run.seconds)

    # --- outcomes -------------------------------------------------------------------------
    exit3 = {i for i in range(N) if i % 37 == 0}
    no_output = {i for i in range(N) if i % 41 == 0} - exit3
    ok = set(range(N)) - exit3 - no_output
    assert len(exit3) == 28 and len(no_output) == 24
    assert run.verdict.lost == []
    assert (run.progress.started, run.progress.finished, run.progress.failed) == (N, N, len(exit3) + len(no_output))
    assert set(result.succeeded) == {str(i) for i in ok}
    assert result.reasons == {
        **{str(i): "exit code 3" for i in exit3},
        **{str(i): f"missing outputs: res_{i}.txt" for i in no_output},
    }
    out = tmp_path / "out"
    assert {p.name for p in out.glob("res_*.txt")} == {f"res_{i}.txt" for i in ok}
    assert (out / "res_998.txt").read_text() == "result 998\n"
    assert len((out / "locusts_manifest.big.jsonl").read_text().splitlines()) == N

    # --- every task folder holds its logs (not empty here) and nothing else of ours ---------------
    for task in spec.tasks:
        i = int(task.task_id)
        d = root / "work" / task.folder
        assert (d / "stdout.txt").read_text() == f"out {i}\n"
        assert (d / "stderr.txt").read_text() == f"err {i}\n"
        expected = {"stdout.txt", "stderr.txt"}
        if i in exit3:
            expected.add(f"res_{i}.txt")  # failed tasks keep their outputs in place
        if i in no_output:
            expected.add(".locusts_missing")
        assert {p.name for p in d.iterdir()} == expected, i
    assert (root / "work" / spec.tasks[41].folder / ".locusts_missing").read_text() == "res_41.txt\n"

    # --- the events file: one start and one end per task, never more than PROCESSES at once ----
    event_files = glob.glob(str(root / "exec" / "events_*"))
    assert [os.path.basename(p) for p in event_files] == ["events_r0m0"]
    lines = Path(event_files[0]).read_text().splitlines()
    assert len(lines) == 2 * N
    starts: dict[int, int] = {}
    ends: dict[int, list[str]] = {}
    changes = []
    for line in lines:
        fields = line.split()
        when, index, kind = float(fields[0]), int(fields[1]), fields[2]
        if kind == "start":
            assert len(fields) == 5
            starts[index] = starts.get(index, 0) + 1
            changes.append((when, +1))
        else:
            assert kind == "end" and len(fields) == 6
            ends.setdefault(index, []).append(fields[3] + "/" + fields[5])
            changes.append((when, -1))
    assert starts == {i: 1 for i in range(N)}
    assert ends == {i: ["3/0" if i in exit3 else "0/1" if i in no_output else "0/0"] for i in range(N)}
    peak = max_concurrency(changes)
    assert 1 <= peak <= PROCESSES

    # the tasks' own timeline agrees
    task_changes = []
    for line in timeline.read_text().splitlines():
        when, kind, _ = line.split()
        task_changes.append((float(when), +1 if kind == "start" else -1))
    assert len(task_changes) == 2 * N
    task_peak = max_concurrency(task_changes)
    assert 1 <= task_peak <= PROCESSES
    log.info("peak concurrency: events %d, tasks' timeline %d (processes=%d)", peak, task_peak, PROCESSES)

    # the manager finished cleanly
    assert (root / "exec" / "done_r0m0").exists()
    assert run.last_poll.managers["r0m0"].state == "done"


def test_tasks_split_among_managers(tmp_path, run_swarm_round):
    """nodes=3: three managers, each runs only its own share, each within `processes`."""
    spec = build_spec(command="printf '%s' <id> > o_<id>.txt; sleep 0.0<arg0>", args=[[i % 5] for i in range(60)],
                      outputs=["o_<id>.txt"], output_dir=tmp_path / "out", processes=2)
    root = tmp_path / "root"
    engine = SwarmEngine(spec, "split", str(root), LocalShell(),
                         EngineOptions(nodes=3, min_tasks_per_process=5, heartbeat_interval=1))
    round_ = engine.prepare_round()
    assert round_.managers == ["r0m0", "r0m1", "r0m2"]
    run = run_swarm_round(engine, round_, timeout=60)
    assert {m: s.state for m, s in run.last_poll.managers.items()} == {"r0m0": "done", "r0m1": "done", "r0m2": "done"}
    result = engine.gather()
    assert len(result.succeeded) == 60 and result.failed == []
    seen = set()
    for k in range(3):
        lines = (root / "exec" / f"events_r0m{k}").read_text().splitlines()
        indexes = {int(line.split()[1]) for line in lines}
        assert indexes == set(range(k, 60, 3))  # round-robin share
        seen |= indexes
        changes = [(float(line.split()[0]), +1 if line.split()[2] == "start" else -1) for line in lines]
        assert max_concurrency(changes) <= 2
    assert seen == set(range(60))
