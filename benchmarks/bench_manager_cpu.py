"""Where dispatch time goes: the bash manager's own CPU per task, against `xargs -P`, no Airflow.

bench_dispatch.py measures the whole swarm task against the hand-written floor; this script
looks inside the run phase. The same 5,000 tasks (Example 1 without ``sleep 1``) are staged
with the Airflow-free core (SwarmEngine + LocalShell) and the rendered manager is run directly,
as a child of this process, while its own CPU time and minor page faults are read from
/proc/<pid>/stat (they exclude its children); its children's CPU comes from wait4(). The peer
is bench_dispatch.py's hand-written floor (hand-made folders, ``xargs -0 -n 1 -P P bash -c
...``), its CPU from wait4() too. A bare bash loop (``( exit 0 ) & wait -n``, N times) gives what
a fork and a wait cost a bash process on this machine. Runs interleaved, each after a rest
(bench_dispatch.SETTLE_S), nothing removed before the end.

Usage: ``python benchmarks/bench_manager_cpu.py [--tasks 5000] [--processes 2 4] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's package, whatever is installed
sys.path.insert(0, str(HERE))

from bench_dispatch import COMMAND_NO_SLEEP, PEER_JOB, SETTLE_S  # noqa: E402
from example1_data import OUTPUTS, SHARED_INPUTS, TASK_INPUTS, make_example1_inputs  # noqa: E402

from airflow_provider_locusts.swarm.engine import EngineOptions, SwarmEngine  # noqa: E402
from airflow_provider_locusts.swarm.shell import LocalShell  # noqa: E402
from airflow_provider_locusts.swarm.spec import build_spec  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
SAMPLE_S = 0.05


def self_usage(pid: int) -> tuple[float, int] | None:
    """(user + system CPU seconds, minor faults) of the process itself, children excluded."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / TICK, int(fields[7])  # utime, stime; minflt


def run_measured(argv: list[str], cwd: Path, timeout: float, stdin: bytes | None = None,
                 env: dict[str, str] | None = None) -> dict:
    """Run argv; its elapsed time, its own CPU and faults (last /proc sample before it ended),
    and the CPU of everything it ran (wait4)."""
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: nothing blocks on a full pipe
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
        if stdin is not None:
            proc.stdin.write(stdin)
            proc.stdin.close()
        last = (0.0, 0)
        while True:
            # wait4 with WNOHANG: the exit and the whole tree's rusage, once it has ended.
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            last = self_usage(proc.pid) or last
            if time.perf_counter() - started > timeout:
                proc.kill()
                proc.wait()
                raise RuntimeError(f"{argv[0]} did not end in {timeout:g} s")
            time.sleep(SAMPLE_S)
        elapsed = time.perf_counter() - started
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            raise RuntimeError(f"{argv[:2]} exited {code}: {err.read().decode(errors='replace')[-300:]}")
    return {"elapsed": elapsed, "total_cpu": usage.ru_utime + usage.ru_stime, "self_cpu": last[0], "self_minflt": last[1]}


def run_ours(base: Path, inputs: Path, tasks: int, processes: int, settle: float, timeout: float) -> dict:
    spec = build_spec(command=COMMAND_NO_SLEEP, input_dir=inputs, task_inputs=TASK_INPUTS, shared_inputs=SHARED_INPUTS,
                      outputs=OUTPUTS, output_dir=base / "out", processes=processes)
    engine = SwarmEngine(spec, "bench_cpu", str(base / "root"), LocalShell(), EngineOptions())
    round_ = engine.prepare_round()
    (manager,) = round_.managers
    time.sleep(settle)
    layout = engine.layout
    r = run_measured(["bash", layout.manager_file(manager, "sh")], Path(layout.exec_dir), timeout)
    ends = Path(layout.manager_file(manager, "events")).read_text().count(" end 0 ")
    if ends != tasks:
        raise RuntimeError(f"ours: {ends} tasks ended with exit code 0 of {tasks}")
    return r


def run_peer(base: Path, inputs: Path, tasks: int, processes: int, settle: float, timeout: float) -> dict:
    work = base / "work"
    work.mkdir(parents=True)
    for i in range(tasks):
        folder = work / f"task_{i}"
        os.mkdir(folder)
        for name in (f"inputfile_{i}.txt", f"secondinputfile_{i}.txt"):
            os.link(inputs / name, folder / name)
    time.sleep(settle)
    r = run_measured(["xargs", "-0", "-n", "1", "-P", str(processes), "bash", "-c", PEER_JOB, "_"], work, timeout,
                     stdin="".join(f"{i}\0" for i in range(tasks)).encode(),
                     env={**os.environ, "SHARED": str(inputs / SHARED_INPUTS["sf1"])})
    made = sum(1 for _ in work.glob("task_*/cat_output_*.txt"))
    if made != tasks:
        raise RuntimeError(f"peer: {made} outputs of {tasks}")
    return r


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--processes", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--settle", type=float, default=SETTLE_S)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--tmpdir", default=None)
    args = parser.parse_args()
    n = args.tasks
    base = Path(tempfile.mkdtemp(prefix="bench-manager-cpu-", dir=args.tmpdir))
    try:
        inputs = make_example1_inputs(base / "inputs", n=n)
        bare = run_measured(["bash", "-c", f"for ((i = 0; i < {n}; i++)); do ( exit 0 ) & wait -n; done"], base, args.timeout)
        print(f"manager CPU: Example 1 without sleep, {n} tasks; {os.cpu_count()} CPU(s); load {os.getloadavg()[0]:.2f}\n"
              f"  bare bash loop `( exit 0 ) & wait -n`: {bare['self_cpu'] / n * 1000:.3f} ms of CPU and "
              f"{bare['self_minflt'] / n:.0f} minor faults per fork, in the loop's own process", flush=True)
        for processes in args.processes:
            runs: dict[str, list[dict]] = {"ours": [], "peer": []}
            for rep in range(args.repeat):
                for side in ("ours", "peer") if rep % 2 == 0 else ("peer", "ours"):
                    run = run_ours if side == "ours" else run_peer
                    r = run(base / f"{side}-p{processes}-{rep}", inputs, n, processes, args.settle, args.timeout)
                    runs[side].append(r)
                    extra = (f"; the manager itself {r['self_cpu']:.2f} s ({r['self_cpu'] / n * 1000:.3f} ms/task, "
                             f"{r['self_minflt'] / n:.0f} minor faults/task)") if side == "ours" else ""
                    print(f"  P={processes} rep {rep + 1} {side}: {r['elapsed']:.2f} s, CPU {r['total_cpu']:.2f} s{extra}", flush=True)
            med = {side: {k: statistics.median(r[k] for r in rs) for k in ("elapsed", "total_cpu", "self_cpu")}
                   for side, rs in runs.items()}
            o, p = med["ours"], med["peer"]
            print(f"P={processes} medians: elapsed ours {o['elapsed']:.2f} s / xargs {p['elapsed']:.2f} s = {o['elapsed'] / p['elapsed']:.2f}; "
                  f"CPU {o['total_cpu']:.2f} / {p['total_cpu']:.2f} s = {o['total_cpu'] / p['total_cpu']:.2f}; "
                  f"the manager's own CPU {o['self_cpu'] / n * 1000:.3f} ms/task, its tasks' "
                  f"{(o['total_cpu'] - o['self_cpu']) / n * 1000:.3f} ms/task against xargs' {p['total_cpu'] / n * 1000:.3f}", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
