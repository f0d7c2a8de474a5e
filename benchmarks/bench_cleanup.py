"""cleanup=True's removal of a swarm root at scale, repeated: until ``cleanup()`` returns (the root
renamed away to ``.<swarm id>.removing-<unique>``), and until the detached process deleting its
files in the background ends.

The root is bench_scale.py's swarm staged for real (``echo <arg0> > o_<id>.txt``, argument
mode, ``processes=4``): a folder per task, as a gathered root holds them (its outputs collected,
its empty logs gone), with its exec/ files. Not run: its events and results would add a few
files to exec/, nothing per task. Each repetition stages a new root, waits ``--settle`` seconds
(on ext4, files made just after many were deleted are slow, and so is what comes next), then
removes it through SwarmEngine.cleanup() and a LocalShell, as the operator does.

Usage: ``python benchmarks/bench_cleanup.py [--tasks 100000] [--repeat 3] [--settle 20] [--dir DIR]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's package, whatever is installed

from airflow_provider_locusts.swarm.engine import EngineOptions, SwarmEngine  # noqa: E402
from airflow_provider_locusts.swarm.shell import LocalShell  # noqa: E402
from airflow_provider_locusts.swarm.spec import build_spec  # noqa: E402


def stage(work_root: Path, swarm_id: str, tasks: int) -> Path:
    spec = build_spec(command="echo <arg0> > o_<id>.txt", args=[[i] for i in range(tasks)], outputs=["o_<id>.txt"],
                      output_dir=work_root.parent / "out", processes=4)
    engine = SwarmEngine(spec, swarm_id, str(work_root / swarm_id), LocalShell(), EngineOptions())
    engine.prepare_round()
    return work_root / swarm_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--settle", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-cleanup-", dir=args.dir))
    returned, deleted = [], []
    try:
        work_root = base / "swarms"
        print(f"cleanup of a {args.tasks}-task swarm root; {os.cpu_count()} CPU(s)", flush=True)
        for i in range(args.repeat):
            t0 = time.perf_counter()
            root = stage(work_root, f"bench_cleanup_{i}", args.tasks)
            inodes = sum(len(os.listdir(root / "work" / b)) for b in os.listdir(root / "work"))
            print(f"  staged {inodes} task folders in {time.perf_counter() - t0:.1f} s; settling {args.settle:g} s", flush=True)
            time.sleep(args.settle)
            load = os.getloadavg()[0]
            engine = SwarmEngine.attach(str(root), LocalShell())
            t0 = time.perf_counter()
            removal = engine.cleanup()
            returned.append(time.perf_counter() - t0)
            if root.exists() or not removal.hidden:
                raise RuntimeError(f"the root was not renamed away: {removal.line()}")
            hidden = Path(removal.hidden)
            while hidden.exists():
                if time.perf_counter() - t0 > args.timeout:
                    raise RuntimeError(f"the background deletion of {hidden} did not end in {args.timeout:g} s")
                time.sleep(0.05)
            deleted.append(time.perf_counter() - t0)
            print(f"  cleanup {i + 1}: returned in {returned[-1]:.3f} s; background deletion ended after "
                  f"{deleted[-1]:.1f} s (load {load:.2f})", flush=True)
        print(f"cleanup() returned: median {statistics.median(returned):.3f} s, min {min(returned):.3f}, max {max(returned):.3f}; "
              f"background deletion: median {statistics.median(deleted):.1f} s, min {min(deleted):.1f}, max {max(deleted):.1f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
