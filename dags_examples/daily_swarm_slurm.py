"""A scheduled swarm: every day, checksum the day's files on the cluster, then branch on
the failures — publish the checksums when all tasks succeeded, otherwise list the failed
files and their reasons for someone to look at (the swarm's own retry already resumed
what it could: tasks that succeeded are never run again).

Expects, per day, files `<input root>/<ds>/sample_<id>.dat`. Settings as in
example1_slurm_ssh.py, plus LOCUSTS_DAILY_INPUT_ROOT (default /tmp/locusts_daily/input).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import dag, task

from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator

INPUT_ROOT = os.environ.get("LOCUSTS_DAILY_INPUT_ROOT", "/tmp/locusts_daily/input")
OUTPUT_ROOT = os.environ.get("LOCUSTS_DAILY_OUTPUT_ROOT", "/tmp/locusts_daily/output")


@dag(
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["locusts", "example", "slurm"],
)
def locusts_daily_checksums():
    swarm = LocustsSwarmOperator(
        task_id="checksums",
        deferrable=True,
        command="sha256sum sample_<id>.dat > sample_<id>.sha256",
        input_dir=INPUT_ROOT + "/{{ ds }}",
        task_inputs=["sample_<id>.dat"],
        outputs=["sample_<id>.sha256"],
        output_dir=OUTPUT_ROOT + "/{{ ds }}",
        ssh_conn_id=os.environ.get("LOCUSTS_SSH_CONN_ID", "locusts_test_ssh"),
        remote_root=os.environ.get("LOCUSTS_REMOTE_ROOT", "/home/locusts/swarms"),
        scheduler="slurm",
        nodes=2,
        processes=8,
        min_tasks_per_process=50,
        slurm_options={"partition": os.environ.get("LOCUSTS_SLURM_PARTITION", "debug"), "time": "02:00:00"},
        task_retries=1,
        max_failed_fraction=0.05,
        poll_interval=30,
    )

    @task.branch
    def any_failures(failed: list[str]) -> str:
        return "list_failures" if failed else "publish"

    @task
    def publish(summary: dict) -> None:
        print(f"publishing {summary['succeeded_count']} checksums from {summary['output_dir']}")

    @task
    def list_failures(failed: list[str], summary: dict) -> None:
        # Every failed id is in the "failed" XCom; the summary gives the first ones' reasons.
        for task_id in failed:
            print(f"sample {task_id}: {summary['reasons'].get(task_id, 'see ' + summary['manifest'])}")

    any_failures(swarm.output["failed"]) >> [publish(swarm.output), list_failures(swarm.output["failed"], swarm.output)]


locusts_daily_checksums()
