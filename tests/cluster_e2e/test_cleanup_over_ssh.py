"""cleanup=True through the SSH shell, against the real test cluster's sshd (as `locusts`): the
root is renamed away at once on the host and deleted there by a detached process, which neither
the SSH channel nor cleanup() waits for; an unfinished removal next to it is finished too."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import pytest
from airflow.providers.ssh.hooks.ssh import SSHHook
from airflow.sdk import DAG

from airflow_provider_locusts.hooks.ssh_shell import SSHShell
from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator
from airflow_provider_locusts.swarm.engine import SwarmEngine

from .conftest import CONN_ID, unique_name
from .helpers import START, make_inputs

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

REMOVAL_TIMEOUT = 120


def host_entries(cluster, folder: str) -> list[str]:
    listing = cluster.ssh(f"ls -A -- {shlex.quote(folder)} 2>/dev/null || true").stdout
    return sorted(listing.split())


def wait_host_empty(cluster, folder: str) -> None:
    deadline = time.monotonic() + REMOVAL_TIMEOUT
    while entries := host_entries(cluster, folder):
        assert time.monotonic() < deadline, f"the background removal left {entries} in {folder} on the host"
        time.sleep(0.5)


@pytest.mark.parametrize("mode", ["copy", "shared"])
def test_cleanup_true_removes_the_root_on_the_ssh_host_in_the_background(cluster, run_dag, tmp_path, remote_root, shared_root, mode):
    staging, out = tmp_path / "staging", tmp_path / "out"
    where = str(shared_root) if mode == "shared" else remote_root
    with DAG(f"cluster_cleanup_{mode}", schedule=None, start_date=START, catchup=False) as dag:
        LocustsSwarmOperator(
            task_id="swarm",
            deferrable=True,
            command="cat in_<id>.txt <shared>common > a_<id>.txt",
            input_dir=str(make_inputs(tmp_path / "in", 12)),
            task_inputs=["in_<id>.txt"],
            shared_inputs={"common": "common.txt"},
            outputs=["a_<id>.txt"],
            output_dir=str(out),
            work_root=str(staging),
            ssh_conn_id=CONN_ID,
            remote_root=where,
            shared_root=str(shared_root) if mode == "shared" else None,
            scheduler="direct",
            processes=2,
            poll_interval=0.5,
            cleanup=True,
        )
    result = run_dag(dag)

    assert result.task_states() == {"swarm": "success"}
    swarm_id = result.xcom("swarm")["swarm_id"]
    assert (out / "a_11.txt").read_text() == "value 11\ncommon\n"
    # On the host, the root is gone from its path; at most its hidden removal is left, for a while.
    assert [e for e in host_entries(cluster, where) if not e.startswith(f".{swarm_id}.removing-")] == []
    wait_host_empty(cluster, where)
    # Nothing of the swarm is left on this side either (copy mode's scratch folders, a shared view).
    assert not staging.exists() or list(staging.iterdir()) == []


def test_the_ssh_call_returns_before_the_deletion_ends_and_finishes_an_unfinished_one(cluster, remote_root):
    # A root of 30,000 task folders made on the host (as `locusts`), and beside it the leftover of
    # a removal that stopped half-way (its marker and ledger still there).
    swarm_id = unique_name("sshclean")
    root = f"{remote_root}/{swarm_id}"
    leftover = f"{remote_root}/.other-swarm.removing-Ab3dE6gH9k"
    q = shlex.quote
    cluster.ssh(
        f"set -e; mkdir -p {q(root)}/exec {q(leftover)}/exec {q(leftover)}/work/batch_0/task_0; cd {q(root)}; "
        f"echo '{{\"swarm_id\": \"{swarm_id}\", \"rounds\": []}}' > exec/ledger.json; : > exec/tasks.jsonl; "
        "for b in $(seq 0 29); do mkdir -p work/batch_$b; (cd work/batch_$b && mkdir task_{0..999}); done; "
        f"printf 'locusts: removing other-swarm\\nroot\\n' > {q(leftover)}/.locusts_removing; "
        f"echo '{{}}' > {q(leftover)}/exec/ledger.json",
        timeout=120,
    )
    assert cluster.ssh(f"ls {q(root)}/work/batch_29 | wc -l").stdout.strip() == "1000"
    shell = SSHShell(SSHHook(ssh_conn_id=CONN_ID))
    try:
        began = time.monotonic()
        removal = SwarmEngine.attach(root, shell).cleanup()
        took = time.monotonic() - began
        hidden = removal.hidden
        left = host_entries(cluster, remote_root)
    finally:
        shell.close()

    assert hidden and Path(hidden).parent == Path(remote_root) and Path(hidden).name.startswith(f".{swarm_id}.removing-")
    assert removal.leftovers == 1
    assert swarm_id not in left
    # Still being deleted on the host when the call had returned: it did not wait.
    assert Path(hidden).name in left, f"30,000 folders deleted within {took:.2f} s? {left}"
    wait_host_empty(cluster, remote_root)
