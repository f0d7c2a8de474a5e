"""A Custom Environment: a program that needs its whole tree, run once per input, each run in a
replica of the tree of its own, on this machine.

The program, `bin/measure.sh ID` (it lives in the tree, like its config), runs from the top of
the tree: it reads its factor and unit from `conf/settings.ini`, writes
`results/sample_<id>.txt`, appends a line to `logs/measure.log`, and moves its input out of
`inbox/` into `done/`. `results/`, `logs/`, `done/` and `inbox/` are the writable parts: every
task gets its own copy of them; `conf/` and `bin/` are shared read-only. What each task
created, modified and deleted is in the manifest, and its created and modified files are
collected into `output_dir/task_<id>/`. Run it with `dag.test()`:

    python dags_examples/example_custom_environment.py
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import dag, task

from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator

EXAMPLE_DIR = Path(os.environ.get("LOCUSTS_EXAMPLE_DIR", "/tmp/locusts_custom_environment"))
SAMPLES = 20

MEASURE = """#!/bin/sh
# measure.sh ID: scale the values of inbox/sample_ID.txt by the factor of conf/settings.ini.
set -eu
id=$1
factor=$(sed -n 's/^factor=//p' conf/settings.ini)
unit=$(sed -n 's/^unit=//p' conf/settings.ini)
awk -v f="$factor" -v u="$unit" '{ print $1 * f, u }' "inbox/sample_$id.txt" > "results/sample_$id.txt"
echo "sample $id: $(wc -l < "inbox/sample_$id.txt") values scaled by $factor" >> logs/measure.log
mv "inbox/sample_$id.txt" done/
"""


def make_tree_and_inputs(base: Path) -> tuple[Path, Path]:
    """The program's tree (kept if it exists: it is the user's) and one input file per sample."""
    tree = base / "tree"
    if not tree.exists():
        for folder in ("conf", "bin", "results", "logs", "done", "inbox"):
            (tree / folder).mkdir(parents=True)
        (tree / "conf" / "settings.ini").write_text("factor=3\nunit=km\n")
        (tree / "bin" / "measure.sh").write_text(MEASURE)
        (tree / "bin" / "measure.sh").chmod(0o755)
        (tree / "logs" / "measure.log").write_text("measure.log of the tree\n")
    inputs = base / "input"
    inputs.mkdir(parents=True, exist_ok=True)
    for i in range(SAMPLES):
        (inputs / f"sample_{i}.txt").write_text("".join(f"{v}\n" for v in range(i, i + 3)))
    return tree, inputs


@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["locusts", "example"])
def locusts_custom_environment():
    @task
    def prepare() -> dict:
        tree, inputs = make_tree_and_inputs(EXAMPLE_DIR)
        return {"tree": str(tree), "inputs": str(inputs)}

    paths = prepare()
    swarm = LocustsSwarmOperator(
        task_id="swarm",
        deferrable=True,
        command="bin/measure.sh <id>",
        input_dir="{{ ti.xcom_pull(task_ids='prepare')['inputs'] }}",
        task_inputs=["sample_<id>.txt"],
        environment_dir="{{ ti.xcom_pull(task_ids='prepare')['tree'] }}",
        environment_writable=["results", "logs", "done", "inbox"],
        environment_workdir=".",
        environment_inputs_dir="inbox",  # where each task finds its input, in its replica
        outputs=["results/sample_<id>.txt"],  # compulsory, relative to the tree
        output_dir=str(EXAMPLE_DIR / "output" / "{{ run_id | replace(':', '-') | replace('+', '_') }}"),
        work_root=str(EXAMPLE_DIR / "swarms"),
        processes=4,
        poll_interval=1,
    )

    @task
    def report(summary: dict) -> None:
        print(f"{summary['succeeded_count']} of {summary['total']} tasks succeeded; their changes are in {summary['output_dir']}")
        if summary["failed_count"]:
            print(f"failed: {summary['reasons']}")

    paths >> swarm
    report(swarm.output)


example_dag = locusts_custom_environment()

if __name__ == "__main__":
    run = example_dag.test()
    print(f"Custom Environment example finished: dag run state {run.state}. Results in {EXAMPLE_DIR / 'output'}")
