"""The original locusts' Example 1 as one Airflow task: 101 tasks, 4 at a time, on this machine.

Each task gets its two inputs in a clean folder, sleeps 1 s, and writes `ls_output_<id>.txt`
and `cat_output_<id>.txt`; both are compulsory. Run it with `dag.test()`:

    python dags_examples/example1_local.py
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path

from airflow.sdk import dag, task

sys.path.insert(0, os.path.dirname(__file__))
from example1_data import COMMAND, OUTPUTS, SHARED_INPUTS, TASK_INPUTS, make_example1_inputs  # noqa: E402

from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator  # noqa: E402

EXAMPLE_DIR = Path(os.environ.get("LOCUSTS_EXAMPLE_DIR", "/tmp/locusts_example1"))


@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["locusts", "example"])
def locusts_example1_local():
    @task
    def make_inputs() -> str:
        return str(make_example1_inputs(EXAMPLE_DIR / "input"))

    swarm = LocustsSwarmOperator(
        task_id="swarm",
        deferrable=True,
        command=COMMAND,
        input_dir="{{ ti.xcom_pull(task_ids='make_inputs') }}",
        task_inputs=TASK_INPUTS,
        shared_inputs=SHARED_INPUTS,
        outputs=OUTPUTS,
        # One output folder per run: a run never meets files of another.
        output_dir=str(EXAMPLE_DIR / "output" / "{{ run_id | replace(':', '-') | replace('+', '_') }}"),
        work_root=str(EXAMPLE_DIR / "swarms"),
        processes=4,
    )

    @task
    def report(summary: dict) -> None:
        print(f"{summary['succeeded_count']} of {summary['total']} tasks succeeded; outputs in {summary['output_dir']}")
        if summary["failed_count"]:
            print(f"{summary['failed_count']} failed, first: {summary['failed_first']}")

    make_inputs() >> swarm
    report(swarm.output)


example_dag = locusts_example1_local()

if __name__ == "__main__":
    run = example_dag.test()
    print(f"Example 1 finished: dag run state {run.state}. Results in {EXAMPLE_DIR / 'output'}")
