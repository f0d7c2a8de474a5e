"""The Swarm view's per-task table at 100,000 tasks, without a server: a results.jsonl shaped like
a gather's is read through the real host command (a local subprocess, as for a local swarm),
parsed into columns, then paged, filtered, searched and sorted from memory. Wall and CPU
seconds of each step (median of --repeat runs). The same code answers the api-server's
/locusts/api/swarm/tasks; tests/ui/test_swarm_view_scale.py measures it there.

    python benchmarks/bench_view_manifest.py [--tasks 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from airflow_provider_locusts.swarm.host_commands import parse_read_changed, read_changed_command  # noqa: E402
from airflow_provider_locusts.swarm.shell import LocalShell  # noqa: E402
from airflow_provider_locusts.www.manifest_table import MAX_MANIFEST_BYTES, ManifestTable  # noqa: E402
from tests.www.records import swarm_records  # noqa: E402


def build(root: Path, tasks: int) -> int:
    (root / "exec").mkdir(parents=True)
    with open(root / "exec" / "results.jsonl", "w") as f:
        for r in swarm_records(tasks, managers=8, processes=16):
            r["folder"] = f"{root}/work/batch_{r['index'] // 10000}/task_{r['index']}"
            r["outputs"] = [] if r["state"] == "failed" else [f"/data/out/out_{r['index']}.txt"]
            f.write(json.dumps(r) + "\n")
    return (root / "exec" / "results.jsonl").stat().st_size


def timed(step):
    wall, cpu = time.perf_counter(), time.process_time()
    value = step()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-view-") as folder:
        root = Path(folder) / "root"
        size = build(root, options.tasks)
        print(f"results.jsonl of {options.tasks:,} tasks: {size / 1e6:.1f} MB")
        figures: dict[str, list[tuple[float, float]]] = {}

        def read():
            script, args = read_changed_command(str(root), "exec/results.jsonl", None, MAX_MANIFEST_BYTES, gzip=False)
            return parse_read_changed(LocalShell().run_script(script, args).check("reading").stdout).data

        for _ in range(options.repeat):
            data, wall, cpu = timed(read)
            figures.setdefault("read the file (host command)", []).append((wall, cpu))
            table, wall, cpu = timed(lambda: ManifestTable(data))
            figures.setdefault("parse into columns", []).append((wall, cpu))
            for name, kwargs in (("page 1", {}), ("page 1,000", {"page": 1000}), ("failed only", {"failed_only": True}),
                                 ("search '9999'", {"query": "9999"}), ("longest first (sorts once)", {"sort": "-duration"}),
                                 ("longest first again", {"sort": "-duration", "page": 7}),
                                 ("failed only, longest first", {"failed_only": True, "sort": "-duration"})):
                _, wall, cpu = timed(lambda kwargs=kwargs: table.page(**kwargs))
                figures.setdefault(name, []).append((wall, cpu))
            del data, table
        print(f"{'step':<32} {'wall ms':>9} {'cpu ms':>9}   (median of {options.repeat})")
        for name, samples in figures.items():
            wall = statistics.median(w for w, _ in samples) * 1000
            cpu = statistics.median(c for _, c in samples) * 1000
            print(f"{name:<32} {wall:>9.1f} {cpu:>9.1f}")


if __name__ == "__main__":
    main()
