"""Start-up failures against the real cluster: each one error with a message saying what is
wrong, and nothing left running.

Most call operator.execute() directly with a stand-in task instance (tests/conftest.py StandInTI)
to read the exception's message; the bad partition also runs through dag.test() to show
the Airflow task ends failed.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from airflow.sdk import DAG

from airflow_provider_locusts.exceptions import SwarmPreflightError
from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator

from .conftest import CONN_ID, unique_name
from .helpers import START

pytestmark = pytest.mark.cluster


def swarm_operator(tmp_path, swarm_id: str, **kwargs) -> LocustsSwarmOperator:
    return LocustsSwarmOperator(
        task_id="swarm",
        deferrable=True,
        command="echo <arg0> > out_<id>.txt",
        args=[["a"], ["b"], ["c"], ["d"]],
        outputs=["out_<id>.txt"],
        output_dir=str(tmp_path / "out"),
        work_root=str(tmp_path / "staging"),
        swarm_id=swarm_id,
        poll_interval=0.5,
        **kwargs,
    )


def test_bad_partition_is_rejected_with_slurms_message(cluster, tmp_path, remote_root, stand_in_context, swarm_guard):
    swarm_id = unique_name("badpart")
    swarm_guard.watch(swarm_id=swarm_id)
    operator = swarm_operator(
        tmp_path, swarm_id, ssh_conn_id=CONN_ID, remote_root=remote_root, scheduler="slurm", nodes=2, processes=1,
        slurm_options={"partition": "nosuch"},
    )
    with pytest.raises(Exception, match=r"invalid partition specified: nosuch") as error:
        operator.execute(stand_in_context("cluster_bad_partition"))
    assert "sbatch" in str(error.value)
    assert cluster.jobs_named(swarm_id[:40]) == []  # nothing submitted, nothing left queued
    assert cluster.ssh(f"ls {remote_root}/{swarm_id}/exec | grep -c '^jobid_' || true").stdout.strip() == "0"


def test_bad_partition_fails_the_airflow_task(cluster, run_dag, tmp_path, remote_root, swarm_guard):
    swarm_id = unique_name("badpart-dag")
    swarm_guard.watch(swarm_id=swarm_id)
    with DAG("cluster_bad_partition_dag", schedule=None, start_date=START, catchup=False) as dag:
        swarm_operator(
            tmp_path, swarm_id, ssh_conn_id=CONN_ID, remote_root=remote_root, scheduler="slurm",
            slurm_options={"partition": "nosuch"},
        )
    result = run_dag(dag)

    assert result.task_states() == {"swarm": "failed"}
    assert result.state == "failed"
    assert cluster.jobs_named(swarm_id[:40]) == []
    with pytest.raises(KeyError):
        result.xcom("swarm", key="succeeded")  # it never got as far as results
    assert not (tmp_path / "out").exists()


def ssh_connection(cluster, **changes) -> str:
    conn = json.loads(cluster.env["AIRFLOW_CONN_LOCUSTS_TEST_SSH"])
    extra = changes.pop("extra", {})
    conn.update(changes)
    conn["extra"].update(extra)
    return json.dumps(conn)


def test_unreachable_host_names_host_and_port(cluster, tmp_path, remote_root, stand_in_context, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_LOCUSTS_BAD_PORT", ssh_connection(cluster, port=2299))
    operator = swarm_operator(tmp_path, unique_name("unreachable"), ssh_conn_id="locusts_bad_port", remote_root=remote_root)
    with pytest.raises(Exception, match=r"127\.0\.0\.1:2299") as error:
        operator.execute(stand_in_context("cluster_unreachable"))
    assert "locusts_bad_port" in str(error.value)
    assert cluster.ssh(f"[ -e {remote_root} ] && echo there || echo absent").stdout.strip() == "absent"


def test_auth_failure_is_one_clear_error(cluster, tmp_path, remote_root, stand_in_context, monkeypatch):
    key = tmp_path / "tmpkey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    monkeypatch.setenv("AIRFLOW_CONN_LOCUSTS_BAD_KEY", ssh_connection(cluster, extra={"key_file": str(key)}))
    operator = swarm_operator(tmp_path, unique_name("badkey"), ssh_conn_id="locusts_bad_key", remote_root=remote_root)
    with pytest.raises(Exception, match=r"cannot open SSH connection 'locusts_bad_key' to locusts@127\.0\.0\.1:2222") as error:
        operator.execute(stand_in_context("cluster_bad_key"))
    assert "Authentication" in str(error.value)
    assert cluster.ssh(f"[ -e {remote_root} ] && echo there || echo absent").stdout.strip() == "absent"


def test_remote_root_not_writable(cluster, tmp_path, stand_in_context):
    remote_root = f"/root/{unique_name('locusts-nope')}"
    operator = swarm_operator(tmp_path, unique_name("nope"), ssh_conn_id=CONN_ID, remote_root=remote_root)
    with pytest.raises(Exception, match=r"Permission denied") as error:
        operator.execute(stand_in_context("cluster_not_writable"))
    assert remote_root in str(error.value)
    assert not os.path.exists(remote_root)


def test_missing_sbatch_on_this_machine(cluster, tmp_path, stand_in_context, monkeypatch, swarm_guard):
    # A PATH with what the preflight itself uses, but no SLURM command.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "hostname", "id", "tr", "mkdir", "mktemp", "rmdir"):
        (bin_dir / tool).symlink_to(subprocess.run(["which", tool], capture_output=True, text=True, check=True).stdout.strip())
    swarm_id = unique_name("nosbatch")
    swarm_guard.watch(swarm_id=swarm_id)
    operator = swarm_operator(tmp_path, swarm_id, scheduler="slurm", processes=1)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(SwarmPreflightError, match=r"has no sbatch squeue scontrol scancel") as error:
        operator.execute(stand_in_context("cluster_no_sbatch"))
    monkeypatch.undo()
    assert str(bin_dir) in str(error.value)  # it says which PATH was searched
    assert cluster.jobs_named(swarm_id[:40]) == []
    assert not (tmp_path / "staging" / swarm_id).exists()  # the preflight comes before any staging
