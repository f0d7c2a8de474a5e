"""Dispatch overhead: our bash manager vs ``xargs -P`` on thousands of trivial tasks.

Both sides run the same work on the same kind of tree, side by side in one run:

* **manager**: a swarm of ``--tasks`` tasks whose command is ``true`` (args mode, one
  clean folder per task), staged by ``SwarmEngine.prepare_round`` and run by the real
  bash manager (``templates/manager.sh.j2``) started with ``SwarmEngine.start`` through
  the ``LocalExecutor``, ``--processes`` at a time.  Timed from just before
  ``engine.start`` to the epoch the manager writes into its done file (after its last
  task ended); the staging (``prepare_round``) is timed separately.
* **xargs**: the tree staged the same way (same ``task.sh`` files, rendered by the
  package) but never started by a manager; then
  ``xargs -0 -n 1 -P P sh -c 'cd "$1" && bash ./task.sh >stdout.txt 2>stderr.txt </dev/null; echo $? >exit_code' sh``
  over the task folders (``sh`` is the system ``/bin/sh``).  So per task xargs does one
  fork+exec of ``sh`` and one fork+exec of ``bash ./task.sh`` with the same redirections
  as the manager, and writes the exit code like the manager does; it writes no event
  lines, no ``rm -f .locusts_missing`` and no compulsory-output check (the manager's extra
  bookkeeping, which is what this benchmark prices).  Timed from before ``Popen`` to
  xargs' exit.

CPU time (user + sys of each side's whole process tree) is printed too, as it is much
steadier than wall time when other work shares the machine: xargs' from our rusage of
waited-for children; the manager's by making this process a child subreaper
(``prctl(PR_SET_CHILD_SUBREAPER)``), so the manager detached by ``setsid -f`` is
reparented to us and reaped with ``os.wait4`` (its rusage covers every task it waited for).

Repetitions alternate the order (manager first, then xargs first, ...) and every
repetition gets fresh trees, removed right after.  Prints each run, then the medians
and the ratio manager/xargs (target in the issue: <= 1.5).

Usage: ``python benchmarks/bench_dispatch.py [--tasks 5000] [--processes 4] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from airflow_provider_locusts.swarm.engine import EngineOptions, Round, SwarmEngine
from airflow_provider_locusts.swarm.shell import LocalShell
from airflow_provider_locusts.swarm.spec import build_spec

TARGET_RATIO = 1.5
WAIT_POLL_S = 0.02  # how often we look whether the manager has exited (the times come from its files)
PR_SET_CHILD_SUBREAPER = 36
# What one xargs job runs, per task folder ($1): the manager's per-task work minus its bookkeeping.
XARGS_JOB = 'cd "$1" && bash ./task.sh >stdout.txt 2>stderr.txt </dev/null; echo $? >exit_code'


def _timeout_for(tasks: int) -> float:
    """Generous bound on one side's run: 20 ms per task, at least a minute."""
    return max(60.0, 0.02 * tasks)


def stage(base: Path, tasks: int, processes: int) -> tuple[SwarmEngine, Round, float]:
    """Build a swarm of `tasks` times `true` under base/root; returns the engine, its round, staging seconds."""
    spec = build_spec(
        command="true",
        args=[[i] for i in range(tasks)],
        output_dir=base / "output",
        processes=processes,
    )
    engine = SwarmEngine(spec, "bench-dispatch", str(base / "root"), LocalShell(), EngineOptions(scheduler="direct"))
    t0 = time.perf_counter()
    round_ = engine.prepare_round()
    staging = time.perf_counter() - t0
    assert round_ is not None and round_.task_count == tasks
    return engine, round_, staging


def run_manager(base: Path, tasks: int, processes: int) -> dict:
    engine, round_, staging = stage(base, tasks, processes)
    (manager,) = round_.managers
    done_file = Path(engine.layout.manager_file(manager, "done"))
    pid_file = Path(engine.layout.manager_file(manager, "pid"))
    events_file = Path(engine.layout.manager_file(manager, "events"))
    limit = _timeout_for(tasks)
    deadline = time.monotonic() + limit
    t0 = time.time()
    engine.start(round_)
    started_call = time.time() - t0
    cpu = None
    pid = None
    while True:
        if time.monotonic() > deadline:
            engine.cancel()
            raise RuntimeError(f"the manager did not finish {tasks} tasks within {limit:.0f} s")
        if pid is None and SUBREAPER and pid_file.exists():
            text = pid_file.read_text().split()
            pid = int(text[0]) if text else None
        if pid is not None:
            # We are its subreaper: the detached manager is our child now; its rusage covers
            # every task it waited for.
            got, _, usage = os.wait4(pid, os.WNOHANG)
            if got == pid:
                cpu = usage.ru_utime + usage.ru_stime
                break
        elif done_file.exists():
            break
        time.sleep(WAIT_POLL_S)
    # The manager writes "$EPOCHREALTIME" of its end into the done file: no polling error.
    seconds = float(done_file.read_text().strip()) - t0
    _reap_orphans()
    ends = failed = 0
    first_start = None
    for line in events_file.read_text().splitlines():
        fields = line.split()
        if fields[2] == "start":
            first_start = float(fields[0]) if first_start is None else first_start
        elif fields[2] == "end":
            ends += 1
            failed += fields[3] != "0" or fields[5] != "0"
    if ends != tasks or failed:
        raise RuntimeError(f"manager run: {ends} end events of {tasks}, {failed} failed")
    return {
        "seconds": seconds,
        "cpu": cpu,
        "staging": staging,
        "start_call": started_call,
        "first_task_after": (first_start - t0) if first_start else None,
    }


def run_xargs(base: Path, tasks: int, processes: int) -> dict:
    engine, round_, staging = stage(base, tasks, processes)
    work = Path(engine.layout.work_dir)
    # The same folders, in the manager's order (its task list: "<index>\t<folder>").
    task_list = Path(engine.layout.manager_file(round_.managers[0], "tasks")).read_text().splitlines()
    folders = b"".join(str(work / line.split("\t", 1)[1]).encode() + b"\0" for line in task_list)
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    proc = subprocess.run(
        ["xargs", "-0", "-n", "1", "-P", str(processes), "sh", "-c", XARGS_JOB, "sh"],
        input=folders,
        capture_output=True,
        timeout=_timeout_for(tasks),
        check=False,
    )
    seconds = time.time() - t0
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"xargs exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-500:]}")
    bad = [line for line in task_list if (work / line.split("\t", 1)[1] / "exit_code").read_text().strip() != "0"]
    if bad:
        raise RuntimeError(f"xargs run: {len(bad)} task(s) without exit code 0, e.g. {bad[0]}")
    return {"seconds": seconds, "cpu": cpu, "staging": staging}


def _become_subreaper() -> bool:
    """Linux: orphans of our descendants (the manager, detached by setsid -f) become our children."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _reap_orphans(wait_s: float = 0.0) -> None:
    """Reap what was reparented to us (the manager's killed heartbeat and its last `sleep`)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return  # no child left
        if pid == 0:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.05)


SUBREAPER = False
RUNNERS = {"manager": run_manager, "xargs": run_xargs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000, help="tasks per run (default 5000)")
    parser.add_argument("--processes", type=int, default=4, help="tasks at once (default 4)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of each side (default 3)")
    parser.add_argument("--tmpdir", default=None, help="where the temporary trees go (default: the system's)")
    args = parser.parse_args()
    if args.tasks < 1 or args.processes < 1 or args.repeat < 1:
        parser.error("--tasks, --processes and --repeat must be >= 1")

    global SUBREAPER
    SUBREAPER = _become_subreaper()
    print(
        f"dispatch: {args.tasks} x 'true', {args.processes} at a time, {args.repeat} repetition(s); "
        f"bash {_bash_version()}; {os.cpu_count()} CPU(s); load average {os.getloadavg()[0]:.2f}"
    )
    results: dict[str, list[dict]] = {"manager": [], "xargs": []}
    try:
        for rep in range(args.repeat):
            order = ("manager", "xargs") if rep % 2 == 0 else ("xargs", "manager")
            for side in order:
                base = Path(tempfile.mkdtemp(prefix=f"bench-dispatch-{side}-", dir=args.tmpdir))
                try:
                    r = RUNNERS[side](base, args.tasks, args.processes)
                finally:
                    shutil.rmtree(base, ignore_errors=True)
                results[side].append(r)
                extra = ""
                if side == "manager":
                    extra = f"  (engine.start call {r['start_call'] * 1000:.0f} ms, first task started after {r['first_task_after'] * 1000:.0f} ms)"
                print(
                    f"  rep {rep + 1} {side:7s}: run {r['seconds']:.2f} s = {r['seconds'] / args.tasks * 1000:.2f} ms/task;"
                    f" cpu {_fmt_cpu(r['cpu'], args.tasks)}; staging {r['staging']:.2f} s{extra}",
                    flush=True,
                )
    finally:
        _reap_orphans(wait_s=10)  # the last heartbeat `sleep` ends within heartbeat_interval (5 s)

    med = {side: statistics.median(r["seconds"] for r in runs) for side, runs in results.items()}
    staging = statistics.median(r["staging"] for runs in results.values() for r in runs)
    ratio = med["manager"] / med["xargs"]
    print(f"median run: manager {med['manager']:.2f} s, xargs -P {args.processes} {med['xargs']:.2f} s")
    if all(r["cpu"] is not None for runs in results.values() for r in runs):
        cpu = {side: statistics.median(r["cpu"] for r in runs) for side, runs in results.items()}
        print(
            f"median cpu (user+sys of the whole process tree, steadier than wall time on a busy machine): "
            f"manager {cpu['manager']:.2f} s, xargs {cpu['xargs']:.2f} s; ratio {cpu['manager'] / cpu['xargs']:.2f}"
        )
    print(f"median staging (prepare_round, not in the run times): {staging:.2f} s = {staging / args.tasks * 1000:.2f} ms/task")
    verdict = "OK" if ratio <= TARGET_RATIO else "ABOVE TARGET"
    print(f"ratio manager/xargs (wall) = {ratio:.2f} (target <= {TARGET_RATIO}): {verdict}")
    return 0


def _fmt_cpu(cpu: float | None, tasks: int) -> str:
    return "n/a" if cpu is None else f"{cpu:.2f} s = {cpu / tasks * 1000:.2f} ms/task"


def _bash_version() -> str:
    out = subprocess.run(["bash", "-c", "echo $BASH_VERSION"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
