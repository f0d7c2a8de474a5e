"""Branch on a swarm's failures: publish when every task succeeded, otherwise handle the failures.

Argument mode: one task per argument list. Task k writes `square_<id>.txt`; the tasks whose
number is a multiple of 7 exit with an error, so this run takes the failure branch and
lists the failed ids and their reasons.

    python dags_examples/example_branch_on_failures.py
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import dag, task

from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator

EXAMPLE_DIR = Path(os.environ.get("LOCUSTS_EXAMPLE_DIR", "/tmp/locusts_branch_example"))


@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["locusts", "example"])
def locusts_branch_on_failures():
    swarm = LocustsSwarmOperator(
        task_id="swarm",
        deferrable=True,
        args=[[n] for n in range(1, 31)],
        command='n=<arg0>; if [ $((n % 7)) -eq 0 ]; then echo "refusing $n" >&2; exit 3; fi; echo $((n * n)) > square_<id>.txt',
        outputs=["square_<id>.txt"],
        output_dir=str(EXAMPLE_DIR / "output" / "{{ run_id | replace(':', '-') | replace('+', '_') }}"),
        work_root=str(EXAMPLE_DIR / "swarms"),
        processes=4,
        poll_interval=1,
        # Up to half may fail without failing the Airflow task: the branch below decides.
        max_failed_fraction=0.5,
    )

    @task.branch
    def choose(failed: list[str]) -> str:
        return "handle_failures" if failed else "publish"

    @task
    def publish(summary: dict) -> None:
        print(f"publishing {summary['succeeded_count']} results from {summary['output_dir']}")

    @task
    def handle_failures(failed: list[str], summary: dict) -> list[str]:
        # `failed` is the whole list (its own XCom); the summary names the first failures'
        # reasons, and the manifest every task's.
        for task_id in failed:
            print(f"task {task_id} failed: {summary['reasons'].get(task_id, 'see ' + summary['manifest'])}")
        return failed

    choice = choose(swarm.output["failed"])
    choice >> [publish(swarm.output), handle_failures(swarm.output["failed"], swarm.output)]


example_dag = locusts_branch_on_failures()

if __name__ == "__main__":
    example_dag.test()
