"""Example 1 end to end in Airflow, vs the ideal and (optionally) vs another checkout and the original locusts 0.0.98.

(b) ours: Example 1 as ``dags_examples/example1_local.py`` defines it (101 tasks, ``sleep 1``
    and two small outputs each, 4 processes, every other setting at its default: the default
    ``poll_interval`` of 5 s) as one ``LocustsSwarmOperator`` task, run with ``dag.test()``
    in a subprocess (``benchmarks/_swarm_driver.py``) with a fresh temporary AIRFLOW_HOME on
    SQLite (``airflow db migrate`` first, not timed). The figure is the ``swarm`` task
    instance's duration as Airflow recorded it (end_date - start_date in the metadata DB):
    building the spec, staging, starting the manager, the deferral, the trigger's waiting
    polls, the resume in the worker and gathering the 202 outputs. It is timed from the
    task's "Task started" (the execution API's log line) to its end_date: in a fresh
    dag.test() process, the seconds before it go to building the in-process execution API,
    which a running deployment has already. It is compared with the
    ideal ceil(101/4) x 1 s = 26 s (target ratio <= 1.08: the end noticed within a second)
    and broken down with the epochs the swarm root records.
(c) ``--baseline PATH``: the very same run with the package of another checkout (e.g. the
    main branch before a change: ``--baseline /work/main``), side by side, alternating.
(d) ``--with-peer``: the original locusts 0.0.98 on the same workload
    (``benchmarks/peer_locusts_0098.py``), side by side in the same run.

Usage: ``python benchmarks/bench_example1.py [--baseline PATH] [--with-peer] [--repeat N] [--timeout S]``
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
REPO = HERE.parent
DRIVER = HERE / "_swarm_driver.py"
sys.path[:0] = [str(HERE), str(REPO / "dags_examples")]
from _swarm_driver import task_started_at  # noqa: E402
from example1_data import COMMAND, OUTPUTS, SHARED_INPUTS, TASK_INPUTS, make_example1_inputs  # noqa: E402

N_TASKS = 101
PROCESSES = 4  # what dags_examples/example1_local.py sets
TASK_SECONDS = 1.0  # the command's `sleep 1`
IDEAL_S = math.ceil(N_TASKS / PROCESSES) * TASK_SECONDS
TARGET_RATIO = 1.08
MIGRATE_TIMEOUT_S = 300


def _airflow_env(home: Path, package: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}  # nothing of the caller's Airflow
    (home / "dags").mkdir(parents=True, exist_ok=True)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        PYTHONPATH=str(package),  # whose airflow_provider_locusts runs
    )
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


def _stop_managers(work_root: Path) -> None:
    """Stop managers left running (their own sessions) after a failed or timed-out run."""
    for pid_file in work_root.glob("*/exec/pid_*"):
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


def run_ours(package: Path, timeout: float, keep: bool) -> dict:
    base = Path(tempfile.mkdtemp(prefix="bench-example1-"))
    env = _airflow_env(base / "airflow_home", package)
    try:
        t0 = time.monotonic()
        migrate = _run_bounded([sys.executable, "-m", "airflow", "db", "migrate"], env, MIGRATE_TIMEOUT_S, base / "migrate.log")
        if migrate.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed ({migrate.returncode}); log: {base / 'migrate.log'}")
        migrate_s = time.monotonic() - t0
        config = {
            "dag_id": "locusts_example1_local",
            "command": COMMAND,
            "input_dir": str(make_example1_inputs(base / "input")),
            "task_inputs": TASK_INPUTS,
            "shared_inputs": SHARED_INPUTS,
            "outputs": OUTPUTS,
            "output_dir": str(base / "output"),
            "work_root": str(base / "swarms"),
            "processes": PROCESSES,
        }
        t0 = time.monotonic()
        driver = _run_bounded([sys.executable, str(DRIVER), json.dumps(config)], env, timeout, base / "dag_test.log")
        process_s = time.monotonic() - t0
        lines = [line for line in (base / "dag_test.log").read_text(errors="replace").splitlines() if line.startswith("@result ")]
        if driver.returncode != 0 or not lines:
            tail = "\n".join((base / "dag_test.log").read_text(errors="replace").splitlines()[-15:])
            raise RuntimeError(f"the dag.test() driver failed (exit {driver.returncode}):\n{tail}")
        result = json.loads(lines[-1][len("@result ") :])
        result["task_started"] = task_started_at((base / "dag_test.log").read_text(errors="replace"))
        result["outputs_collected"] = sum(1 for _ in (base / "output").rglob("*_output_*.txt"))
        result["migrate_seconds"] = migrate_s
        result["process_seconds"] = process_s
        if keep:
            result["kept"] = str(base)
        return result
    finally:
        _stop_managers(base / "swarms")
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


def report_ours(r: dict, label: str) -> float | None:
    ti, root = r["ti"], r.get("root_times") or {}
    if ti.get("start") is None or ti.get("end") is None:
        print(f"  {label}: dag run {r['dag_state']}, swarm task {ti.get('state')}; no duration recorded")
        return None
    started = r.get("task_started") or ti["start"]
    duration = ti["end"] - started
    print(
        f"  {label}: swarm task {duration:.2f} s from its \"Task started\" to its end ({ti['end'] - ti['start']:.2f} s from "
        f"its start_date, which includes dag.test() building its in-process API) (dag run {r['dag_state']}, task {ti['state']}; "
        f"outputs collected {r['outputs_collected']}/{2 * N_TASKS}; dag.test() {r['dag_test_wall']:.1f} s, "
        f"driver process {r['process_seconds']:.1f} s, db migrate {r['migrate_seconds']:.1f} s)"
    )
    marks = [
        ("Task started -> round staged", started, root.get("prepared_at")),
        ("round staged -> first task started", root.get("prepared_at"), root.get("first_start")),
        ("first task start -> last task end", root.get("first_start"), root.get("last_end")),
        ("last task end -> manager done", root.get("last_end"), root.get("managers_done")),
        ("manager done -> TI end (noticed, resumed, gathered)", root.get("managers_done"), ti["end"]),
    ]
    for mark, a, b in marks:
        if a is not None and b is not None:
            print(f"        {mark:52s} {b - a:6.2f} s")
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
    parser.add_argument("--baseline", type=Path, help="also run the same with the package of this checkout")
    parser.add_argument("--with-peer", action="store_true", help="also run the original locusts 0.0.98 (needs it installed; ~5 min)")
    parser.add_argument("--repeat", type=int, default=1, help="repetitions (default 1)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed per run (default 900)")
    parser.add_argument("--keep", action="store_true", help="keep our runs' AIRFLOW_HOME and example folders")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")

    print(f"Example 1: {N_TASKS} tasks x {TASK_SECONDS:g} s, {PROCESSES} processes, default poll_interval; "
          f"ideal ceil({N_TASKS}/{PROCESSES}) x {TASK_SECONDS:g} s = {IDEAL_S:.0f} s; load average {os.getloadavg()[0]:.2f}")
    sides = ["ours"] + (["baseline"] if args.baseline else []) + (["peer"] if args.with_peer else [])
    figures: dict[str, list[float]] = {side: [] for side in sides}
    for rep in range(args.repeat):
        order = sides if rep % 2 == 0 else sides[::-1]
        print(f"rep {rep + 1}:", flush=True)
        for side in order:
            if side == "peer":
                figures[side].append(report_peer(run_peer(args.timeout)))
            else:
                package = REPO if side == "ours" else args.baseline.resolve()
                d = report_ours(run_ours(package, args.timeout, args.keep), f"{side} ({package})")
                if d is not None:
                    figures[side].append(d)
            sys.stdout.flush()

    for side in ("ours", "baseline"):
        if figures.get(side):
            med = statistics.median(figures[side])
            verdict = "OK" if med / IDEAL_S <= TARGET_RATIO else "ABOVE TARGET"
            print(f"{side}: median swarm task duration {med:.2f} s; ratio to ideal {med / IDEAL_S:.3f} (target <= {TARGET_RATIO}): {verdict}")
    if figures.get("baseline") and figures["ours"]:
        print(f"ratio ours/baseline = {statistics.median(figures['ours']) / statistics.median(figures['baseline']):.3f}")
    if figures.get("peer"):
        pmed = statistics.median(figures["peer"])
        print(f"peer: median locusts 0.0.98 end to end {pmed:.1f} s; ratio to ideal {pmed / IDEAL_S:.2f}")
        if figures["ours"]:
            print(f"ratio peer/ours = {pmed / statistics.median(figures['ours']):.2f}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    return 0 if figures["ours"] else 1


if __name__ == "__main__":
    sys.exit(main())
