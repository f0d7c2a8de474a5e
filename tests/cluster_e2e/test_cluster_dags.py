"""Swarm DAGs run with dag.test() against the real test cluster: SSH copy mode on SLURM
(Example 1), remote-shared mode, SLURM on this machine, packing tasks into managers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from airflow.sdk import DAG

from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator

from tests.e2e.test_example1_dag import assert_example1_results
from tests.support.swarm_files import parse_task_list

from .conftest import CONN_ID
from .helpers import START, example1_data, make_inputs, max_concurrency, read_events

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]


def test_example1_over_ssh_on_slurm_collects_202_outputs(cluster, run_dag, tmp_path, remote_root, swarm_guard):
    swarm_guard.watch(swarm_id="cluster_example1_ssh_slurm")  # job names hold the swarm id, which starts with the dag id
    data = example1_data()
    input_dir = data.make_example1_inputs(tmp_path / "input")
    out = tmp_path / "out"
    with DAG("cluster_example1_ssh_slurm", schedule=None, start_date=START, catchup=False) as dag:
        LocustsSwarmOperator(
            task_id="swarm",
            deferrable=True,
            command=data.COMMAND,
            input_dir=str(input_dir),
            task_inputs=data.TASK_INPUTS,
            shared_inputs=data.SHARED_INPUTS,
            outputs=data.OUTPUTS,
            output_dir=str(out),
            work_root=str(tmp_path / "staging"),
            ssh_conn_id=CONN_ID,
            remote_root=remote_root,
            scheduler="slurm",
            processes=4,
            slurm_options={"cpus_per_task": 1},  # the node has 2 CPUs; the default would be `processes`
            poll_interval=1,
        )
    result = run_dag(dag)

    assert result.task_states() == {"swarm": "success"}
    # The task folders were written on the host, by the SSH user: `ls -l` lists it as owner.
    summary = assert_example1_results(result, owner="locusts")

    # It really went through SLURM, on the remote root: one job, COMPLETED.
    swarm_root = f"{remote_root}/{summary['swarm_id']}"
    job_ids = cluster.ssh(f"cat {swarm_root}/exec/jobid_*").stdout.split()
    assert len(job_ids) == 1
    assert cluster.job_state(job_ids[0]) == "COMPLETED"
    assert cluster.ssh(f"ls {swarm_root}/work/batch_0 | wc -l").stdout.strip() == "101"


# Tasks 4, 11 and 17 exit 3 before writing b_<id>.txt.
FAIL_3_OF_20 = (
    "cat in_<id>.txt <shared>common > a_<id>.txt; "
    "case <id> in 4|11|17) exit 3;; esac; "
    "id -un > b_<id>.txt"
)
FAILING = ["4", "11", "17"]


def test_remote_shared_mode_runs_in_place_without_any_copy(cluster, run_dag, tmp_path, shared_root):
    staging = tmp_path / "staging"
    out = tmp_path / "out"
    with DAG("cluster_remote_shared_direct", schedule=None, start_date=START, catchup=False) as dag:
        LocustsSwarmOperator(
            task_id="swarm",
            deferrable=True,
            command=FAIL_3_OF_20,
            input_dir=str(make_inputs(tmp_path / "in", 20)),
            task_inputs=["in_<id>.txt"],
            shared_inputs={"common": "common.txt"},
            outputs=["a_<id>.txt", "b_<id>.txt"],
            output_dir=str(out),
            work_root=str(staging),
            ssh_conn_id=CONN_ID,
            remote_root=str(shared_root),
            shared_root=str(shared_root),  # the same machine: both sides see the same path
            scheduler="direct",
            processes=3,
            max_failed_fraction=0.2,
            poll_interval=0.5,
        )
    result = run_dag(dag)

    assert result.task_states() == {"swarm": "success"}
    summary = result.xcom("swarm")
    assert summary["failed_first"] == FAILING
    assert result.xcom("swarm", key="succeeded") == [str(i) for i in range(20) if str(i) not in FAILING]
    assert result.xcom("swarm", key="failed") == FAILING
    assert all(summary["reasons"][i].startswith("exit code 3") for i in FAILING)
    for i in range(20):
        ok = str(i) not in FAILING
        assert (out / f"a_{i}.txt").exists() == ok
        assert (out / f"b_{i}.txt").exists() == ok
        if ok:
            assert (out / f"a_{i}.txt").read_text() == f"value {i}\ncommon\n"
            assert (out / f"b_{i}.txt").read_text() == "locusts\n"  # ran on the host as the SSH user

    # No tar transfer: nothing was staged under work_root; the swarm lives in the shared folder.
    swarm_root = shared_root / summary["swarm_id"]
    assert not (staging / summary["swarm_id"]).exists()
    assert not staging.exists()
    task_dirs = sorted((swarm_root / "work").glob("batch_0/*"))
    assert len(task_dirs) == 20
    locusts_uid = int(cluster.ssh("id -u").stdout)
    for task_dir in task_dirs:
        assert task_dir.stat().st_uid == 0  # staged by this side, in place
    # written by the host's manager and the failed tasks, in the folders staged here
    assert (swarm_root / "exec" / "events_r0m0").stat().st_uid == locusts_uid
    assert (swarm_root / "work" / "batch_0" / "task_4" / "a_4.txt").stat().st_uid == locusts_uid
    assert (swarm_root / "work" / "batch_0" / "task_4" / ".locusts_missing").read_text() == "b_4.txt\n"
    manifest = {e["id"]: e for e in map(json.loads, Path(summary["manifest"]).read_text().splitlines())}
    assert manifest["4"]["exit_code"] == 3


def test_slurm_on_this_machine_without_ssh(cluster, run_dag, tmp_path, swarm_guard):
    swarm_guard.watch(swarm_id="cluster_local_slurm")
    work_root = tmp_path / "swarms"
    out = tmp_path / "out"
    with DAG("cluster_local_slurm", schedule=None, start_date=START, catchup=False) as dag:
        LocustsSwarmOperator(
            task_id="swarm",
            deferrable=True,
            command='cat in_<id>.txt > a_<id>.txt; printf "%s\\n" "$SLURM_JOB_ID" > job_<id>.txt',
            input_dir=str(make_inputs(tmp_path / "in", 12)),
            task_inputs=["in_<id>.txt"],
            outputs=["a_<id>.txt", "job_<id>.txt"],
            output_dir=str(out),
            work_root=str(work_root),
            scheduler="slurm",
            processes=2,
            slurm_options={"cpus_per_task": 1},
            poll_interval=0.5,
        )
    result = run_dag(dag)

    assert result.task_states() == {"swarm": "success"}
    ids = [str(i) for i in range(12)]
    summary = result.xcom("swarm")
    assert (summary["succeeded_count"], summary["failed_count"]) == (len(ids), 0)
    assert result.xcom("swarm", key="succeeded") == ids
    assert result.xcom("swarm", key="failed") == []

    exec_dir = work_root / summary["swarm_id"] / "exec"
    job_files = sorted(exec_dir.glob("jobid_*"))
    assert [p.name for p in job_files] == ["jobid_r0m0"]
    job_id = job_files[0].read_text().strip()
    assert job_id.isdigit()
    assert cluster.job_state(job_id) == "COMPLETED"
    for i in ids:
        assert (out / f"a_{i}.txt").read_text() == f"value {i}\n"
        assert (out / f"job_{i}.txt").read_text() == f"{job_id}\n"  # every task ran inside that job


def packing_dag(dag_id: str, tmp_path: Path, **kwargs) -> DAG:
    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        LocustsSwarmOperator(
            task_id="swarm",
            deferrable=True,
            command="sleep 0.3; printf '%s\\n' <arg0> > out_<id>.txt",
            args=[[f"arg{i}"] for i in range(40)],
            outputs=["out_<id>.txt"],
            output_dir=str(tmp_path / "out"),
            work_root=str(tmp_path / "swarms"),
            scheduler="slurm",
            processes=2,
            slurm_options={"cpus_per_task": 1},
            poll_interval=0.5,
            **kwargs,
        )
    return dag


def check_packing(cluster, result, exec_dir: Path, tmp_path: Path) -> None:
    assert result.task_states() == {"swarm": "success"}
    ids = [str(i) for i in range(40)]
    summary = result.xcom("swarm")
    assert (summary["succeeded_count"], summary["failed_count"]) == (len(ids), 0)
    assert result.xcom("swarm", key="succeeded") == ids
    assert result.xcom("swarm", key="failed") == []
    for i in range(40):
        assert (tmp_path / "out" / f"out_{i}.txt").read_text() == f"arg{i}\n"

    # Two managers, two SLURM jobs, 20 tasks each, never more than `processes` at once per manager.
    task_lists = {p.name.removeprefix("tasks_"): parse_task_list(p.read_bytes()) for p in exec_dir.glob("tasks_*")}
    assert sorted(task_lists) == ["r0m0", "r0m1"]
    assert [len(v) for v in task_lists.values()] == [20, 20]
    all_listed = sorted(index for listed in task_lists.values() for index, _ in listed)
    assert all_listed == list(range(40))
    job_ids = {p.name.removeprefix("jobid_"): p.read_text().strip() for p in exec_dir.glob("jobid_*")}
    assert sorted(job_ids) == ["r0m0", "r0m1"]
    assert len(set(job_ids.values())) == 2
    for job_id in job_ids.values():
        assert cluster.job_state(job_id) == "COMPLETED"
    events = read_events(exec_dir)
    assert sorted(events) == ["r0m0", "r0m1"]
    for manager, rows in events.items():
        assert sorted(r[1] for r in rows if r[2] == "start") == sorted(str(index) for index, _ in task_lists[manager])
        assert max_concurrency(rows) == 2, f"manager {manager} ran {max_concurrency(rows)} tasks at once"


def test_packing_two_managers_over_ssh(cluster, run_dag, tmp_path, remote_root, swarm_guard):
    swarm_guard.watch(swarm_id="cluster_packing_ssh")
    dag = packing_dag(
        "cluster_packing_ssh", tmp_path, nodes=2, min_tasks_per_process=1, ssh_conn_id=CONN_ID, remote_root=remote_root
    )
    result = run_dag(dag)
    # Copy mode: the swarm's files are on the host only (this test, as root on the host, reads them there).
    exec_dir = Path(remote_root) / result.xcom("swarm")["swarm_id"] / "exec"
    check_packing(cluster, result, exec_dir, tmp_path)


def test_min_tasks_per_process_uses_fewer_managers(cluster, run_dag, tmp_path, swarm_guard):
    swarm_guard.watch(swarm_id="cluster_packing_min_tasks")
    # 4 nodes allowed, but each manager must get >= 10 x 2 tasks: 40 tasks -> 2 managers.
    dag = packing_dag("cluster_packing_min_tasks", tmp_path, nodes=4, min_tasks_per_process=10)
    result = run_dag(dag)
    exec_dir = tmp_path / "swarms" / result.xcom("swarm")["swarm_id"] / "exec"
    check_packing(cluster, result, exec_dir, tmp_path)
    assert os.path.exists(exec_dir / "manager_r0m1.slurm.sh") and not os.path.exists(exec_dir / "manager_r0m2.slurm.sh")
