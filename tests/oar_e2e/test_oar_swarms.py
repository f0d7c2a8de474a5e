"""Swarms on a real OAR 2.5 (tests/oar/), reached over SSH as `locusts`: Example 1 through
dag.test(), a job deleted by someone else (lost manager → reschedule), jobs whose manager
never starts (fail fast with OAR's state and the job's output), cancelling (on_kill of the
operator and of the trigger deletes the jobs), and a job id that cannot be recorded."""

from __future__ import annotations

import asyncio
import json
import shlex
import threading
import time
from pathlib import Path

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_locusts.exceptions import SwarmExecutionError, SwarmStartError
from airflow_provider_locusts.hooks.locusts import LocustsHook
from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator
from airflow_provider_locusts.swarm.engine import EngineOptions
from airflow_provider_locusts.swarm.handle import SwarmHandle
from airflow_provider_locusts.swarm.spec import build_spec

from tests.cluster_e2e.helpers import START, example1_data, starts_per_task
from tests.e2e.test_example1_dag import assert_example1_results

from .conftest import CONN_ID, unique_name, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.oar]

# The OAR node has 2 cores; managers ask for one, whatever `processes` is.
ONE_CORE = {"cores": 1, "walltime": "0:10:00"}


def test_example1_over_ssh_on_oar_collects_202_outputs(oar, run_dag, tmp_path, remote_root, oar_guard):
    oar_guard.watch(swarm_id="oar_example1_ssh")  # job names hold the swarm id, which starts with the dag id
    data = example1_data()
    with DAG("oar_example1_ssh", schedule=None, start_date=START, catchup=False) as dag:
        LocustsSwarmOperator(
            task_id="swarm",
            deferrable=True,
            command=data.COMMAND,
            input_dir=str(data.make_example1_inputs(tmp_path / "input")),
            task_inputs=data.TASK_INPUTS,
            shared_inputs=data.SHARED_INPUTS,
            outputs=data.OUTPUTS,
            output_dir=str(tmp_path / "out"),
            work_root=str(tmp_path / "staging"),
            ssh_conn_id=CONN_ID,
            remote_root=remote_root,
            scheduler="oar",
            processes=4,
            oar_options=ONE_CORE,
            poll_interval=1,
        )
    result = run_dag(dag)

    assert result.task_states() == {"swarm": "success"}
    summary = assert_example1_results(result, owner="locusts")
    # It really went through OAR: one job, run as locusts, Terminated with exit code 0.
    exec_dir = Path(remote_root) / summary["swarm_id"] / "exec"
    (job_file,) = exec_dir.glob("jobid_*")
    job = oar.job(job_file.read_text().strip())
    assert job["state"] == "Terminated" and job["exit_code"] == 0
    assert job["owner"] == "locusts"
    assert job["name"].startswith("locusts-r0m0-")
    assert "/nodes=1/core=1" in job["wanted_resources"] or "core=1" in job["wanted_resources"]
    assert len(list((exec_dir.parent / "work" / "batch_0").iterdir())) == 101


class Saboteur(threading.Thread):
    """Once the first manager has run `after` seconds, someone else (root, an OAR admin)
    deletes its job with oardel."""

    def __init__(self, oar, exec_dir: Path, after: float):
        super().__init__(daemon=True)
        self.oar, self.exec_dir, self.after = oar, exec_dir, after
        self.error = None

    def run(self) -> None:
        try:
            deadline = time.monotonic() + 120
            while not (self.exec_dir / "pid_r0m0").exists():
                if time.monotonic() > deadline:
                    raise TimeoutError("the first manager never started")
                time.sleep(0.1)
            time.sleep(self.after)
            self.oar.delete((self.exec_dir / "jobid_r0m0").read_text().strip())
        except Exception as error:  # noqa: BLE001 - reported by the test
            self.error = error


def test_a_job_deleted_by_someone_else_is_rescheduled_and_finished_tasks_keep_their_result(oar, run_dag, tmp_path, remote_root, oar_guard):
    swarm_id = unique_name("oarfault")
    oar_guard.watch(swarm_id=swarm_id)
    exec_dir = Path(remote_root) / swarm_id / "exec"  # this machine is the SSH host: read it directly
    saboteur = Saboteur(oar, exec_dir, after=3)
    saboteur.start()
    with DAG("oar_fault_oardel", schedule=None, start_date=START, catchup=False) as dag:
        LocustsSwarmOperator(
            task_id="swarm", deferrable=True, command="sleep 1; echo <arg0> > out_<id>.txt", args=[[i] for i in range(16)],
            outputs=["out_<id>.txt"], output_dir=str(tmp_path / "out"), work_root=str(tmp_path / "staging"), swarm_id=swarm_id,
            ssh_conn_id=CONN_ID, remote_root=remote_root, scheduler="oar", processes=2, oar_options=ONE_CORE,
            poll_interval=0.5, heartbeat_interval=1, heartbeat_timeout=30, max_reschedules=1,
        )
    result = run_dag(dag)
    saboteur.join(timeout=60)

    assert saboteur.error is None, saboteur.error
    assert result.task_states() == {"swarm": "success"}
    assert result.xcom("swarm", key="succeeded") == [str(i) for i in range(16)]
    ledger = json.loads((exec_dir / "ledger.json").read_text())
    assert [r["kind"] for r in ledger["rounds"]] == ["start", "reschedule"]
    first_job = (exec_dir / "jobid_r0m0").read_text().strip()
    assert oar.job_state(first_job) == "Error"  # what OAR makes of a deleted job
    ended = {int(f[1]) for f in (l.split() for l in (exec_dir / "events_r0m0").read_text().splitlines()) if f[2] == "end" and int(f[3]) <= 128}
    assert 0 < len(ended) < 16
    starts = starts_per_task(exec_dir)
    for i in range(16):
        # A task finished in the deleted job is never run again; every other runs in the new job.
        assert starts[str(i)] >= 1 and (i not in ended or starts[str(i)] == 1), (i, starts[str(i)])
        assert (tmp_path / "out" / f"out_{i}.txt").read_text() == f"{i}\n"
    assert oar.job_state((exec_dir / "jobid_r1m0").read_text().strip()) == "Terminated"


def run_to_the_end(operator: LocustsSwarmOperator, context: dict, timeout: float = 150) -> None:
    """execute(), the real trigger, execute_complete() — as Airflow would, once."""
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)

    async def first_event():
        async for event in deferred.value.trigger.run():
            return event.payload

    event = asyncio.run(asyncio.wait_for(first_event(), timeout))
    operator.execute_complete(context, json.loads(json.dumps(event)))


def test_jobs_whose_manager_never_starts_fail_the_task_at_once_with_oars_state(oar, tmp_path, remote_root, stand_in_context, oar_guard):
    swarm_id = unique_name("oar-nostart")
    oar_guard.watch(swarm_id=swarm_id)
    operator = LocustsSwarmOperator(
        task_id="swarm", deferrable=True, command="echo <arg0> > out_<id>.txt", args=[[i] for i in range(6)],
        outputs=["out_<id>.txt"], output_dir=str(tmp_path / "out"), work_root=str(tmp_path / "work"), swarm_id=swarm_id,
        ssh_conn_id=CONN_ID, remote_root=remote_root, scheduler="oar", processes=2, nodes=2, min_tasks_per_process=1,
        oar_options=ONE_CORE, setup=["echo preparing", "false", "echo never"],
        poll_interval=0.5, heartbeat_interval=1, heartbeat_timeout=120, max_reschedules=2,
    )
    context = stand_in_context("oar_nostart")
    started = time.monotonic()
    with pytest.raises(SwarmStartError) as error:
        run_to_the_end(operator, context)
    elapsed = time.monotonic() - started
    message = str(error.value)
    # Well before heartbeat_timeout (120 s): at the first poll after the jobs ended.
    assert elapsed < 90, elapsed
    assert "None of the 2 manager(s) of round 0 started a task, so nothing was submitted again" in message
    exec_dir = Path(remote_root) / swarm_id / "exec"
    for manager in ("r0m0", "r0m1"):
        job_id = (exec_dir / f"jobid_{manager}").read_text().strip()
        state = oar.job_state(job_id)
        assert state in ("Terminated", "Error")
        assert f"{manager}: job {job_id} {state}" in message  # OAR's own state, named
    assert "a setup line failed (exit code 1): false" in message  # the tail of the job's output
    ledger = json.loads((exec_dir / "ledger.json").read_text())
    assert [r["managers"] for r in ledger["rounds"]] == [["r0m0", "r0m1"]]
    assert oar.live_jobs_named(swarm_id[:40]) == []
    assert context["ti"].xcoms["failed"] == [str(i) for i in range(6)]


SLEEPER = "sleep 60 & printf '%s %s\\n' $$ $! > pids.tmp && mv pids.tmp pids; wait"


def alive(pids: list[int]) -> list[int]:
    """Those of `pids` still running (not zombies: orphans may never be reaped here)."""
    found = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            found.append(pid)
    return found


@pytest.mark.parametrize("how", ["operator", "trigger"])
def test_cancel_deletes_the_oar_jobs_and_stops_the_tasks(oar, tmp_path, remote_root, stand_in_context, oar_guard, how):
    swarm_id = unique_name(f"oar-cancel-{how}")
    operator = LocustsSwarmOperator(
        task_id="swarm", command=SLEEPER, args=[[i] for i in range(4)], output_dir=str(tmp_path / "out"),
        work_root=str(tmp_path / "staging"), swarm_id=swarm_id, ssh_conn_id=CONN_ID, remote_root=remote_root,
        scheduler="oar", processes=2, oar_options=ONE_CORE, heartbeat_interval=1, heartbeat_timeout=30, deferrable=True,
    )
    oar_guard.watch(operator, swarm_id)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(stand_in_context("oar_cancel"))
    swarm_root = Path(remote_root) / swarm_id
    job_id = (swarm_root / "exec" / "jobid_r0m0").read_text().strip()
    wait_until(lambda: oar.job_state(job_id) == "Running", 60, what=f"OAR job {job_id} Running")
    pid_files = lambda: list((swarm_root / "work" / "batch_0").glob("*/pids"))  # noqa: E731
    wait_until(lambda: len(pid_files()) == 2, 30, what="2 tasks running")
    task_pids = [int(p) for f in pid_files() for p in f.read_text().split()]
    assert alive(task_pids) == task_pids

    if how == "operator":
        operator.on_kill()
    else:
        asyncio.run(deferred.value.trigger.on_kill())

    wait_until(lambda: oar.job_state(job_id) == "Error", 60, what=f"OAR job {job_id} deleted (Error)")
    wait_until(lambda: not alive(task_pids), 30, what="the job's tasks to be gone")
    assert oar.live_jobs_named(swarm_id[:40]) == []
    assert any(e["type"] == "FRAG_JOB_REQUEST" for e in oar.job(job_id)["events"])  # deleted through oardel


def test_a_job_id_that_cannot_be_recorded_deletes_the_job(oar, cluster, tmp_path, remote_root, oar_guard):
    swarm_id = unique_name("oar-nojobid")
    oar_guard.watch(swarm_id=swarm_id)
    spec = build_spec(command="sleep 60", args=[[0]], output_dir=tmp_path / "out")
    handle = SwarmHandle(swarm_id, f"{remote_root}/{swarm_id}", ssh_conn_id=CONN_ID, output_dir=str(spec.output_dir), scheduler="oar")
    hook = LocustsHook(ssh_conn_id=CONN_ID, work_root=str(tmp_path / "work"))
    options = EngineOptions(scheduler="oar", heartbeat_interval=1, oar_options=ONE_CORE)
    try:
        with hook.engine(handle, spec=spec, options=options) as engine:
            round_ = engine.prepare_round()
            # exec/ becomes read-only for the cluster account: oarsub still takes the job, but
            # its id cannot be written down.
            cluster.ssh(f"chmod 555 {shlex.quote(handle.root)}/exec")
            try:
                with pytest.raises(SwarmExecutionError, match=r"could not be recorded .* were cancelled") as error:
                    engine.start(round_)
            finally:
                cluster.ssh(f"chmod 755 {shlex.quote(handle.root)}/exec")
    finally:
        hook.close()
    job_id = str(error.value).split("the job id ")[1].split()[0]
    wait_until(lambda: oar.job_state(job_id) in ("Error", "Terminated"), 60, what=f"OAR job {job_id} gone")
    assert any(e["type"] == "FRAG_JOB_REQUEST" for e in oar.job(job_id)["events"])
    assert oar.live_jobs_named(swarm_id[:40]) == []


def test_oar_refuses_jobs_from_root_and_the_task_fails_with_oars_own_words(oar, tmp_path, stand_in_context, oar_guard):
    """Local mode as root (the Airflow side here): OAR's admission rule refuses the job; the
    start fails with OAR's message and no job of the swarm is left."""
    swarm_id = unique_name("oar-root")
    oar_guard.watch(swarm_id=swarm_id)
    operator = LocustsSwarmOperator(
        task_id="swarm", deferrable=True, command="echo <arg0> > out_<id>.txt", args=[[i] for i in range(2)],
        outputs=["out_<id>.txt"], output_dir=str(tmp_path / "out"), work_root=str(tmp_path / "work"), swarm_id=swarm_id,
        scheduler="oar", processes=1, oar_options=ONE_CORE,
    )
    with pytest.raises(SwarmExecutionError) as error:
        operator.execute(stand_in_context("oar_root"))
    message = str(error.value)
    assert "oarsub rejected manager r0m0" in message
    assert "root and oar users are not allowed to submit jobs" in message
    assert not list((tmp_path / "work" / swarm_id / "exec").glob("jobid_*"))
    assert oar.live_jobs_named(swarm_id[:40]) == []
