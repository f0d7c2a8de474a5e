"""Failing fast and saying why, on the real SSH + SLURM cluster: a shared folder the cluster
account cannot write into, a setup line that fails, a container prefix naming a missing image,
a job id that cannot be recorded. Each asserts the time to fail, the message, and that nothing
of the swarm is left in the queue.

The operator is called directly with a stand-in task instance (tests/conftest.py StandInTI),
and the trigger it defers to is run for real, so each step's error can be read as raised.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_locusts.exceptions import SwarmExecutionError, SwarmPreflightError, SwarmStartError
from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator
from airflow_provider_locusts.swarm.engine import EngineOptions, SwarmEngine
from airflow_provider_locusts.swarm.handle import SwarmHandle
from airflow_provider_locusts.hooks.locusts import LocustsHook
from airflow_provider_locusts.swarm.spec import build_spec

from .conftest import CONN_ID, unique_name

pytestmark = pytest.mark.cluster


def slurm_operator(tmp_path: Path, swarm_id: str, remote_root: str, **kwargs) -> LocustsSwarmOperator:
    settings = dict(
        task_id="swarm", deferrable=True, command="echo <arg0> > out_<id>.txt", args=[[i] for i in range(6)],
        outputs=["out_<id>.txt"], output_dir=str(tmp_path / "out"), work_root=str(tmp_path / "work"), swarm_id=swarm_id,
        ssh_conn_id=CONN_ID, remote_root=remote_root, scheduler="slurm", processes=2, slurm_options={"cpus_per_task": 1},
        poll_interval=0.5, heartbeat_interval=1, heartbeat_timeout=120, max_reschedules=2,
    )
    settings.update(kwargs)
    return LocustsSwarmOperator(**settings)


def run_to_the_end(operator: LocustsSwarmOperator, context: dict, timeout: float = 120) -> None:
    """execute(), the real trigger, execute_complete() — as Airflow would, once."""
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)

    async def first_event():
        async for event in deferred.value.trigger.run():
            return event.payload

    event = asyncio.run(asyncio.wait_for(first_event(), timeout))
    operator.execute_complete(context, json.loads(json.dumps(event)))


def test_a_shared_folder_the_cluster_account_cannot_write_fails_in_seconds(cluster, tmp_path, stand_in_context, swarm_guard):
    # As a site can set it up by mistake: the shared folder belongs to the Airflow account
    # (root here), world-writable and sticky; the folders the swarm makes there are the
    # Airflow account's, group root, 2775 — the cluster account `locusts` shares no group.
    shared = cluster.shared_dir / unique_name("nogroup")
    shared.mkdir()
    os.chmod(shared, 0o1777)
    swarm_id = unique_name("nogroup-swarm")
    swarm_guard.watch(swarm_id=swarm_id)
    operator = slurm_operator(tmp_path, swarm_id, str(shared), shared_root=str(shared))
    started = time.monotonic()
    try:
        with pytest.raises(SwarmPreflightError) as error:
            operator.execute(stand_in_context("nogroup"))
        elapsed = time.monotonic() - started
        message = str(error.value)
        assert elapsed < 20, elapsed
        assert "the account locusts (groups: locusts)" in message
        assert str(shared) in message and "common group" in message and "setgid" in message
        assert cluster.jobs_named(swarm_id[:40]) == []
        assert sorted(p.name for p in shared.iterdir()) == []  # nothing staged, the probe removed
    finally:
        shutil.rmtree(shared, ignore_errors=True)


@pytest.mark.parametrize(
    ("kind", "settings", "words"),
    [
        ("setup", {"setup": ["echo preparing", "false", "echo never"]}, ["a setup line failed (exit code 1): false"]),
        ("image", {"container": "bwrap --ro-bind /images/missing-tool.sif /image --bind / /"},
         ["Can't find source path /images/missing-tool.sif"]),
    ],
)
def test_jobs_that_end_before_their_manager_starts_fail_the_task_at_once_and_are_not_resubmitted(
    cluster, tmp_path, remote_root, stand_in_context, swarm_guard, kind, settings, words
):
    swarm_id = unique_name(f"nostart-{kind}")
    swarm_guard.watch(swarm_id=swarm_id)
    operator = slurm_operator(tmp_path, swarm_id, remote_root, nodes=2, min_tasks_per_process=1, **settings)
    context = stand_in_context(f"nostart_{kind}")
    started = time.monotonic()
    with pytest.raises(SwarmStartError) as error:
        run_to_the_end(operator, context)
    elapsed = time.monotonic() - started
    message = str(error.value)
    # Well before heartbeat_timeout (120 s): at the first poll after the jobs ended.
    assert elapsed < 60, elapsed
    assert "None of the 2 manager(s) of round 0 started a task, so nothing was submitted again" in message
    for manager in ("r0m0", "r0m1"):
        assert f"{manager}: job " in message and "FAILED" in message
    for word in words:
        assert word in message
    # One round only, both jobs gone; every task reported as never started, the lists pushed.
    ledger = json.loads(cluster.ssh(f"cat {remote_root}/{swarm_id}/exec/ledger.json").stdout)
    assert [r["managers"] for r in ledger["rounds"]] == [["r0m0", "r0m1"]]
    assert cluster.live_jobs_named(swarm_id[:40]) == []
    assert context["ti"].xcoms["failed"] == [str(i) for i in range(6)]
    manifest = [json.loads(line) for line in (tmp_path / "out" / f"locusts_manifest.{swarm_id}.jsonl").read_text().splitlines()]
    assert all(e["reason"].startswith("never started: ") and words[0] in e["reason"] for e in manifest)


def test_a_job_id_that_cannot_be_recorded_cancels_the_job(cluster, tmp_path, remote_root, swarm_guard):
    swarm_id = unique_name("nojobid")
    swarm_guard.watch(swarm_id=swarm_id)
    spec = build_spec(command="sleep 60", args=[[0]], output_dir=tmp_path / "out")
    handle = SwarmHandle(swarm_id, f"{remote_root}/{swarm_id}", ssh_conn_id=CONN_ID, output_dir=str(spec.output_dir), scheduler="slurm")
    hook = LocustsHook(ssh_conn_id=CONN_ID, work_root=str(tmp_path / "work"))
    options = EngineOptions(scheduler="slurm", heartbeat_interval=1, slurm_options={"cpus_per_task": 1})
    with hook.engine(handle, spec=spec, options=options) as engine:
        round_ = engine.prepare_round()
        # The exec folder becomes read-only for the cluster account: sbatch still works
        # (the job's output goes elsewhere), but the job id cannot be written down.
        cluster.ssh(f"chmod 555 {handle.root}/exec")
        try:
            with pytest.raises(SwarmExecutionError, match=r"could not be recorded .* were cancelled") as error:
                engine.start(round_)
        finally:
            cluster.ssh(f"chmod 755 {handle.root}/exec")
    job_id = str(error.value).split("the job id ")[1].split()[0]
    assert cluster.job_state(job_id) in ("CANCELLED", None)
    assert cluster.live_jobs_named(swarm_id[:40]) == []
    hook.close()
