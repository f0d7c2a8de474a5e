"""Cancelling a running swarm on the real cluster: operator.on_kill (worker side) and
trigger.on_kill (triggerer side), for SLURM jobs and for managers started directly over SSH.

These tests call operator.execute() by hand with a stand-in task instance (see
tests/conftest.py StandInTI): a user killing a deferred task cannot be produced by dag.test().
execute() starts the swarm for real and defers (raises TaskDeferred), which hands us the
real trigger.
"""

from __future__ import annotations

import asyncio
import shlex

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator

from .conftest import CONN_ID, unique_name, wait_until

pytestmark = pytest.mark.cluster

# Each task records its shell's pid and its sleep's pid, then waits for the sleep.
SLEEPER = "sleep 60 & printf '%s %s\\n' $$ $! > pids.tmp && mv pids.tmp pids; wait"


def start_deferred(operator: LocustsSwarmOperator, context: dict) -> object:
    """operator.execute() for real, up to self.defer(): returns the trigger it deferred to."""
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    assert deferred.value.method_name == "execute_complete"
    return deferred.value.trigger


def kill(how: str, operator: LocustsSwarmOperator, trigger) -> None:
    if how == "operator":
        operator.on_kill()
    else:
        asyncio.run(trigger.on_kill())


def sleeper_operator(tmp_path, remote_root: str, swarm_id: str, scheduler: str) -> LocustsSwarmOperator:
    return LocustsSwarmOperator(
        task_id="swarm",
        command=SLEEPER,
        args=[[i] for i in range(4)],
        output_dir=str(tmp_path / "out"),
        work_root=str(tmp_path / "staging"),
        swarm_id=swarm_id,
        ssh_conn_id=CONN_ID,
        remote_root=remote_root,
        scheduler=scheduler,
        processes=2,
        slurm_options={"cpus_per_task": 1} if scheduler == "slurm" else None,
        heartbeat_interval=1,
        heartbeat_timeout=30,
        deferrable=True,
    )


def remote_task_pids(cluster, swarm_root: str) -> list[int]:
    """Pids the running tasks recorded (the attempt and its sleep), read on the host."""
    out = cluster.ssh(f"cat {shlex.quote(swarm_root)}/work/batch_0/*/pids 2>/dev/null || true").stdout
    return [int(p) for p in out.split()]


def remote_alive(cluster, pids: list[int]) -> list[int]:
    """Those of `pids` still running on the host: present in /proc and not a zombie
    (orphans of detached managers may never be reaped on this machine)."""
    script = (
        'for p in "$@"; do s=$(sed "s/.*) //" "/proc/$p/stat" 2>/dev/null | cut -d" " -f1); '
        '[ -n "$s" ] && [ "$s" != Z ] && echo "$p"; done; true'
    )
    out = cluster.ssh(f"bash -c {shlex.quote(script)} alive {' '.join(map(str, pids))}").stdout
    return [int(p) for p in out.split()]


@pytest.mark.parametrize("how", ["operator", "trigger"])
def test_cancel_slurm_swarm_over_ssh(cluster, tmp_path, remote_root, stand_in_context, swarm_guard, how):
    swarm_id = unique_name(f"cancel-slurm-{how}")
    operator = sleeper_operator(tmp_path, remote_root, swarm_id, "slurm")
    swarm_guard.watch(operator, swarm_id)
    trigger = start_deferred(operator, stand_in_context("cluster_cancel_slurm"))
    swarm_root = f"{remote_root}/{swarm_id}"

    job_id = cluster.ssh(f"cat {swarm_root}/exec/jobid_r0m0").stdout.strip()
    assert job_id.isdigit()
    wait_until(lambda: cluster.job_state(job_id) == "RUNNING", 30, what=f"job {job_id} RUNNING")
    task_pids = wait_until(lambda: len(p := remote_task_pids(cluster, swarm_root)) == 4 and p, 30, what="2 tasks running")

    kill(how, operator, trigger)

    wait_until(lambda: cluster.job_state(job_id) == "CANCELLED", 30, what=f"job {job_id} CANCELLED")
    wait_until(lambda: not remote_alive(cluster, task_pids), 30, what="the job's tasks to be gone")
    assert cluster.live_jobs_named(swarm_id[:40]) == []


@pytest.mark.parametrize("how", ["operator", "trigger"])
def test_cancel_direct_swarm_over_ssh(cluster, tmp_path, remote_root, stand_in_context, swarm_guard, how):
    swarm_id = unique_name(f"cancel-direct-{how}")
    operator = sleeper_operator(tmp_path, remote_root, swarm_id, "direct")
    swarm_guard.watch(operator)
    trigger = start_deferred(operator, stand_in_context("cluster_cancel_direct"))
    swarm_root = f"{remote_root}/{swarm_id}"

    manager_pid = int(
        wait_until(lambda: cluster.ssh(f"cat {swarm_root}/exec/pid_r0m0 2>/dev/null || true").stdout.split()[:1], 15,
                   what="the manager's pid file")[0]
    )
    task_pids = wait_until(lambda: len(p := remote_task_pids(cluster, swarm_root)) == 4 and p, 30, what="2 tasks running")
    assert remote_alive(cluster, [manager_pid, *task_pids]) == [manager_pid, *task_pids]

    kill(how, operator, trigger)

    wait_until(lambda: not remote_alive(cluster, [manager_pid, *task_pids]), 30, what="manager and tasks to be gone")
    # Only the first two tasks ever started: the manager did not go on with the others.
    assert cluster.ssh(f"ls {swarm_root}/work/batch_0/*/pids | wc -l").stdout.strip() == "2"
