"""The multi-host CeleryExecutor deployment (conftest.py, deployment.py), and swarms on it:

- it comes up healthy, with CeleryExecutor, two workers answering on different hosts and
  only loopback listening sockets;
- two plain tasks pinned to worker-a and worker-b run on two hosts: different hostnames,
  a file one writes to /tmp is invisible to the other (and to the main host), a file on
  the shared folder is visible to both;
- a deferrable LocustsSwarmOperator swarm over SSH (SLURM on the test cluster) runs to
  success through Celery, the trigger running in the main host's triggerer;
- the worker that ran `execute` is stopped while the task is deferred; `execute_complete`
  runs on the other worker and finishes the swarm (SSH copy mode) with every output and the
  right XCom lists;
- the worker that ran a try that failed in part is stopped; the cleared task's next try
  runs on the other worker and runs only the failed task again;
- local mode (no SSH connection) on this deployment: deferrable, it is refused before
  anything is staged (the triggerer could not see the worker's disk); with
  deferrable=False the worker that started the swarm watches it to the end;
- Example 1 over SSH + SLURM: `execute` on one worker, which is stopped while the task is
  deferred, `execute_complete` on the other: 202 outputs, the XCom lists right;
- a user marks the deferred task failed (REST API, as the UI does): the swarm's SLURM jobs
  leave the queue;
- the swarm's poll breaks on the host (not a lost connection): the task fails saying so,
  and the manifest holds what was known.

The swarm DAGs' tasks wait for a gate file on the cluster that the test creates when it
wants them to go on, so the deferral is certain whatever the machine's speed.
"""

from __future__ import annotations

import json
import re
import shlex
import time
import uuid
from pathlib import Path

import pytest

from tests.deployment.conftest import SSH_OUTAGE
from tests.deployment.deployment import CeleryDeployment
from tests.deployment.hosts import HOST_DISK, WORK_ROOT
from tests.cluster_e2e.helpers import starts_per_task
from tests.support.airflow_services import TERMINAL_TI_STATES

pytestmark = pytest.mark.deployment

REPO = Path(__file__).resolve().parents[2]
SWARM_TASKS = 6
HOSTS_DAG = "deploy_hosts"
SLURM_DAG = "deploy_swarm_slurm"
DIRECT_DAG = "deploy_swarm_direct"
RETRY_DAG = "deploy_swarm_retry"
LOCAL_DEFERRABLE_DAG = "deploy_local_deferrable"
LOCAL_BLOCKING_DAG = "deploy_local_blocking"

DAG_FILE = '''"""DAGs of tests/deployment/test_celery_deployment.py (written by the test)."""
import os
import socket
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, get_current_context, task

from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator

SHARED_DATA = @DATA@


def token():
    return get_current_context()["dag_run"].conf["token"]


with DAG("deploy_hosts", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

    @task(queue="worker-a")
    def write_here():
        """Leave a file in this host's /tmp and one on the shared folder."""
        probe = Path(f"/tmp/locusts-probe-{token()}")
        probe.write_text(socket.gethostname())
        shared = Path(SHARED_DATA) / token()
        shared.mkdir(parents=True, exist_ok=True)
        (shared / "from_a.txt").write_text(socket.gethostname())
        return {"hostname": socket.gethostname(), "probe": str(probe), "work_root": os.environ.get("LOCUSTS_WORK_ROOT"),
                "airflow_home": os.environ.get("AIRFLOW_HOME")}

    @task(queue="worker-b")
    def look_from_the_other(first):
        """What this host sees of the other's files."""
        probe = Path(f"/tmp/locusts-probe-{token()}-b")
        probe.write_text(socket.gethostname())
        shared = Path(SHARED_DATA) / token() / "from_a.txt"
        return {"hostname": socket.gethostname(), "sees_probe": os.path.exists(first["probe"]), "probe": str(probe),
                "shared_text": shared.read_text() if shared.exists() else None,
                "work_root": os.environ.get("LOCUSTS_WORK_ROOT")}

    look_from_the_other(write_here())


def swarm_dag(dag_id, scheduler, extra):
    # Each task waits (bounded: 5 min) for the gate file on the cluster, then copies its
    # input and notes the host it ran on.
    gate = '{{ dag_run.conf["gate"] }}'
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        LocustsSwarmOperator(
            task_id="swarm",
            command=(
                f"for i in $(seq 1 1500); do [ -e {gate} ] && break; sleep 0.2; done; [ -e {gate} ] || exit 3; "
                "cat in_<id>.txt > out_<id>.txt && hostname >> out_<id>.txt"
            ),
            input_dir='{{ dag_run.conf["input_dir"] }}',
            task_inputs=["in_<id>.txt"],
            outputs=["out_<id>.txt"],
            output_dir='{{ dag_run.conf["output_dir"] }}',
            ssh_conn_id="locusts_test_ssh",
            remote_root='{{ dag_run.conf["remote_root"] }}',
            scheduler=scheduler,
            processes=2,
            poll_interval=1,
            heartbeat_interval=2,
            heartbeat_timeout=60,
            deferrable=True,
            retries=0,
            **extra,
        )


# Task 2 fails (exit 4) until the "gate" file exists on the cluster; the others succeed.
with DAG("deploy_swarm_retry", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    fix = '{{ dag_run.conf["gate"] }}'
    LocustsSwarmOperator(
        task_id="swarm",
        command=f"if [ <id> = 2 ] && [ ! -e {fix} ]; then exit 4; fi; cat in_<id>.txt > out_<id>.txt && hostname >> out_<id>.txt",
        input_dir='{{ dag_run.conf["input_dir"] }}',
        task_inputs=["in_<id>.txt"],
        outputs=["out_<id>.txt"],
        output_dir='{{ dag_run.conf["output_dir"] }}',
        ssh_conn_id="locusts_test_ssh",
        remote_root='{{ dag_run.conf["remote_root"] }}',
        scheduler="direct",
        processes=2,
        poll_interval=1,
        heartbeat_interval=2,
        heartbeat_timeout=60,
        deferrable=True,
        retries=0,
    )


# Local mode: the swarm runs on the worker's own machine, in its private work root.
for dag_id, deferrable in (("deploy_local_deferrable", True), ("deploy_local_blocking", False)):
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        LocustsSwarmOperator(
            task_id="swarm",
            command="echo <arg0> > out_<id>.txt && hostname >> out_<id>.txt",
            args=[[f"value {i}"] for i in range(@SWARM_TASKS@)],
            outputs=["out_<id>.txt"],
            output_dir='{{ dag_run.conf["output_dir"] }}',
            processes=2,
            poll_interval=1,
            heartbeat_interval=2,
            heartbeat_timeout=60,
            deferrable=deferrable,
            retries=0,
        )


swarm_dag("deploy_swarm_slurm", "slurm", {"slurm_options": {"partition": "debug", "time": "00:10:00", "cpus_per_task": 1}})
swarm_dag("deploy_swarm_direct", "direct", {})


# Example 1 of the original locusts (dags_examples/example1_data.py), each task first waiting
# (bounded) for the gate file on the cluster, over SSH + SLURM.
@EXAMPLE1@
with DAG("deploy_example1_slurm", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    gate = '{{ dag_run.conf["gate"] }}'
    LocustsSwarmOperator(
        task_id="swarm",
        command=f"for i in $(seq 1 1500); do [ -e {gate} ] && break; sleep 0.2; done; [ -e {gate} ] || exit 3; " + COMMAND,
        input_dir='{{ dag_run.conf["input_dir"] }}',
        task_inputs=TASK_INPUTS,
        shared_inputs=SHARED_INPUTS,
        outputs=OUTPUTS,
        output_dir='{{ dag_run.conf["output_dir"] }}',
        ssh_conn_id="locusts_test_ssh",
        remote_root='{{ dag_run.conf["remote_root"] }}',
        scheduler="slurm",
        processes=4,
        slurm_options={"partition": "debug", "cpus_per_task": 1, "time": "00:10:00"},
        poll_interval=1,
        heartbeat_interval=2,
        heartbeat_timeout=60,
        deferrable=True,
        retries=0,
    )

# Tasks that sleep for ten minutes, as SLURM jobs (the mark-failed test), and gated tasks
# started directly over SSH (the broken-poll test).
for dag_id, scheduler, command in (
    ("deploy_mark_failed", "slurm", "sleep 600"),
    ("deploy_unpollable", "direct", "[ <arg0> = 0 ] && echo <arg0> > out_<id>.txt || sleep 600"),
):
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        LocustsSwarmOperator(
            task_id="swarm",
            command=command,
            args=[[i] for i in range(4)],
            outputs=["out_<id>.txt"],
            output_dir='{{ dag_run.conf["output_dir"] }}',
            ssh_conn_id="locusts_test_ssh",
            remote_root='{{ dag_run.conf["remote_root"] }}',
            swarm_id='{{ dag_run.conf["token"] }}',
            scheduler=scheduler,
            nodes=2,
            processes=1,
            slurm_options={"partition": "debug", "cpus_per_task": 1} if scheduler == "slurm" else None,
            poll_interval=1,
            heartbeat_interval=2,
            heartbeat_timeout=60,
            deferrable=True,
            retries=0,
        )
'''


def write_dags(deployment: CeleryDeployment) -> None:
    """Called by the `deployment` fixture before the services start."""
    example1 = (REPO / "dags_examples" / "example1_data.py").read_text().replace("from __future__ import annotations\n", "")
    text = (
        DAG_FILE.replace("@DATA@", repr(str(deployment.data)))
        .replace("@SWARM_TASKS@", str(SWARM_TASKS))
        .replace("@EXAMPLE1@", example1)
    )
    (deployment.dags / "locusts_deployment_dags.py").write_text(text)


# --- helpers ---------------------------------------------------------------------------------


def new_token() -> str:
    return uuid.uuid4().hex[:12]


def run_to_end(deployment: CeleryDeployment, dag_id: str, conf: dict, timeout: float = 300) -> tuple[str, dict]:
    deployment.wait_for_dag(dag_id)
    run_id = f"manual__{conf['token']}"
    deployment.trigger_dag(dag_id, run_id, conf=conf)
    return run_id, deployment.wait_for_run(dag_id, run_id, timeout)


def make_swarm_inputs(deployment: CeleryDeployment, token: str, remote_root: str) -> dict:
    folder = deployment.data / token
    (folder / "in").mkdir(parents=True)
    for i in range(SWARM_TASKS):
        (folder / "in" / f"in_{i}.txt").write_text(f"value {i}\n")
    gate = f"{remote_root}/gate-{token}"
    assert re.fullmatch(r"[A-Za-z0-9/_.-]+", gate), f"the gate path goes into shell code unquoted: {gate!r}"
    return {"token": token, "input_dir": str(folder / "in"), "output_dir": str(folder / "out"),
            "remote_root": remote_root, "gate": gate}


def open_gate(cluster, conf: dict) -> None:
    cluster.ssh(f"touch {shlex.quote(conf['gate'])}", retry_for=SSH_OUTAGE)


def expected_ids() -> list[str]:
    return [str(i) for i in range(SWARM_TASKS)]


def assert_swarm_outputs(deployment: CeleryDeployment, dag_id: str, run_id: str, conf: dict) -> None:
    """Every task's output is in output_dir with its input's content, and the XCom lists say
    every task succeeded."""
    out = Path(conf["output_dir"])
    for i in range(SWARM_TASKS):
        path = out / f"out_{i}.txt"
        assert path.is_file(), f"{path} missing; output_dir holds {sorted(p.name for p in out.glob('*'))}"
        assert path.read_text().splitlines()[0] == f"value {i}"
    assert deployment.xcom(dag_id, run_id, "swarm", "succeeded") == expected_ids()
    assert deployment.xcom(dag_id, run_id, "swarm", "failed") == []
    summary = deployment.xcom(dag_id, run_id, "swarm")
    assert (summary["total"], summary["succeeded_count"], summary["failed_count"]) == (SWARM_TASKS, SWARM_TASKS, 0)


def wait_deferred_and_polled(deployment: CeleryDeployment, dag_id: str, run_id: str) -> dict:
    """Until the swarm task is deferred and its trigger, in the triggerer, has polled the
    swarm (its progress line is in the trigger log). Returns the task instance."""
    def ready():
        ti = deployment.task_instance(dag_id, run_id, "swarm")
        if ti["state"] in TERMINAL_TI_STATES or ti["state"] == "up_for_retry":
            raise AssertionError(f"swarm task ended {ti['state']} before deferring\n{deployment.run_log_tails(dag_id, run_id)}")
        if ti["state"] != "deferred" or not (ti.get("trigger") or {}).get("triggerer_id"):
            return None
        if "Swarm " not in deployment.task_logs(dag_id, run_id, "swarm", trigger_only=True):
            return None
        return ti

    return deployment.wait_for(ready, 240, f"{dag_id} {run_id}: swarm deferred and polled by the trigger",
                               extra=lambda: deployment.run_log_tails(dag_id, run_id))


# --- tests -----------------------------------------------------------------------------------


def test_deployment_is_healthy_with_two_worker_hosts_and_only_loopback_sockets(deployment: CeleryDeployment):
    health = deployment.health()
    for part in ("metadatabase", "scheduler", "triggerer", "dag_processor"):
        assert health[part]["status"] == "healthy", health
    assert deployment.ping_workers() == {"worker-a", "worker-b"}

    # Two hosts: their own hostname, mount namespace and tmpfs /tmp, and a work root of their own.
    seen = {}
    for name, host in deployment.hosts.items():
        seen[name] = host.exec(["sh", "-c", 'hostname; stat -f -c %T /tmp; readlink /proc/self/ns/mnt']).stdout.split()
        assert seen[name][:2] == [name, "tmpfs"], seen[name]
        assert (host.disk / "work").is_dir() and WORK_ROOT.startswith("/tmp/")
    assert len({s[2] for s in seen.values()} | {Path("/proc/self/ns/mnt").readlink().name}) == 3
    # No host sees a worker's disk where that worker sees it, nor the harness's copy of the disks.
    assert not Path(HOST_DISK).exists(), f"the main host sees {HOST_DISK}"
    for host in deployment.hosts.values():
        assert host.exec(["ls", "-A", str(host.disk.parent)]).stdout == "", f"{host.name} sees the hosts' disks"

    sockets = deployment.listening_sockets()
    ports = {port for _, port, _ in sockets}
    assert {deployment.port, deployment.postgres.port, deployment.redis.port} <= ports, sockets
    assert all(address == "127.0.0.1" for address, _, _ in sockets), f"a socket listens beyond loopback: {sockets}"


def test_pinned_tasks_run_on_two_hosts_that_do_not_share_tmp(deployment: CeleryDeployment):
    token = new_token()
    run_id, run = run_to_end(deployment, HOSTS_DAG, {"token": token}, timeout=240)
    assert run["state"] == "success", deployment.run_log_tails(HOSTS_DAG, run_id)

    first = deployment.xcom(HOSTS_DAG, run_id, "write_here")
    second = deployment.xcom(HOSTS_DAG, run_id, "look_from_the_other")
    assert (first["hostname"], second["hostname"]) == ("worker-a", "worker-b")
    # The REST API's record of where each task ran agrees.
    assert deployment.task_hostname(HOSTS_DAG, run_id, "write_here") == "worker-a"
    assert deployment.task_hostname(HOSTS_DAG, run_id, "look_from_the_other") == "worker-b"
    # Each worker has its own work root and AIRFLOW_HOME, on its private disk.
    assert first["work_root"] == second["work_root"] == WORK_ROOT
    assert first["airflow_home"] == "/tmp/locusts-host/home"

    # worker-a's /tmp file: invisible to worker-b's task, still there on worker-a, absent
    # from worker-b and from the main host; the shared folder is seen by both.
    assert second["sees_probe"] is False
    assert second["shared_text"] == "worker-a"
    assert deployment.host("worker-a").exec(["cat", first["probe"]]).stdout == "worker-a"
    assert deployment.host("worker-b").exec(["test", "-e", first["probe"]], check=False).returncode == 1
    assert deployment.host("worker-b").exec(["cat", second["probe"]]).stdout == "worker-b"
    assert not Path(first["probe"]).exists() and not Path(second["probe"]).exists()


def test_a_killed_worker_host_restarts_with_its_disk_but_a_fresh_tmp(deployment: CeleryDeployment):
    host = deployment.host("worker-b")
    host.exec(["sh", "-c", "echo kept > /tmp/locusts-host/disk-file && echo lost > /tmp/tmp-file"])
    old_pid = host.main_pid()

    deployment.kill_host("worker-b")
    assert host.processes() == [] and not deployment.worker_running("worker-b")
    deployment.wait_for(lambda: deployment.ping_workers() == {"worker-a"}, 60, "only worker-a to answer a ping",
                        names=("worker-a",))

    deployment.start_worker("worker-b")
    assert deployment.ping_workers() == {"worker-a", "worker-b"}
    assert host.main_pid() != old_pid
    # A new namespace (the kernel may give it the dead one's id): a fresh /tmp, the same disk.
    assert host.exec(["cat", "/tmp/locusts-host/disk-file"]).stdout == "kept\n"
    assert host.exec(["test", "-e", "/tmp/tmp-file"], check=False).returncode == 1


def test_deferrable_local_mode_is_refused_before_anything_is_staged(deployment: CeleryDeployment):
    token = new_token()
    output_dir = deployment.data / token / "out"
    run_id, run = run_to_end(deployment, LOCAL_DEFERRABLE_DAG, {"token": token, "output_dir": str(output_dir)})
    assert run["state"] == "failed"
    logs = deployment.task_logs(LOCAL_DEFERRABLE_DAG, run_id, "swarm")
    assert "local mode (no ssh_conn_id) runs the swarm on this worker's machine" in logs, logs[-3000:]
    assert "CeleryExecutor" in logs
    assert not deployment.task_log_files(LOCAL_DEFERRABLE_DAG, run_id, "swarm", trigger_only=True), "it deferred"
    host = deployment.task_hostname(LOCAL_DEFERRABLE_DAG, run_id, "swarm")
    assert not list(deployment.host(host).path(WORK_ROOT).glob(f"*{token}*")), "something was staged"
    assert not output_dir.exists()


def test_local_mode_with_deferrable_false_is_watched_by_the_worker_that_started_it(deployment: CeleryDeployment):
    token = new_token()
    output_dir = deployment.data / token / "out"
    run_id, run = run_to_end(deployment, LOCAL_BLOCKING_DAG, {"token": token, "output_dir": str(output_dir)})
    assert run["state"] == "success", deployment.run_log_tails(LOCAL_BLOCKING_DAG, run_id)
    host = deployment.task_hostname(LOCAL_BLOCKING_DAG, run_id, "swarm")
    assert host in deployment.hosts
    for i in range(SWARM_TASKS):
        assert (output_dir / f"out_{i}.txt").read_text().split("\n")[:2] == [f"value {i}", host]
    assert deployment.xcom(LOCAL_BLOCKING_DAG, run_id, "swarm", "succeeded") == expected_ids()
    # The swarm root is on that worker's private disk only: not on the other's, nor on the main host's.
    assert list(deployment.host(host).path(WORK_ROOT).glob(f"*{token}*"))
    assert not list(deployment.host(deployment.other_worker(host)).path(WORK_ROOT).glob(f"*{token}*"))
    assert not list(deployment.main_work_root.glob(f"*{token}*"))


def test_deferrable_ssh_slurm_swarm_runs_to_success_through_celery(deployment, cluster, remote_root):
    conf = make_swarm_inputs(deployment, new_token(), remote_root)
    open_gate(cluster, conf)
    started = time.monotonic()
    run_id, run = run_to_end(deployment, SLURM_DAG, conf)
    assert run["state"] == "success", deployment.run_log_tails(SLURM_DAG, run_id)
    assert_swarm_outputs(deployment, SLURM_DAG, run_id, conf)

    logs = deployment.task_logs(SLURM_DAG, run_id, "swarm")
    assert "(slurm)" in logs, logs[-3000:]  # "started round 0, 6 task(s) on 1 manager(s) (slurm)"
    assert deployment.task_log_files(SLURM_DAG, run_id, "swarm", trigger_only=True), "the task never deferred"
    assert deployment.task_hostname(SLURM_DAG, run_id, "swarm") in deployment.hosts
    print(f"SSH + SLURM swarm of {SWARM_TASKS} tasks through Celery: {time.monotonic() - started:.1f} s")


def test_execute_complete_on_another_worker_finishes_an_ssh_copy_mode_swarm(deployment, cluster, remote_root):
    conf = make_swarm_inputs(deployment, new_token(), remote_root)
    deployment.wait_for_dag(DIRECT_DAG)
    run_id = f"manual__{conf['token']}"
    deployment.trigger_dag(DIRECT_DAG, run_id, conf=conf)
    ti = wait_deferred_and_polled(deployment, DIRECT_DAG, run_id)

    first = ti["hostname"]
    assert first in deployment.hosts, f"the swarm task ran on {first!r}, not a worker host"
    other = deployment.other_worker(first)
    # The other worker has never seen this swarm: nothing of it on its private disk.
    assert not list(deployment.host(other).path(WORK_ROOT).glob(f"*{conf['token']}*"))

    try:
        assert deployment.stop_worker(first) == 0, deployment.current(first).tail()
        open_gate(cluster, conf)
        run = deployment.wait_for_run(DIRECT_DAG, run_id, 300)
        assert deployment.task_hostname(DIRECT_DAG, run_id, "swarm") == other, "execute_complete did not run on the other worker"
        assert run["state"] == "success", deployment.run_log_tails(DIRECT_DAG, run_id, 60)
        assert_swarm_outputs(deployment, DIRECT_DAG, run_id, conf)
    finally:
        if not deployment.worker_running(first):
            deployment.start_worker(first)


def test_a_retry_on_another_worker_reruns_only_the_failed_task_of_an_ssh_copy_mode_swarm(deployment, cluster, remote_root):
    conf = make_swarm_inputs(deployment, new_token(), remote_root)
    run_id, run = run_to_end(deployment, RETRY_DAG, conf)
    assert run["state"] == "failed", deployment.run_log_tails(RETRY_DAG, run_id)
    assert deployment.xcom(RETRY_DAG, run_id, "swarm", "failed") == ["2"]
    first = deployment.task_hostname(RETRY_DAG, run_id, "swarm")
    assert first in deployment.hosts, f"the swarm task ran on {first!r}, not a worker host"
    other = deployment.other_worker(first)
    swarm_root = next(Path(remote_root).glob(f"*{conf['token']}*"))

    try:
        assert deployment.stop_worker(first) == 0, deployment.current(first).tail()
        open_gate(cluster, conf)  # task 2 succeeds from now on
        deployment.clear_task(RETRY_DAG, run_id, "swarm")
        run = deployment.wait_for_run(RETRY_DAG, run_id, 300)
        assert deployment.try_hostnames(RETRY_DAG, run_id, "swarm") == {1: first, 2: other}
        assert run["state"] == "success", deployment.run_log_tails(RETRY_DAG, run_id, 60)
        assert_swarm_outputs(deployment, RETRY_DAG, run_id, conf)
        # Only the failed task ran again.
        assert starts_per_task(swarm_root / "exec") == {str(i): 2 if i == 2 else 1 for i in range(SWARM_TASKS)}
    finally:
        if not deployment.worker_running(first):
            deployment.start_worker(first)


# --- the state model on several hosts ---------------------------------------------------------


def example1_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("example1_data_deployment", REPO / "dags_examples" / "example1_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example1_over_ssh_and_slurm_finishes_on_the_other_worker(deployment, cluster, remote_root):
    example1 = example1_module()
    token = new_token()
    folder = deployment.data / token
    inputs = example1.make_example1_inputs(folder / "in")
    gate = f"{remote_root}/gate-{token}"
    conf = {"token": token, "input_dir": str(inputs), "output_dir": str(folder / "out"), "remote_root": remote_root, "gate": gate}
    dag_id, run_id = "deploy_example1_slurm", f"manual__{token}"
    deployment.wait_for_dag(dag_id)
    deployment.trigger_dag(dag_id, run_id, conf=conf)
    first = wait_deferred_and_polled(deployment, dag_id, run_id)["hostname"]
    other = deployment.other_worker(first)
    try:
        assert deployment.stop_worker(first) == 0, deployment.current(first).tail()
        cluster.ssh(f"touch {shlex.quote(gate)}", retry_for=SSH_OUTAGE)
        run = deployment.wait_for_run(dag_id, run_id, 420)
        assert run["state"] == "success", deployment.run_log_tails(dag_id, run_id, 60)
        assert deployment.task_hostname(dag_id, run_id, "swarm") == other, "execute_complete did not run on the other worker"
    finally:
        if not deployment.worker_running(first):
            deployment.start_worker(first)
    ids = [str(i) for i in range(101)]
    assert deployment.xcom(dag_id, run_id, "swarm", "succeeded") == ids
    assert deployment.xcom(dag_id, run_id, "swarm", "failed") == []
    outputs = sorted(p.name for p in (folder / "out").glob("*_output_*.txt"))
    assert len(outputs) == 202
    for i in (0, 57, 100):
        assert (folder / "out" / f"cat_output_{i}.txt").read_text() == (
            f"first input of task {i}\nsecond input of task {i}\nshared content\n"
        )


def test_marking_the_deferred_task_failed_takes_its_jobs_off_the_queue(deployment, cluster, remote_root):
    token = new_token()
    conf = {"token": f"mark-{token}", "output_dir": str(deployment.data / token / "out"), "remote_root": remote_root}
    dag_id, run_id = "deploy_mark_failed", f"manual__{token}"
    deployment.wait_for_dag(dag_id)
    deployment.trigger_dag(dag_id, run_id, conf=conf)
    wait_deferred_and_polled(deployment, dag_id, run_id)
    exec_dir = Path(remote_root) / conf["token"] / "exec"  # on the host, read here as root
    job_ids = deployment.wait_for(
        lambda: len(ids := [p.read_text().strip() for p in exec_dir.glob("jobid_*")]) == 2 and ids, 60, "two job ids",
    )
    deployment.wait_for(lambda: all(cluster.job_state(j) == "RUNNING" for j in job_ids), 60, "both jobs running", names=())

    deployment.set_task_state(dag_id, run_id, "swarm", "failed")

    deployment.wait_for(
        lambda: all(cluster.job_state(j) in ("CANCELLED", None) for j in job_ids), 90,
        "the swarm's jobs to be cancelled", extra=lambda: deployment.run_log_tails(dag_id, run_id),
    )
    assert cluster.live_jobs_named(conf["token"][:40]) == []
    assert deployment.task_instance(dag_id, run_id, "swarm")["state"] == "failed"


def test_a_poll_broken_on_the_host_fails_the_task_with_the_manifest_of_what_was_known(deployment, cluster, remote_root):
    token = new_token()
    out = deployment.data / token / "out"
    conf = {"token": f"unpollable-{token}", "output_dir": str(out), "remote_root": remote_root}
    dag_id, run_id = "deploy_unpollable", f"manual__{token}"
    deployment.wait_for_dag(dag_id)
    deployment.trigger_dag(dag_id, run_id, conf=conf)
    wait_deferred_and_polled(deployment, dag_id, run_id)
    root = f"{remote_root}/{conf['token']}"
    deployment.wait_for(
        lambda: " 0 end 0 " in cluster.ssh(f"cat {root}/exec/events_r0m0 2>/dev/null || true", retry_for=SSH_OUTAGE).stdout,
        60, "task 0 to end", names=(),
    )
    # The host's poll script breaks (a disk error, say): the host answers, the poll fails.
    cluster.ssh(f"printf 'echo poll.sh: Input/output error >&2; exit 5\\n' > {root}/exec/poll.sh", retry_for=SSH_OUTAGE)

    run = deployment.wait_for_run(dag_id, run_id, 240)
    assert run["state"] == "failed"
    logs = deployment.task_logs(dag_id, run_id, "swarm")
    assert "Lost track of the swarm: the swarm's poll failed" in logs and "Input/output error" in logs, logs[-3000:]
    assert "The manifest holds what was known" in logs
    manifest = {e["id"]: e for e in map(json.loads, (out / f"locusts_manifest.{conf['token']}.jsonl").read_text().splitlines())}
    assert manifest["0"]["state"] == "succeeded" and (out / "out_0.txt").read_text() == "0\n"
    assert all(manifest[str(i)]["reason"].startswith("never ") and "lost track" in manifest[str(i)]["reason"] for i in (1, 2, 3))
    assert deployment.xcom(dag_id, run_id, "swarm", "succeeded") == ["0"]
