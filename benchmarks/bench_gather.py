"""Gathering alone, at scale: `SwarmEngine.gather()` of a finished 100,000-task local swarm, timed
(and profiled) again and again on the same run.

The swarm is bench_scale.py's: ``echo <arg0> > o_<id>.txt`` (argument mode, one compulsory output
each), ``processes=4``, local mode, every other setting at its default (outputs sharded by batch
above 10,000 tasks). It is staged and run once, without Airflow (SwarmEngine + LocalShell, as
tests/integration/test_manager_1000.py does), in ``--dir`` (kept, so later invocations reuse it).

Each repetition gathers as ``execute_complete`` does, in a fresh interpreter: an engine attached
to the root alone (the task table and settings read back from it), ``gather(report=gather_report)``
(decisions, outputs moved into output_dir with no-clobber links, ``exec/results.jsonl``, the
manifest, the HTML report). Between repetitions the gathered outputs are renamed back into their
task folders; results, manifest, report and the emptied output folders removed: no file is
created or deleted in bulk before a timing (on ext4, creating files shortly after deleting many
is slow, which would distort it).

Usage: ``python benchmarks/bench_gather.py [--tasks 100000] [--dir DIR] [--repeat 3] [--profile FILE]``
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's package, whatever is installed

from airflow_provider_locusts.swarm import collect  # noqa: E402
from airflow_provider_locusts.swarm.engine import EngineOptions, SwarmEngine  # noqa: E402
from airflow_provider_locusts.swarm.progress import SwarmProgress, assess  # noqa: E402
from airflow_provider_locusts.swarm.shell import LocalShell  # noqa: E402
from airflow_provider_locusts.swarm.sinks import output_target  # noqa: E402
from airflow_provider_locusts.swarm.spec import build_spec  # noqa: E402

COMMAND = "echo <arg0> > o_<id>.txt"
SWARM_ID = "bench_gather"


def run_swarm(base: Path, tasks: int, processes: int, timeout: float) -> None:
    spec = build_spec(command=COMMAND, args=[[i] for i in range(tasks)], outputs=["o_<id>.txt"],
                      output_dir=base / "out", processes=processes)
    engine = SwarmEngine(spec, SWARM_ID, str(base / SWARM_ID), LocalShell(), EngineOptions(heartbeat_interval=5))
    t0 = time.monotonic()
    round_ = engine.prepare_round()
    print(f"staged {tasks} tasks in {time.monotonic() - t0:.1f} s", flush=True)
    engine.start(round_)
    progress = SwarmProgress(total=round_.task_count, offsets={m: 0 for m in round_.managers})
    t0 = time.monotonic()
    while True:
        poll = engine.poll(dict(progress.offsets))
        for manager, chunk in poll.chunks.items():
            progress.feed(manager, chunk)
        waited = time.monotonic() - t0
        if assess(poll, 60, waited).finished:
            break
        if waited > timeout:
            engine.cancel()
            raise RuntimeError(f"the swarm did not finish in {timeout:g} s: {progress.line()}")
        time.sleep(1)
    print(f"ran in {time.monotonic() - t0:.1f} s: {progress.line()}", flush=True)
    (base / "ran.json").write_text(json.dumps({"tasks": tasks, "processes": processes}))


def ungather(base: Path) -> int:
    """Put the gathered outputs back into their task folders (renames), drop what gather wrote,
    and the (then empty) output folders, so the next gather makes them anew as a first one does."""
    root, out = base / SWARM_ID, base / "out"
    engine = SwarmEngine.attach(str(root), LocalShell())
    sharded = engine.outputs_sharded
    moved = 0
    for task in engine.tasks:
        for o in task.outputs:
            target = out / output_target(task, o, sharded)
            try:
                os.rename(target, root / "work" / task.folder / o)
                moved += 1
            except FileNotFoundError:
                pass
    for path in (root / "exec" / "results.jsonl", out / collect.manifest_name(SWARM_ID), out / collect.report_name(SWARM_ID)):
        path.unlink(missing_ok=True)
    if out.is_dir():
        for shard in out.iterdir():
            shard.rmdir()  # empty now: anything else in it is an error
        out.rmdir()
    return moved


def gather_once(base: Path, profile: str | None) -> tuple[float, int]:
    from airflow_provider_locusts.www.report import gather_report  # imported by the operator's module

    engine = SwarmEngine.attach(str(base / SWARM_ID), LocalShell())
    profiler = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if profiler:
        profiler.enable()
    result = engine.gather(report=gather_report)
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - t0
    if profiler:
        profiler.dump_stats(profile)
        pstats.Stats(profile).sort_stats("cumulative").print_stats(35)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    if result.failed or "report" not in result.extra_files:
        raise RuntimeError(f"unexpected gather: {len(result.failed)} failed, files {result.extra_files}")
    return seconds, len(result.succeeded), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--dir", default=None, help="where the swarm is run and kept (default: a new temporary folder)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", default=None, help="profile the first repetition with cProfile into this file")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--role-gather", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role_gather:
        print("@gather " + json.dumps(gather_once(Path(args.dir), args.profile)), flush=True)
        return 0
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-gather-"))
    base.mkdir(parents=True, exist_ok=True)
    ran = base / "ran.json"
    if not ran.exists() or json.loads(ran.read_text())["tasks"] != args.tasks:
        if (base / SWARM_ID).exists():
            raise SystemExit(f"{base} holds another swarm: give an empty --dir")
        run_swarm(base, args.tasks, args.processes, args.timeout)
    print(f"gather: {args.tasks} tasks in {base}; {os.cpu_count()} CPU(s)", flush=True)
    times = []
    for i in range(args.repeat):
        back = ungather(base)
        load = os.getloadavg()[0]
        # A fresh interpreter each time, as execute_complete runs in: nothing cached but the disk's.
        argv = [sys.executable, __file__, "--role-gather", "--dir", str(base), "--tasks", str(args.tasks)]
        if args.profile and i == 0:
            argv += ["--profile", args.profile]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=args.timeout, check=False)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("@gather ")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"gather failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        if args.profile and i == 0:
            print(proc.stdout, flush=True)
        seconds, succeeded, peak = json.loads(lines[-1][len("@gather ") :])
        if succeeded != args.tasks:
            raise RuntimeError(f"{succeeded} of {args.tasks} succeeded")
        times.append(seconds)
        print(f"  gather {i + 1}: {seconds:.2f} s = {seconds / args.tasks * 1000:.3f} ms/task "
              f"({back} outputs put back before it; load {load:.2f}; peak memory of the process {peak:.0f} MB)"
              f"{' [profiled]' if args.profile and i == 0 else ''}",
              flush=True)
    plain = times[1:] if args.profile and len(times) > 1 else times
    per = [t / args.tasks * 1000 for t in plain]
    print(f"gather, ms/task: median {statistics.median(per):.3f}, min {min(per):.3f}, max {max(per):.3f} "
          f"over {len(per)} unprofiled repetition(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
