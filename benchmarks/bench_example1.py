"""Example 1 end to end in Airflow, vs the ideal and (optionally) vs the original locusts 0.0.98.

(b) ours: the example DAG ``dags_examples/example1_local.py`` (101 tasks, ``sleep 1`` and
    two small outputs each, 4 processes, ``poll_interval=1``) run with ``dag.test()`` in a
    subprocess (``benchmarks/_example1_driver.py``) with a fresh temporary AIRFLOW_HOME on
    SQLite (``airflow db migrate`` first, not timed in the figures).  The figure is the
    ``swarm`` task instance's duration as Airflow recorded it (end_date - start_date in the
    metadata DB).  It includes building the spec, staging, starting the manager, the
    deferral, the trigger's polls (1 s apart), the resume in the worker and gathering the
    202 outputs.  It is compared with the ideal ceil(101/4) x 1 s = 26 s (target ratio
    <= 1.15) and broken down with the epochs the swarm root records.
(c) ``--with-peer``: the original locusts 0.0.98 on the same workload
    (``benchmarks/peer_locusts_0098.py``), side by side in the same run.

Repetitions (``--repeat``) alternate the order when the peer runs too.

Usage: ``python benchmarks/bench_example1.py [--with-peer] [--repeat N] [--timeout S] [--keep]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "_example1_driver.py"
N_TASKS = 101
PROCESSES = 4  # what dags_examples/example1_local.py sets
TASK_SECONDS = 1.0  # the command's `sleep 1`
IDEAL_S = math.ceil(N_TASKS / PROCESSES) * TASK_SECONDS
TARGET_RATIO = 1.15
MIGRATE_TIMEOUT_S = 300


def _airflow_env(home: Path, example_dir: Path) -> dict[str, str]:
    env = os.environ.copy()
    for key in [k for k in env if k.startswith("AIRFLOW__")]:
        del env[key]  # nothing of the caller's Airflow configuration leaks in
    (home / "dags").mkdir(parents=True, exist_ok=True)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        LOCUSTS_EXAMPLE_DIR=str(example_dir),
    )
    env.pop("LOCUSTS_WORK_ROOT", None)
    return env


def _run_bounded(argv: list[str], env: dict[str, str], timeout: float, log: Path) -> subprocess.CompletedProcess:
    """Run argv in its own session; on timeout kill the whole group. Output goes to `log` too."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise RuntimeError(f"{' '.join(argv[:4])} ... timed out after {timeout:g} s; log: {log}") from None
    return subprocess.CompletedProcess(argv, proc.returncode)


def _stop_managers(example_dir: Path) -> None:
    """Stop managers left running (their own sessions) after a failed or timed-out run."""
    for pid_file in (example_dir / "swarms").glob("*/exec/pid_*"):
        try:
            pid = int(pid_file.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if b"manager_" in cmdline:
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def run_ours(timeout: float, keep: bool) -> dict:
    base = Path(tempfile.mkdtemp(prefix="bench-example1-"))
    home, example_dir = base / "airflow_home", base / "example"
    env = _airflow_env(home, example_dir)
    try:
        t0 = time.monotonic()
        migrate = _run_bounded([sys.executable, "-m", "airflow", "db", "migrate"], env, MIGRATE_TIMEOUT_S, base / "migrate.log")
        if migrate.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed ({migrate.returncode}); log: {base / 'migrate.log'}")
        migrate_s = time.monotonic() - t0

        t0 = time.monotonic()
        driver = _run_bounded([sys.executable, str(DRIVER)], env, timeout, base / "dag_test.log")
        process_s = time.monotonic() - t0
        lines = [line for line in (base / "dag_test.log").read_text(errors="replace").splitlines() if line.startswith("@result ")]
        if driver.returncode != 0 or not lines:
            tail = "\n".join((base / "dag_test.log").read_text(errors="replace").splitlines()[-15:])
            raise RuntimeError(f"the dag.test() driver failed (exit {driver.returncode}):\n{tail}")
        result = json.loads(lines[-1][len("@result ") :])
        result["migrate_seconds"] = migrate_s
        result["process_seconds"] = process_s
        if keep:
            result["kept"] = str(base)
        return result
    finally:
        _stop_managers(example_dir)
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


def report_ours(r: dict) -> float | None:
    swarm = r["tasks"].get("swarm", {})
    states = ", ".join(f"{k}={v['state']}" for k, v in sorted(r["tasks"].items()))
    if swarm.get("start") is None or swarm.get("end") is None:
        print(f"  ours: dag run {r['dag_state']} ({states}); no swarm task duration recorded")
        return None
    duration = swarm["end"] - swarm["start"]
    print(
        f"  ours: swarm task {duration:.2f} s in Airflow (dag run {r['dag_state']}: {states}; "
        f"outputs collected {r['outputs_collected']}/{2 * N_TASKS}; dag.test() {r['dag_test_wall']:.1f} s, "
        f"driver process {r['process_seconds']:.1f} s, db migrate {r['migrate_seconds']:.1f} s)"
    )
    root = r.get("root") or {}
    marks = [
        ("TI start -> round staged", swarm["start"], root.get("prepared_at")),
        ("round staged -> first task started", root.get("prepared_at"), root.get("first_start")),
        ("first task start -> last task end", root.get("first_start"), root.get("last_end")),
        ("last task end -> manager done", root.get("last_end"), root.get("manager_done")),
        ("manager done -> TI end (poll, resume, gather)", root.get("manager_done"), swarm["end"]),
    ]
    for label, a, b in marks:
        if a is not None and b is not None:
            print(f"        {label:48s} {b - a:6.2f} s")
    if root:
        print(f"        task end events {root.get('task_ends')}, failed {root.get('task_failed')}")
    print(f"        ratio to ideal {IDEAL_S:.0f} s: {duration / IDEAL_S:.3f} (target <= {TARGET_RATIO})")
    return duration


def run_peer(timeout: float) -> dict:
    sys.path.insert(0, str(HERE))
    from peer_locusts_0098 import run_locusts_0098

    workdir = Path(tempfile.mkdtemp(prefix="bench-example1-peer-"))
    try:
        return run_locusts_0098(workdir, processes=PROCESSES, timeout_s=timeout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def report_peer(r: dict) -> float:
    def fmt(v):
        return "never" if v is None else f"{v:.1f} s"

    last_error = r["error"].splitlines()[-1] if r["error"] else None
    print(
        f"  peer: locusts 0.0.98 {r['seconds']:.1f} s end to end (tasks done at {fmt(r['tasks_done_seconds'])}, "
        f"launcher exited at {fmt(r['launcher_exit_seconds'])}); outputs collected {r['outputs_collected']}/{2 * N_TASKS}; "
        f"ok={r['ok']} error={last_error!r}"
    )
    print(f"        ratio to ideal {IDEAL_S:.0f} s: {r['seconds'] / IDEAL_S:.2f}")
    return r["seconds"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--with-peer", action="store_true", help="also run the original locusts 0.0.98 (needs it installed; ~5 min)")
    parser.add_argument("--repeat", type=int, default=1, help="repetitions (default 1)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed per run (default 900)")
    parser.add_argument("--keep", action="store_true", help="keep our runs' AIRFLOW_HOME and example folders")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")

    print(f"Example 1: {N_TASKS} tasks x {TASK_SECONDS:g} s, {PROCESSES} processes; ideal ceil({N_TASKS}/{PROCESSES}) x {TASK_SECONDS:g} s = {IDEAL_S:.0f} s")
    ours: list[float] = []
    peer: list[float] = []
    for rep in range(args.repeat):
        sides = ["ours", "peer"] if args.with_peer else ["ours"]
        if rep % 2 == 1:
            sides.reverse()
        print(f"rep {rep + 1}:", flush=True)
        for side in sides:
            if side == "ours":
                d = report_ours(run_ours(args.timeout, args.keep))
                if d is not None:
                    ours.append(d)
            else:
                peer.append(report_peer(run_peer(args.timeout)))
            sys.stdout.flush()

    if ours:
        med = statistics.median(ours)
        verdict = "OK" if med / IDEAL_S <= TARGET_RATIO else "ABOVE TARGET"
        print(f"ours: median swarm task duration {med:.2f} s; ratio to ideal {med / IDEAL_S:.3f} (target <= {TARGET_RATIO}): {verdict}")
    if peer:
        pmed = statistics.median(peer)
        print(f"peer: median locusts 0.0.98 end to end {pmed:.1f} s; ratio to ideal {pmed / IDEAL_S:.2f}")
        if ours:
            print(f"ratio peer/ours = {pmed / statistics.median(ours):.2f}")
    return 0 if ours else 1


if __name__ == "__main__":
    sys.exit(main())
