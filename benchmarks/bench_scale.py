"""A swarm of 100,000 tasks on this machine: what it costs at each step, in time, memory, disk and XCom.

Tasks are `true`-like: ``echo <arg0> > o_<id>.txt`` (argument mode, one compulsory output
each), ``processes=4``, local mode, everything else at its default (outputs are sharded by
batch above 10,000 tasks).

1. **End to end through the operator**: one ``LocustsSwarmOperator`` task with ``dag.test()``
   (``benchmarks/_swarm_driver.py``, fresh interpreter, private SQLite AIRFLOW_HOME), with
   ``cleanup=True``: the swarm task's duration as Airflow recorded it, broken down with what
   the operator logs (staging, gathering, removing the root) and the epochs the root records;
   the sizes of its XComs as the metadata database stores them; the peak memory of that
   process (dag.test() runs the task, its trigger and the resumed task in one process).
2. **Each role in a process of its own**, to see their memory apart: the worker's ``execute``
   (staging, then deferring), the triggerer's ``LocustsSwarmTrigger.run()`` (its polls
   counted), the worker's ``execute_complete`` (gathering); then the root's footprint (bytes,
   inodes, files), the manifest's size, and what ``cleanup=True``'s removal of the root takes:
   until ``cleanup()`` returns (the root renamed away), and until the detached process that
   deletes its files in the background ends.

No peer: the per-task costs are what this prints; compare them with ``bench_dispatch.py``'s
floor. Usage: ``python benchmarks/bench_scale.py [--tasks 100000] [--processes 4] [--skip-dag-test]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # this checkout's package, whatever is installed
DRIVER = HERE / "_swarm_driver.py"
sys.path.insert(0, str(HERE))
from _swarm_driver import task_started_at  # noqa: E402
COMMAND = "echo <arg0> > o_<id>.txt"
MIGRATE_TIMEOUT_S = 300


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


def operator_kwargs(base: Path, tasks: int, processes: int) -> dict:
    return {
        "command": COMMAND,
        "args": [[i] for i in range(tasks)],
        "outputs": ["o_<id>.txt"],
        "output_dir": str(base / "out"),
        "work_root": str(base / "swarms"),
        "processes": processes,
    }


def logged(text: str, pattern: str) -> float | None:
    found = re.findall(pattern, text)
    return float(found[-1]) if found else None


# --- 1. end to end -----------------------------------------------------------------------
def end_to_end(base: Path, env: dict[str, str], tasks: int, processes: int, timeout: float) -> None:
    config = {"dag_id": "bench_scale", "cleanup": True, **operator_kwargs(base, tasks, processes)}
    config_file = base / "config.json"
    config_file.write_text(json.dumps(config))
    log = base / "dag_test.log"
    code = run_bounded([sys.executable, str(DRIVER), f"@{config_file}"], env, timeout, log)
    text = log.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.startswith("@result ")]
    if code != 0 or not lines:
        raise RuntimeError(f"dag.test() failed (exit {code}); log: {log}")
    r = json.loads(lines[-1][len("@result ") :])
    ti = r["ti"]
    whole = ti["end"] - (task_started_at(text) or ti["start"])
    staged = logged(text, r"staged \d+ task\(s\) in ([0-9.]+) s")
    gathered = logged(text, r"gathered \d+ task\(s\) in ([0-9.]+) s")
    removed = logged(text, r"removed its root in ([0-9.]+) s")
    ms = lambda s: f"{s:.2f} s = {s / tasks * 1000:.3f} ms/task" if s is not None else "n/a"  # noqa: E731
    print(f"1. end to end (dag.test(), cleanup=True): task {ti['state']} in {ms(whole)} from its \"Task started\" to its end")
    print(f"   staging {ms(staged)}; gathering {ms(gathered)}; removing the root (until cleanup() returned) {removed} s")
    print(f"   XCom bytes in the database: {r['xcom_bytes']}")
    print(f"   peak memory of the dag.test() process (task, trigger, resumed task): {r['peak_rss_mb']:.0f} MB", flush=True)


# --- 2. each role in its own process ---------------------------------------------------------
class StandInTI:
    """What the operator reads of its task instance, and the XComs it pushes (no database)."""

    def __init__(self):
        self.dag_id, self.task_id, self.run_id, self.map_index = "bench_scale", "swarm", "manual__bench", -1
        self.xcoms: dict[str, object] = {}

    def xcom_push(self, key: str, value) -> None:
        self.xcoms[key] = value

    def xcom_pull(self, task_ids=None, key: str = "return_value", **_):
        return self.xcoms.get(key)


def role(name: str, base: Path, tasks: int, processes: int) -> dict:
    """Run in a fresh process: one role of the swarm's life; prints its figures as JSON."""
    from airflow.exceptions import TaskDeferred

    from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator
    from airflow_provider_locusts.triggers.swarm import LocustsSwarmTrigger

    state = base / "state.json"
    op = LocustsSwarmOperator(task_id="swarm", deferrable=True, **operator_kwargs(base, tasks, processes))
    ti = StandInTI()
    t0 = time.perf_counter()
    out: dict = {}
    if name == "stage":
        try:
            op.execute({"ti": ti})
            raise RuntimeError("the operator did not defer")
        except TaskDeferred as deferred:
            state.write_text(json.dumps({"trigger": deferred.trigger.serialize()[1]}))
    elif name == "trigger":
        trigger = LocustsSwarmTrigger(**json.loads(state.read_text())["trigger"])
        polls = 0
        import airflow_provider_locusts.hooks.locusts as hooks

        original = hooks.LocustsAsyncHook.poll_wait

        async def counted(self, *a, **kw):
            nonlocal polls
            polls += 1
            return await original(self, *a, **kw)

        hooks.LocustsAsyncHook.poll_wait = counted

        async def first_event():
            async for event in trigger.run():
                return event.payload

        event = asyncio.run(first_event())
        state.write_text(json.dumps({**json.loads(state.read_text()), "event": event}))
        out["polls"] = polls
        out["status"] = event["status"]
    else:
        event = json.loads(state.read_text())["event"]
        summary = op.execute_complete({"ti": ti}, event)
        out["xcom_bytes"] = {k: len(json.dumps(v)) for k, v in ti.xcoms.items()}
        out["manifest_bytes"] = os.path.getsize(summary["manifest"])
        out["failed"] = summary["failed_count"]
    out["seconds"] = time.perf_counter() - t0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def footprint(root: Path, out: Path) -> dict:
    inodes, size = set(), 0
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            st = os.lstat(os.path.join(folder, name))
            if st.st_ino not in inodes:
                inodes.add(st.st_ino)
                size += st.st_blocks * 512
    task_folders = sum(len(os.listdir(root / "work" / b)) for b in os.listdir(root / "work"))
    largest_output_folder = max((len(os.listdir(p)) for p in [out, *[p for p in out.iterdir() if p.is_dir()]]), default=0)
    return {"inodes": len(inodes) + 1, "bytes": size, "task_folders": task_folders, "largest_output_folder": largest_output_folder}


def roles(base: Path, env: dict[str, str], tasks: int, processes: int, timeout: float) -> None:
    figures = {}
    for name in ("stage", "trigger", "gather"):
        log = base / f"role-{name}.log"
        code = run_bounded([sys.executable, __file__, "--role", name, "--base", str(base), "--tasks", str(tasks),
                            "--processes", str(processes)], env, timeout, log)
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("@role ")]
        if code != 0 or not lines:
            raise RuntimeError(f"role {name} failed (exit {code}); log: {log}")
        figures[name] = json.loads(lines[-1][len("@role ") :])
    (root,) = [p for p in (base / "swarms").iterdir() if (p / "exec").is_dir()]
    where = footprint(root, base / "out")
    returned, deleted = remove_root(root, timeout)
    s, t, g = figures["stage"], figures["trigger"], figures["gather"]
    per = lambda seconds: f"{seconds:.2f} s = {seconds / tasks * 1000:.3f} ms/task"  # noqa: E731
    print(f"2. roles apart: worker execute (staging, start, defer) {per(s['seconds'])}, peak {s['peak_rss_mb']:.0f} MB")
    print(f"   trigger until the end ({t['status']}) {t['seconds']:.1f} s in {t['polls']} poll(s), peak {t['peak_rss_mb']:.0f} MB")
    print(f"   worker execute_complete (gathering) {per(g['seconds'])}, peak {g['peak_rss_mb']:.0f} MB; failed {g['failed']}")
    print(f"   XCom values (JSON bytes): {g['xcom_bytes']}; manifest {g['manifest_bytes'] / 1e6:.1f} MB")
    print(f"   swarm root before cleanup: {where['inodes']} inodes ({where['inodes'] / tasks:.2f}/task), "
          f"{where['bytes'] / 1e6:.0f} MB ({where['bytes'] / tasks:.0f} B/task), {where['task_folders']} task folders; "
          f"largest output folder {where['largest_output_folder']} entries")
    print(f"   removing the root (cleanup=True): cleanup() returned in {returned:.2f} s (the root gone from its path); "
          f"the background deletion of its files ended {deleted:.2f} s after the call", flush=True)


def wait_background_removals(work_root: Path, timeout: float) -> None:
    """Wait for cleanup=True's background deletion to end, so that it slows nothing timed after."""
    began = time.perf_counter()
    while work_root.is_dir() and any(p.name.startswith(".") and ".removing-" in p.name for p in work_root.iterdir()):
        if time.perf_counter() - began > timeout:
            raise RuntimeError(f"a background removal in {work_root} did not end in {timeout:g} s")
        time.sleep(0.2)
    print(f"   (the background deletion of the root ended {time.perf_counter() - began:.1f} s after dag.test() did)", flush=True)


def remove_root(root: Path, timeout: float) -> tuple[float, float]:
    """cleanup=True's removal of the root, as the operator calls it: (seconds until cleanup()
    returned, seconds until its background deletion ended, both from the call)."""
    from airflow_provider_locusts.swarm.engine import SwarmEngine
    from airflow_provider_locusts.swarm.shell import LocalShell

    engine = SwarmEngine.attach(str(root), LocalShell())
    t0 = time.perf_counter()
    removal = engine.cleanup()
    returned = time.perf_counter() - t0
    if root.exists() or not removal.hidden:
        raise RuntimeError(f"cleanup() returned but the root was not renamed away: {removal.line()}")
    hidden = Path(removal.hidden)
    while hidden.exists():
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"the background deletion of {hidden} did not end in {timeout:g} s")
        time.sleep(0.05)
    return returned, time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--skip-dag-test", action="store_true")
    parser.add_argument("--tmpdir", default=None)
    parser.add_argument("--role", choices=("stage", "trigger", "gather"), help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        print("@role " + json.dumps(role(args.role, Path(args.base), args.tasks, args.processes)), flush=True)
        return 0

    base = Path(tempfile.mkdtemp(prefix="bench-scale-", dir=args.tmpdir))
    try:
        env = airflow_env(base / "airflow_home")
        if run_bounded([sys.executable, "-m", "airflow", "db", "migrate"], env, MIGRATE_TIMEOUT_S, base / "migrate.log") != 0:
            raise RuntimeError(f"airflow db migrate failed; log: {base / 'migrate.log'}")
        print(f"scale: {args.tasks} x '{COMMAND}', processes={args.processes}; {os.cpu_count()} CPU(s); "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)
        if not args.skip_dag_test:
            run_dir = base / "dag-test"
            run_dir.mkdir()
            end_to_end(run_dir, env, args.tasks, args.processes, args.timeout)
            wait_background_removals(run_dir / "swarms", args.timeout)
            shutil.rmtree(run_dir, ignore_errors=True)
        run_dir = base / "roles"
        run_dir.mkdir()
        os.environ.update(env)
        roles(run_dir, env, args.tasks, args.processes, args.timeout)
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
