"""SLURM-side ends of a manager's job, injected for real on the test cluster (SLURM on this
machine): a job cancelled by someone else, a manager killed with SIGKILL inside its job, and
a job that hits its time limit. Unfinished tasks are rescheduled on a new job (up to
`max_reschedules`); tasks that had finished keep their result; when no reschedule is left
the reason names the SLURM state. Jobs are submitted --no-requeue, so a NODE_FAIL
does not make SLURM run the whole manager again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from airflow.sdk import DAG

from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator

from .conftest import unique_name
from .helpers import starts_per_task

pytestmark = pytest.mark.cluster


class Saboteur(threading.Thread):
    """When the first manager's job has run `after` seconds, does `action(exec_dir)` once."""

    def __init__(self, exec_dir: Path, after: float, action):
        super().__init__(daemon=True)
        self.exec_dir, self.after, self.action = exec_dir, after, action
        self.error = None

    def run(self) -> None:
        try:
            deadline = time.monotonic() + 120
            while not (self.exec_dir / "pid_r0m0").exists():
                if time.monotonic() > deadline:
                    raise TimeoutError("the first manager never started")
                time.sleep(0.1)
            time.sleep(self.after)
            self.action(self.exec_dir)
        except Exception as error:  # noqa: BLE001 - reported by the test
            self.error = error


def scancel_first_job(exec_dir: Path) -> None:
    job_id = (exec_dir / "jobid_r0m0").read_text().strip()
    subprocess.run(["scancel", job_id], check=True, timeout=30)


def kill_first_manager(exec_dir: Path) -> None:
    pid = int((exec_dir / "pid_r0m0").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)


def fail_the_node(exec_dir: Path) -> None:
    """The node goes DOWN under the running job (SLURM ends it NODE_FAIL), then comes back."""
    node = os.environ["LOCUSTS_SLURM_NODE"]
    job_id = (exec_dir / "jobid_r0m0").read_text().strip()
    subprocess.run(["scontrol", "update", f"nodename={node}", "state=down", "reason=locusts test: node failure"], check=True, timeout=30)
    try:
        deadline = time.monotonic() + 60
        while "JobState=NODE_FAIL" not in subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30).stdout:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} did not end NODE_FAIL")
            time.sleep(0.2)
    finally:
        bring_back(node)


def bring_back(node: str) -> None:
    """Resume the node until sinfo shows it usable (a resume can be refused while the
    controller is still processing the failure)."""
    deadline = time.monotonic() + 60
    while True:
        state = subprocess.run(["sinfo", "-h", "-n", node, "-o", "%t"], capture_output=True, text=True, timeout=30).stdout.strip()
        if state.rstrip("*~#") in ("idle", "mix", "alloc", "comp"):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"node {node} stayed {state!r} after resume")
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True, timeout=30)
        time.sleep(0.5)


def slurm_dag(dag_id: str, tmp_path: Path, swarm_id: str, command: str, n: int, **kwargs) -> DAG:
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        LocustsSwarmOperator(
            task_id="swarm",
            deferrable=True,
            command=command,
            args=[[i] for i in range(n)],
            outputs=["out_<id>.txt"],
            output_dir=str(tmp_path / "out"),
            work_root=str(tmp_path / "swarms"),
            swarm_id=swarm_id,
            scheduler="slurm",
            processes=2,
            poll_interval=0.5,
            heartbeat_interval=1,
            heartbeat_timeout=30,
            **kwargs,
        )
    return dag


def round0_events(exec_dir: Path, kind: str) -> set[int]:
    """Task indexes with a `kind` event in the first job; for "end", only tasks that ended on
    their own (a task killed by a signal with its job, exit code > 128, was cut off)."""
    indexes = set()
    for line in (exec_dir / "events_r0m0").read_text().splitlines():
        fields = line.split()
        if fields[2] == kind and not (kind == "end" and int(fields[3]) > 128):
            indexes.add(int(fields[1]))
    return indexes


@pytest.mark.parametrize(
    "sabotage", [scancel_first_job, kill_first_manager, fail_the_node], ids=["cancelled-by-someone-else", "manager-sigkill", "node-fail"]
)
def test_a_job_ended_early_is_rescheduled_and_finished_tasks_keep_their_result(cluster, run_dag, tmp_path, sabotage):
    swarm_id = unique_name("slurmfault")
    exec_dir = tmp_path / "swarms" / swarm_id / "exec"
    saboteur = Saboteur(exec_dir, after=3, action=sabotage)
    saboteur.start()
    dag = slurm_dag(f"slurm_fault_{sabotage.__name__}", tmp_path, swarm_id, "sleep 1; echo <arg0> > out_<id>.txt", n=16,
                    slurm_options={"cpus_per_task": 1}, max_reschedules=1)
    result = run_dag(dag)
    saboteur.join(timeout=60)

    assert saboteur.error is None, saboteur.error
    assert result.task_states() == {"swarm": "success"}
    assert result.xcom("swarm", key="succeeded") == [str(i) for i in range(16)]
    ledger = json.loads((exec_dir / "ledger.json").read_text())
    assert [r["kind"] for r in ledger["rounds"]] == ["start", "reschedule"]
    finished_early = round0_events(exec_dir, "end")
    cut_off = round0_events(exec_dir, "start") - finished_early
    assert 0 < len(finished_early) < 16
    starts = starts_per_task(exec_dir)
    for i in range(16):
        # Finished in the first job: never run again. Cut off mid-run: run once more in the
        # new job. Never started: run once, in the new job.
        assert starts[str(i)] == (2 if i in cut_off else 1), (i, starts[str(i)])
        assert (tmp_path / "out" / f"out_{i}.txt").read_text() == f"{i}\n"
    assert (exec_dir / "jobid_r1m0").exists()


def test_a_job_that_hits_its_time_limit_fails_its_unfinished_tasks_naming_timeout(cluster, run_dag, tmp_path):
    # SLURM checks time limits about once a minute: this test waits for one TIMEOUT (~1-2 min).
    swarm_id = unique_name("slurmtimeout")
    command = 'if [ <arg0> = 3 ]; then sleep 600; fi; echo <arg0> > out_<id>.txt'
    dag = slurm_dag("slurm_timeout", tmp_path, swarm_id, command, n=6,
                    slurm_options={"cpus_per_task": 1, "time": "00:00:10"}, max_reschedules=0, max_failed_fraction=0.5)
    result = run_dag(dag)

    summary = result.xcom("swarm")
    assert result.xcom("swarm", key="failed") == summary["failed_first"] == ["3"]
    assert "TIMEOUT" in summary["reasons"]["3"]
    assert result.xcom("swarm", key="succeeded") == ["0", "1", "2", "4", "5"]
