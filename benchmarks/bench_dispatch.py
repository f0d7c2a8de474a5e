"""Dispatch against the hand-written floor: Example 1's work without its `sleep 1`, 5,000 tasks.

Both sides do the same work on the same inputs (Example 1's data made for 5,000 ids: two
per-task inputs and one shared file), side by side in one run, repetitions interleaved
(ours first, then the peer first, ...), medians and ratios printed. Each run starts after a
rest (``--settle``, 35 s) and nothing is removed before the end, so neither side pays for files
the other removed (see SETTLE_S).

* **ours**: one ``LocustsSwarmOperator`` task (``dags_examples/example1_data.py``'s command
  without ``sleep 1;``: ``ls -lrth`` and ``cat`` of the two inputs and the shared file into
  two compulsory outputs; ``processes=P``; everything else at its default, deferrable) run
  with ``dag.test()`` in a fresh interpreter (``benchmarks/_swarm_driver.py``) on a private,
  migrated SQLite AIRFLOW_HOME. Timed from the swarm task's "Task started" (the execution
  API's log line; before it, a fresh dag.test() process builds its in-process API) to its
  end_date as Airflow recorded it; broken down with what the operator logs (staging, gathering) and
  the epochs the swarm root records (first task started, managers done).
* **peer, the hand-written floor**: what a user writes by hand, in this process: the same
  folders made with ``os.mkdir`` + ``os.link`` of the two inputs from Python, then
  ``xargs -0 -n 1 -P P bash -c 'cd task_$1 && ls -lrth inputfile_$1.txt secondinputfile_$1.txt SHARED
  > ls_output_$1.txt; cat ... > cat_output_$1.txt' _`` over the ids, then the outputs moved
  into an output folder with ``os.rename``. No per-task logs, no events, no output check,
  no Airflow.

Targets (issue 11): whole swarm task <= 1.25 x the floor; the manager's run phase (first
task started -> managers done) <= 1.15 x xargs; staging and gathering <= 0.25 ms/task each.

Usage: ``python benchmarks/bench_dispatch.py [--tasks 5000] [--processes 2 4] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "dags_examples"))
from example1_data import COMMAND, OUTPUTS, SHARED_INPUTS, TASK_INPUTS, make_example1_inputs  # noqa: E402

DRIVER = HERE / "_swarm_driver.py"
sys.path.insert(0, str(HERE))
from _swarm_driver import task_started_at  # noqa: E402
COMMAND_NO_SLEEP = COMMAND.replace("sleep 1; ", "")
# What the user runs by hand for one id ($1), in the folder of the task folders.
PEER_JOB = (
    'cd "task_$1" && ls -lrth "inputfile_$1.txt" "secondinputfile_$1.txt" "$SHARED" > "ls_output_$1.txt"; '
    'cat "inputfile_$1.txt" "secondinputfile_$1.txt" "$SHARED" > "cat_output_$1.txt"'
)
TARGETS = {"whole": 1.25, "run": 1.15}
TARGET_MS_PER_TASK = 0.25
MIGRATE_TIMEOUT_S = 300
# Fairness to both sides. On ext4 without a journal (this machine's disk) the inode allocator
# skips, for about 30 s, every inode freed in that time, reading its inode block to find out:
# a run that follows a large removal pays for it, whoever made the removal. So no run's
# folders are removed before the end of the benchmark, and each run starts after this rest,
# once what was removed before it (by the previous benchmark, the migration, ...) costs nothing.
# What a side removes during its own run (ours: its empty logs) stays its own cost.
SETTLE_S = 35.0


def airflow_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    (home / "dags").mkdir(parents=True, exist_ok=True)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    return env


def run_bounded(argv: list[str], env: dict[str, str], timeout: float, log: Path) -> int:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            raise RuntimeError(f"{argv[1]} timed out after {timeout:g} s; log: {log}") from None


def logged_seconds(log_text: str, what: str) -> float | None:
    """Seconds the operator logged for a step ("staged 5000 task(s) in 1.23 s")."""
    found = re.findall(rf"{what} \d+ task\(s\) in ([0-9.]+) s", log_text)
    return float(found[-1]) if found else None


def run_ours(base: Path, env: dict[str, str], inputs: Path, tasks: int, processes: int, timeout: float, label: str) -> dict:
    config = {
        "dag_id": f"bench_dispatch_{label}",
        "command": COMMAND_NO_SLEEP,
        "input_dir": str(inputs),
        "task_inputs": TASK_INPUTS,
        "shared_inputs": SHARED_INPUTS,
        "outputs": OUTPUTS,
        "output_dir": str(base / "out"),
        "work_root": str(base / "swarms"),
        "processes": processes,
    }
    log = base / "dag_test.log"
    code = run_bounded([sys.executable, str(DRIVER), json.dumps(config)], env, timeout, log)
    text = log.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.startswith("@result ")]
    if code != 0 or not lines:
        raise RuntimeError(f"the dag.test() driver failed (exit {code}); log: {log}")
    r = json.loads(lines[-1][len("@result ") :])
    ti, root = r["ti"], r.get("root_times") or {}
    if ti["state"] != "success" or root.get("task_ends") != tasks or root.get("task_failed"):
        raise RuntimeError(f"ours: task {ti['state']}, {root.get('task_ends')} ends, {root.get('task_failed')} failed; log: {log}")
    collected = sum(1 for _ in (base / "out").glob("*_output_*.txt"))
    if collected != 2 * tasks:
        raise RuntimeError(f"ours: {collected} outputs collected of {2 * tasks}")
    started = task_started_at(text) or ti["start"]
    return {
        "whole": ti["end"] - started,
        "before_staged": root["prepared_at"] - started,  # operator set-up, spec, preflight, staging
        "staging": logged_seconds(text, "staged"),
        "staged_to_first_task": root["first_start"] - root["prepared_at"],
        "run": root["managers_done"] - root["first_start"],
        "gathering": logged_seconds(text, "gathered"),
        "done_to_end": ti["end"] - root["managers_done"],
        # CPU the dag.test() process (Airflow, the trigger) and its polls spent during the run phase.
        "airflow_cpu_in_run": sum((r.get("cpu_in_run") or {}).get(k, 0.0) for k in ("own", "children")),
        "peak_rss_mb": r["peak_rss_mb"],
        "xcom_bytes": r["xcom_bytes"],
    }


def run_peer(base: Path, inputs: Path, tasks: int, processes: int, timeout: float) -> dict:
    work, out = base / "work", base / "out"
    work.mkdir()
    out.mkdir()
    shared = str(inputs / SHARED_INPUTS["sf1"])
    ids = [str(i) for i in range(tasks)]
    t0 = time.perf_counter()
    for i in ids:
        folder = work / f"task_{i}"
        os.mkdir(folder)
        os.link(inputs / f"inputfile_{i}.txt", folder / f"inputfile_{i}.txt")
        os.link(inputs / f"secondinputfile_{i}.txt", folder / f"secondinputfile_{i}.txt")
    t1 = time.perf_counter()
    proc = subprocess.run(
        ["xargs", "-0", "-n", "1", "-P", str(processes), "bash", "-c", PEER_JOB, "_"],
        input="".join(i + "\0" for i in ids).encode(),
        cwd=work,
        env={**os.environ, "SHARED": shared},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=timeout,
        check=False,
    )
    t2 = time.perf_counter()
    if proc.returncode != 0:
        raise RuntimeError(f"xargs exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-300:]}")
    for i in ids:
        for name in (f"ls_output_{i}.txt", f"cat_output_{i}.txt"):
            os.rename(work / f"task_{i}" / name, out / name)
    t3 = time.perf_counter()
    return {"whole": t3 - t0, "staging": t1 - t0, "run": t2 - t1, "gathering": t3 - t2}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--processes", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--tmpdir", default=None)
    parser.add_argument("--settle", type=float, default=SETTLE_S, help="seconds of rest before each run (default %(default)s)")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="bench-dispatch-", dir=args.tmpdir))
    try:
        home = base / "airflow_home"
        env = airflow_env(home)
        if run_bounded([sys.executable, "-m", "airflow", "db", "migrate"], env, MIGRATE_TIMEOUT_S, base / "migrate.log") != 0:
            raise RuntimeError(f"airflow db migrate failed; log: {base / 'migrate.log'}")
        inputs = make_example1_inputs(base / "inputs", n=args.tasks)
        print(
            f"dispatch: Example 1 without sleep, {args.tasks} tasks, processes {args.processes}, {args.repeat} repetition(s); "
            f"{os.cpu_count()} CPU(s); load average at start {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        summary = []
        for processes in args.processes:
            results: dict[str, list[dict]] = {"ours": [], "peer": []}
            for rep in range(args.repeat):
                for side in ("ours", "peer") if rep % 2 == 0 else ("peer", "ours"):
                    run_dir = base / f"{side}-p{processes}-{rep}"
                    run_dir.mkdir()
                    # Nothing is removed until the end (see SETTLE_S); each side starts
                    # once files removed before it no longer cost the allocator anything.
                    time.sleep(args.settle)
                    if side == "ours":
                        r = run_ours(run_dir, env, inputs, args.tasks, processes, args.timeout, f"p{processes}_{rep}")
                    else:
                        r = run_peer(run_dir, inputs, args.tasks, processes, args.timeout)
                    results[side].append(r)
                    phases = ", ".join(f"{k} {v:.2f} s" for k, v in r.items() if isinstance(v, float) and k != "peak_rss_mb")
                    print(f"  P={processes} rep {rep + 1} {side}: {phases}; load {os.getloadavg()[0]:.2f}", flush=True)
            med = {side: {k: statistics.median(r[k] for r in runs) for k in ("whole", "staging", "run", "gathering")}
                   for side, runs in results.items()}
            o, p = med["ours"], med["peer"]
            print(f"P={processes} medians: ours {o['whole']:.2f} s (staging {o['staging']:.2f}, run {o['run']:.2f}, "
                  f"gathering {o['gathering']:.2f}); floor {p['whole']:.2f} s (staging {p['staging']:.2f}, "
                  f"run {p['run']:.2f}, gathering {p['gathering']:.2f})")
            for key, target in TARGETS.items():
                ratio = o[key] / p[key]
                print(f"  ratio {key:5s} ours/floor = {ratio:.2f} (target <= {target}): {'OK' if ratio <= target else 'ABOVE TARGET'}")
            for key in ("staging", "gathering"):
                ms = o[key] / args.tasks * 1000
                print(f"  {key} {ms:.3f} ms/task (floor {p[key] / args.tasks * 1000:.3f}; target <= {TARGET_MS_PER_TASK}): "
                      f"{'OK' if ms <= TARGET_MS_PER_TASK else 'ABOVE TARGET'}")
            xcom = results["ours"][-1]["xcom_bytes"]
            print(f"  XCom bytes: {xcom}; peak RSS of the dag.test() process {results['ours'][-1]['peak_rss_mb']:.0f} MB")
            summary.append((processes, o, p))
        print(f"load average at end {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
