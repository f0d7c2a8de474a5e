"""Example 1 on a SLURM cluster reached over SSH: the same 101 tasks as example1_local.py,
packed into one SLURM job that runs 4 at a time, watched from the triggerer over SSH.

It needs an Airflow SSH connection to the cluster's login node. To try it on one machine,
start the project's test cluster (as root: `bash tests/cluster/install.sh && bash
tests/cluster/start.sh`), load its connection (`set -a; . /tmp/locusts-cluster/cluster.env;
set +a`), then:

    python dags_examples/example1_slurm_ssh.py

Settings come from the environment: LOCUSTS_SSH_CONN_ID (default "locusts_test_ssh"),
LOCUSTS_REMOTE_ROOT (default /home/locusts/swarms), LOCUSTS_SLURM_PARTITION (default "debug").
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

EXAMPLE_DIR = Path(os.environ.get("LOCUSTS_EXAMPLE_DIR", "/tmp/locusts_example1_slurm"))


@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["locusts", "example", "slurm"])
def locusts_example1_slurm_ssh():
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
        output_dir=str(EXAMPLE_DIR / "output" / "{{ run_id | replace(':', '-') | replace('+', '_') }}"),
        work_root=str(EXAMPLE_DIR / "staging"),
        ssh_conn_id=os.environ.get("LOCUSTS_SSH_CONN_ID", "locusts_test_ssh"),
        remote_root=os.environ.get("LOCUSTS_REMOTE_ROOT", "/home/locusts/swarms"),
        scheduler="slurm",
        nodes=1,
        processes=4,
        # One CPU per job is enough for `sleep 1` tasks; real work would ask for `processes`.
        slurm_options={"partition": os.environ.get("LOCUSTS_SLURM_PARTITION", "debug"), "cpus_per_task": 1, "time": "00:30:00"},
    )

    @task
    def report(summary: dict) -> None:
        print(f"{summary['succeeded_count']} of {summary['total']} tasks succeeded; outputs in {summary['output_dir']}")

    make_inputs() >> swarm
    report(swarm.output)


example_dag = locusts_example1_slurm_ssh()

if __name__ == "__main__":
    example_dag.test()
