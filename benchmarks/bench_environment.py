"""Custom Environment: a replica of a whole tree per task, against a naive ``cp -a`` of the tree
per task (what a user would do by hand), side by side in one run.

The tree (built under ``--base``, default a temporary folder in /tmp): ``--files`` files
(default 2,000) holding ``--tree-mb`` MB (default 200) in all, of which ``--writable-mb`` MB
(default 5) are the writable part ``results/`` (99 files); the rest is ``db/`` (read-only,
100 folders of 19 files) and ``conf/settings.ini``. Each task runs the same small program in
its copy of the tree: it reads the config into a new result file and appends a line to one
writable file (one file created, one modified).

* **ours**: a swarm of ``--tasks`` tasks (default 1,000) with ``environment_dir`` = the tree and
  ``environment_writable=["results"]``, staged by ``SwarmEngine.prepare_round`` (the tree is
  copied and sealed once: timed apart as "once per swarm") and run by the real bash manager,
  one task at a time (``processes=1``, like the peer). Per task, the manager and
  ``environment/task.sh`` take a replica from the pool (or make one: read-only files
  hard-linked, ``results/`` copied), place nothing else (args mode), remove write permission
  from the read-only folders, run the program, snapshot the replica and compare it with the
  sealed reference, move the two changed files out, reset the replica and check it before it
  goes back to the pool. Timed from ``engine.start`` to the epoch the manager writes into its
  done file: so "per task" is everything the Custom Environment does for a task, the task's
  own program and the manager's dispatch included. The script also times its own phases and
  records them in the manifest (``changes.seconds``): "replica" is its staging (from its start
  to the command's: replica taken or made, inputs placed, read-only folders protected), "after"
  what follows the command (snapshot, comparison, collection, reset, check).
* **peer**: for ``--peer-tasks`` tasks (default 20: each costs the whole tree on disk), one after
  the other, ``cp -a TREE task_<i>`` then the same program in it (``bash -c``). Its staging is
  the ``cp -a`` alone; its total adds the program.

Both are timed twice: as the commands return (the page cache absorbs the writes), and with a
``sync`` at the end included (the writes on disk: at the issue's scale, 1,000 copies of 200 MB,
the peer's 200 GB cannot stay in memory). Disk per task: ours is what the swarm root holds
beyond its one copy of the tree, divided by the tasks (task folders with their changed files,
the pool of replicas), measured with ``du`` before gathering; the peer's is one copy.
Prints the figures and the ratios (targets of the issue: staging >= 10x faster than
``cp -a`` per task; disk per task <= 1.2 x the writable part).

Usage: ``python benchmarks/bench_environment.py [--tasks 1000] [--peer-tasks 20] [--files 2000]
[--tree-mb 200] [--writable-mb 5] [--base DIR]``
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

from airflow_provider_locusts.swarm.engine import EngineOptions, SwarmEngine
from airflow_provider_locusts.swarm.environment import build_environment_spec
from airflow_provider_locusts.swarm.shell import LocalShell

PROGRAM = "cat conf/settings.ini > results/out_<id>.txt; echo <id> >> results/r_000.dat"
PEER_PROGRAM = "cat conf/settings.ini > results/out_$1.txt; echo \"$1\" >> results/r_000.dat"
MB = 1 << 20
WRITABLE_FILES = 99
READONLY_FOLDERS = 100


def build_tree(tree: Path, files: int, tree_mb: float, writable_mb: float) -> None:
    readonly_files = files - WRITABLE_FILES - 1
    per_folder = -(-readonly_files // READONLY_FOLDERS)
    readonly_bytes = int((tree_mb - writable_mb) * MB)
    made = 0
    for k in range(READONLY_FOLDERS):
        folder = tree / "db" / f"part_{k:03d}"
        folder.mkdir(parents=True)
        for j in range(min(per_folder, readonly_files - made)):
            (folder / f"f_{j:02d}.bin").write_bytes(os.urandom(readonly_bytes // readonly_files))
            made += 1
    (tree / "conf").mkdir()
    (tree / "conf" / "settings.ini").write_text("factor=3\n")
    (tree / "results").mkdir()
    for j in range(WRITABLE_FILES):
        (tree / "results" / f"r_{j:03d}.dat").write_bytes(os.urandom(int(writable_mb * MB) // WRITABLE_FILES))


def du_bytes(*paths: Path) -> int:
    """Disk used by these paths together (a file with several links counted once), in bytes."""
    out = subprocess.run(["du", "-s", "-c", "-B1", *map(str, paths)], capture_output=True, text=True, check=True).stdout
    return int(out.splitlines()[-1].split()[0])


def timed_sync() -> float:
    t0 = time.perf_counter()
    os.sync()
    return time.perf_counter() - t0


def run_ours(base: Path, tree: Path, tasks: int) -> dict:
    spec = build_environment_spec(
        environment_dir=tree, writable=["results"], workdir=".", inputs_dir=None, command=PROGRAM,
        output_dir=base / "ours-out", args=[[i] for i in range(tasks)], processes=1,
    )
    root = base / "ours-root"
    engine = SwarmEngine(spec, "bench-environment", str(root), LocalShell(), EngineOptions(heartbeat_interval=5))
    os.sync()
    t0 = time.perf_counter()
    round_ = engine.prepare_round()
    once = time.perf_counter() - t0
    once_synced = once + timed_sync()

    done = root / "exec" / f"done_{round_.managers[0]}"
    started_at = time.time()
    engine.start(round_)
    deadline = time.monotonic() + max(600.0, 2.0 * tasks)
    while not done.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"ours: the manager did not finish within the bound ({tasks} tasks)")
        time.sleep(0.2)
    run = float(done.read_text()) - started_at
    run_synced = run + timed_sync()

    env = root / "environment"
    tree_copy = du_bytes(env / "shared", env / "writable")
    added = du_bytes(root) - tree_copy
    pool = sorted((env / "pool").iterdir())
    replica = du_bytes(env / "shared", pool[0]) - du_bytes(env / "shared")
    result = engine.gather()
    if result.failed:
        raise SystemExit(f"ours: {len(result.failed)} task(s) failed, e.g. {result.failed[:3]}")
    # What environment/task.sh measured of itself, per task (the manifest's changes.seconds).
    phases = [r.changes["seconds"] for r in result.results]
    return {
        "replica": statistics.mean(p["replica"] for p in phases),
        "replica_median": statistics.median(p["replica"] for p in phases),
        "after": statistics.mean(p["after"] for p in phases),
        "once": once, "once_synced": once_synced, "per_task": run / tasks, "per_task_synced": run_synced / tasks,
        "disk_per_task": added / tasks, "replica_bytes": replica, "pool": len(pool), "tree_copy": tree_copy,
    }


def run_peer(base: Path, tree: Path, tasks: int) -> dict:
    folder = base / "peer"
    folder.mkdir()
    os.sync()
    copy = program = 0.0
    for i in range(tasks):
        t0 = time.perf_counter()
        subprocess.run(["cp", "-a", "--", str(tree), str(folder / f"task_{i}")], check=True)
        t1 = time.perf_counter()
        subprocess.run(["bash", "-c", PEER_PROGRAM, "peer", str(i)], cwd=folder / f"task_{i}", check=True)
        copy += t1 - t0
        program += time.perf_counter() - t1
    flush = timed_sync()
    disk = du_bytes(folder / "task_0")
    return {
        "staging": copy / tasks, "staging_synced": (copy + flush) / tasks, "per_task": (copy + program) / tasks,
        "per_task_synced": (copy + program + flush) / tasks, "disk_per_task": disk,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--peer-tasks", type=int, default=20)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--tree-mb", type=float, default=200.0)
    parser.add_argument("--writable-mb", type=float, default=5.0)
    parser.add_argument("--base", type=Path, default=None)
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="bench-environment.", dir=args.base))
    try:
        need = (args.peer_tasks + 2) * args.tree_mb * MB + args.tasks * 64 * 1024
        free = shutil.disk_usage(base).free
        if need > free * 0.8:
            peer = max(3, int((free * 0.8 - 2 * args.tree_mb * MB) // (args.tree_mb * MB)))
            print(f"disk: {free / MB:.0f} MB free in {base}: the peer runs {peer} tasks instead of {args.peer_tasks}")
            args.peer_tasks = peer
        tree = base / "tree"
        build_tree(tree, args.files, args.tree_mb, args.writable_mb)
        count = sum(len(f) for _, _, f in os.walk(tree))
        writable = du_bytes(tree / "results")
        print(f"tree: {count} files, {du_bytes(tree) / MB:.1f} MB, writable part results/ {writable / MB:.2f} MB; "
              f"ours: {args.tasks} tasks, peer: {args.peer_tasks} tasks, one at a time each")

        ours = run_ours(base, tree, args.tasks)
        peer = run_peer(base, tree, args.peer_tasks)

        ms = 1000.0
        print(f"ours, once per swarm: copy and seal the tree {ours['once']:.2f} s ({ours['once_synced']:.2f} s with sync)")
        print(f"ours, per task: replica ready to run {ours['replica'] * ms:.1f} ms (median {ours['replica_median'] * ms:.1f} ms); "
              f"after the command (snapshot, compare, collect, reset, check) {ours['after'] * ms:.1f} ms; all of it, dispatch and "
              f"program included, {ours['per_task'] * ms:.1f} ms ({ours['per_task_synced'] * ms:.1f} ms with sync)")
        print(f"peer, per task: cp -a {peer['staging'] * ms:.1f} ms ({peer['staging_synced'] * ms:.1f} ms with sync); "
              f"with the program {peer['per_task'] * ms:.1f} ms ({peer['per_task_synced'] * ms:.1f} ms with sync)")
        print(f"staging ratio, peer cp -a / ours replica: {peer['staging'] / ours['replica']:.1f}x (target >= 10x); "
              f"peer cp -a / ours everything per task: {peer['staging'] / ours['per_task']:.1f}x in the page cache, "
              f"{peer['staging_synced'] / ours['per_task_synced']:.1f}x with sync")
        print(f"disk per task: ours {ours['disk_per_task'] / 1024:.0f} KB ({ours['disk_per_task'] / writable:.2f} x the writable part; "
              f"the pool holds {ours['pool']} replica(s) of {ours['replica_bytes'] / MB:.2f} MB = {ours['replica_bytes'] / writable:.2f} x the "
              f"writable part), peer {peer['disk_per_task'] / MB:.1f} MB; ratio peer/ours "
              f"{peer['disk_per_task'] / ours['disk_per_task']:.0f}x (target: ours <= 1.2 x the writable part)")
    finally:
        subprocess.run(["rm", "-rf", "--", str(base)], check=False)


if __name__ == "__main__":
    sys.exit(main())
