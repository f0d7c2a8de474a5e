"""A deferred swarm's later steps on another worker than the one that started it.

execute() runs with one operator object, work root and input folder (worker A); the real
trigger then watches the swarm; execute_complete() runs on a fresh operator object with
another work root, after worker A's inputs and scratch folders are gone (worker B). Copy
mode over the real SSH + SLURM cluster: everything B needs comes from the swarm's root.
The operator is called directly with a stand-in task instance (tests/conftest.py StandInTI).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator

from .conftest import CONN_ID, unique_name, wait_until
from .helpers import make_inputs, read_events

pytestmark = pytest.mark.cluster

N = 12


def swarm_operator(tmp_path: Path, worker: str, remote_root: str, swarm_id: str, command: str, **kwargs) -> LocustsSwarmOperator:
    settings = dict(
        task_id="swarm",
        deferrable=True,
        command=command,
        input_dir=str(tmp_path / "A-inputs"),
        task_inputs=["in_<id>.txt"],
        shared_inputs={"common": "common.txt"},
        outputs=["out_<id>.txt"],
        output_dir=str(tmp_path / "out"),
        work_root=str(tmp_path / f"{worker}-work"),
        swarm_id=swarm_id,
        ssh_conn_id=CONN_ID,
        remote_root=remote_root,
        scheduler="slurm",
        processes=2,
        slurm_options={"cpus_per_task": 1},
        poll_interval=0.5,
        heartbeat_interval=1,
        heartbeat_timeout=20,
        max_failed_fraction=1.0,
    )
    settings.update(kwargs)
    return LocustsSwarmOperator(**settings)


def run_trigger(trigger, timeout: float = 180) -> dict:
    async def first_event():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(asyncio.wait_for(first_event(), timeout))


def start_on_worker_a(tmp_path, operator, context):
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    return deferred.value.trigger


def forget_worker_a(tmp_path: Path) -> None:
    """What worker B cannot see: A's inputs and A's work root."""
    shutil.rmtree(tmp_path / "A-inputs")
    shutil.rmtree(tmp_path / "A-work", ignore_errors=True)


COPY = 'cat in_<id>.txt <shared>common > out_<id>.txt; [ "<id>" != 5 ] || { echo "task 5 says no" >&2; exit 4; }'


def test_execute_complete_on_another_worker_gathers_from_the_root_alone(cluster, tmp_path, remote_root, stand_in_context, swarm_guard):
    make_inputs(tmp_path / "A-inputs", N)
    swarm_id = unique_name("anyworker")
    swarm_guard.watch(swarm_id=swarm_id)
    context = stand_in_context("any_worker")
    trigger = start_on_worker_a(tmp_path, swarm_operator(tmp_path, "A", remote_root, swarm_id, COPY), context)
    # Copy mode keeps no staging copy on the worker once the swarm is shipped.
    assert list((tmp_path / "A-work").iterdir()) == []
    event = run_trigger(trigger)
    assert event["status"] == "finished"
    forget_worker_a(tmp_path)

    worker_b = swarm_operator(tmp_path, "B", remote_root, swarm_id, COPY)
    summary = worker_b.execute_complete(context, json.loads(json.dumps(event)))

    assert context["ti"].xcoms["succeeded"] == [str(i) for i in range(N) if i != 5]
    assert context["ti"].xcoms["failed"] == summary["failed_first"] == ["5"] and summary["reasons"]["5"] == "exit code 4"
    for i in range(N):
        if i != 5:
            assert (tmp_path / "out" / f"out_{i}.txt").read_text() == f"value {i}\ncommon\n"
    manifest = {e["id"]: e for e in map(json.loads, Path(summary["manifest"]).read_text().splitlines())}
    assert manifest["5"]["folder"] == f"{remote_root}/{swarm_id}/work/batch_0/task_5"  # on the host
    assert manifest["3"]["manager"] == "r0m0" and manifest["3"]["started_at"] <= manifest["3"]["ended_at"]
    assert list((tmp_path / "B-work").iterdir()) == []  # B's scratch folder is gone too
    # What a retry needs is on the host: the results of this gather.
    results = cluster.ssh(f"cat {remote_root}/{swarm_id}/exec/results.jsonl").stdout.splitlines()
    assert len(results) == N


def test_a_lost_manager_is_rescheduled_from_another_worker_with_its_folders_reset_on_the_host(
    cluster, tmp_path, remote_root, stand_in_context, swarm_guard
):
    make_inputs(tmp_path / "A-inputs", N)
    swarm_id = unique_name("anyworker-lost")
    swarm_guard.watch(swarm_id=swarm_id)
    gate = f"{remote_root}/gate"
    # The first attempt of each task leaves a stray file and waits for the gate; the job is
    # cancelled under it. The next attempt must find its folder as staging left it.
    command = (
        f'if [ -e stray ]; then echo "stray file from an earlier attempt" >&2; exit 9; fi; : > stray; '
        f'while [ ! -e {gate} ]; do sleep 0.2; done; cat in_<id>.txt > out_<id>.txt'
    )
    cluster.ssh(f"mkdir -p {remote_root}")
    context = stand_in_context("any_worker_lost")
    trigger = start_on_worker_a(tmp_path, swarm_operator(tmp_path, "A", remote_root, swarm_id, command), context)
    root = f"{remote_root}/{swarm_id}"
    job_id = wait_until(lambda: cluster.ssh(f"cat {root}/exec/jobid_r0m0 2>/dev/null || true").stdout.strip(), 30, what="job id")
    wait_until(lambda: cluster.ssh(f"ls {root}/work/batch_0/*/stray 2>/dev/null | wc -l").stdout.strip() == "2", 60, what="2 tasks running")
    cluster.ssh(f"scancel {job_id}")  # someone else cancels the job: the manager is lost
    event = run_trigger(trigger)
    assert (event["status"], event["lost"]) == ("lost", ["r0m0"])
    forget_worker_a(tmp_path)

    worker_b = swarm_operator(tmp_path, "B", remote_root, swarm_id, command)
    with pytest.raises(TaskDeferred) as deferred:
        worker_b.execute_complete(context, event)
    cluster.ssh(f"touch {gate}")
    event = run_trigger(deferred.value.trigger)
    assert event["status"] == "finished"
    summary = swarm_operator(tmp_path, "C", remote_root, swarm_id, command).execute_complete(context, event)

    assert context["ti"].xcoms["succeeded"] == [str(i) for i in range(N)], summary["reasons"]
    for i in range(N):
        assert (tmp_path / "out" / f"out_{i}.txt").read_text() == f"value {i}\n"
    # Round 1 ran exactly the tasks round 0 had not finished well, each once more; they
    # succeeded, so their folders no longer held the first attempt's stray file.
    events = read_events(Path(root) / "exec")  # this test, as root on the host, reads them there
    ended_well = {index for _, index, kind, rc in events["r0m0"] if kind == "end" and rc == "0"}
    rerun = [index for _, index, kind, _ in events["r1m0"] if kind == "start"]
    assert len(rerun) >= 2 and sorted(rerun) == sorted(set(rerun))
    assert set(rerun) == {str(i) for i in range(N)} - ended_well


def test_outputs_collected_on_the_host_never_cross_the_network(cluster, tmp_path, remote_root, stand_in_context, swarm_guard, monkeypatch):
    from airflow_provider_locusts.hooks.ssh_shell import SSHTarTransfer

    # A spy on the real transfer (it still runs): which files were asked of the host.
    pulled: list[str] = []
    real_pull = SSHTarTransfer.pull

    def recording_pull(self, remote_root_, local_root, relative_paths):
        pulled.extend(relative_paths)
        return real_pull(self, remote_root_, local_root, relative_paths)

    monkeypatch.setattr(SSHTarTransfer, "pull", recording_pull)
    make_inputs(tmp_path / "A-inputs", N)
    swarm_id = unique_name("hostout")
    swarm_guard.watch(swarm_id=swarm_id)
    host_out = f"{remote_root}/results"
    context = stand_in_context("host_outputs")
    operator = swarm_operator(tmp_path, "A", remote_root, swarm_id, COPY, output_dir=host_out, output_dir_on_host=True)
    event = run_trigger(start_on_worker_a(tmp_path, operator, context))
    summary = swarm_operator(tmp_path, "B", remote_root, swarm_id, COPY, output_dir=host_out, output_dir_on_host=True).execute_complete(
        context, event
    )

    assert summary["failed_first"] == ["5"] and summary["succeeded_count"] == N - 1
    assert summary["manifest"] == f"{host_out}/locusts_manifest.{swarm_id}.jsonl"
    listing = cluster.ssh(f"ls {host_out}").stdout.split()
    assert sorted(listing) == sorted([f"out_{i}.txt" for i in range(N) if i != 5]
                                     + [f"locusts_manifest.{swarm_id}.jsonl", f"locusts_report.{swarm_id}.html"])
    # The report, written on the host too, holds the failed task's stderr (pulled for gathering).
    assert summary["report"] == f"{host_out}/locusts_report.{swarm_id}.html"
    report = cluster.ssh(f"cat {host_out}/locusts_report.{swarm_id}.html").stdout
    assert "Failures (1)" in report and "task 5 says no" in report
    assert cluster.ssh(f"cat {host_out}/out_3.txt").stdout == "value 3\ncommon\n"
    assert not (tmp_path / "out").exists()
    assert list((tmp_path / "B-work").iterdir()) == []
    # Across the network: exec/ (events, tables) and the failed task's logs; no output.
    assert not [p for p in pulled if "out_" in p]
    assert "work/batch_0/task_5/stderr.txt" in pulled
