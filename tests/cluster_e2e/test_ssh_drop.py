"""SSH to the cluster goes down while a swarm is being watched: the real sshd is stopped
(tests/cluster/stop.sh sshd) and started again later, while dag.test() runs the swarm.

- Down for 30 s: the trigger reconnects with bounded exponential backoff and the swarm
  completes in the same try, with no task run twice and no second round.
- Down past `max_poll_failures`: the try fails saying so, the swarm keeps running on the
  host, and the Airflow retry resumes watching it — still no task run twice. Its tasks wait
  on a gate the test opens once the retry has deferred, so the swarm is certainly still
  running when the retry looks.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from airflow.sdk import DAG

from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator
from tests.e2e.conftest import OnDeferral, raised

from .conftest import CONN_ID, unique_name
from .helpers import starts_per_task

pytestmark = pytest.mark.cluster

CLUSTER_SCRIPTS = Path(__file__).resolve().parents[1] / "cluster"


class SshOutage(threading.Thread):
    """Once the swarm's ledger exists (it was staged and started), waits `after` seconds,
    stops the test sshd, and starts it again `for_seconds` later."""

    def __init__(self, ledger: Path, after: float, for_seconds: float):
        super().__init__(daemon=True)
        self.ledger, self.after, self.for_seconds = ledger, after, for_seconds
        self.stopped_at = self.restarted_at = None
        self.error = None

    def run(self) -> None:
        try:
            deadline = time.monotonic() + 120
            while not self.ledger.exists():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.ledger} never appeared")
                time.sleep(0.2)
            time.sleep(self.after)
            subprocess.run(["bash", str(CLUSTER_SCRIPTS / "stop.sh"), "sshd"], check=True, capture_output=True, timeout=60)
            self.stopped_at = time.monotonic()
            time.sleep(self.for_seconds)
        except Exception as error:  # noqa: BLE001 - reported by the test
            self.error = error
        finally:
            subprocess.run(["bash", str(CLUSTER_SCRIPTS / "start.sh")], check=False, capture_output=True, timeout=120)
            self.restarted_at = time.monotonic()


def sleepy_swarm_dag(
    dag_id: str, tmp_path: Path, remote_root: str, swarm_id: str, command: str = "sleep 1; echo <arg0> > out_<id>.txt", **kwargs
) -> DAG:
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        LocustsSwarmOperator(
            task_id="swarm",
            deferrable=True,
            command=command,
            args=[[i] for i in range(30)],
            outputs=["out_<id>.txt"],
            output_dir=str(tmp_path / "out"),
            work_root=str(tmp_path / "staging"),
            swarm_id=swarm_id,
            ssh_conn_id=CONN_ID,
            remote_root=remote_root,
            processes=2,
            poll_interval=1,
            heartbeat_interval=2,
            # Longer than the outage: a heartbeat that could not be read is not a lost manager.
            heartbeat_timeout=120,
            **kwargs,
        )
    return dag


def assert_ran_once_in_one_round(tmp_path: Path, root: Path) -> None:
    """`root`: the swarm root on the host (this test, as root on the host, reads it there)."""
    assert len(json.loads((root / "exec" / "ledger.json").read_text())["rounds"]) == 1
    assert starts_per_task(root / "exec") == Counter({str(i): 1 for i in range(30)})
    for i in range(30):
        assert (tmp_path / "out" / f"out_{i}.txt").read_text() == f"{i}\n"


def test_trigger_reconnects_after_a_30_s_outage_and_the_swarm_completes(cluster, run_dag, tmp_path, remote_root):
    swarm_id = unique_name("drop")
    outage = SshOutage(Path(remote_root) / swarm_id / "exec" / "ledger.json", after=2, for_seconds=30)
    outage.start()
    result = run_dag(sleepy_swarm_dag("ssh_outage_30s", tmp_path, remote_root, swarm_id))
    outage.join(timeout=180)

    assert outage.error is None, outage.error
    assert outage.stopped_at is not None and outage.restarted_at is not None
    assert result.task_states() == {"swarm": "success"}
    assert result.try_number("swarm") == 1
    assert result.xcom("swarm", key="succeeded") == [str(i) for i in range(30)]
    assert_ran_once_in_one_round(tmp_path, Path(remote_root) / swarm_id)


def test_outage_past_the_limit_fails_the_try_and_the_retry_resumes_the_running_swarm(
    cluster, run_dag, tmp_path, remote_root, capfd
):
    swarm_id = unique_name("drop")
    root, gate = f"{remote_root}/{swarm_id}", f"{remote_root}/gate"
    # Every task waits on the host for the gate, opened only once the retry has deferred: the
    # swarm certainly outlives the outage and the retry delay, and is still running when the
    # retry looks. A gate never opened fails the tasks after 300 s, so nothing lingers.
    command = (
        f"for _ in $(seq 3000); do [ -e {gate} ] && break; sleep 0.1; done; [ -e {gate} ] || exit 3; "
        "sleep 0.3; echo <arg0> > out_<id>.txt"
    )
    seen_at_retry = {}

    def open_gate() -> None:
        try:
            probe = cluster.ssh(
                f"read -r pid host < {root}/exec/pid_r0m0; echo $pid; tr '\\0' ' ' < /proc/$pid/cmdline; echo; "
                f"grep -c ' end ' {root}/exec/events_r0m0 || true",
                check=False,
            ).stdout.splitlines()
            seen_at_retry.update(pid=probe[0], running="manager_r0m0.sh" in probe[1], ended=int(probe[2]))
        finally:
            cluster.ssh(f"touch {gate}", check=False)

    opener = OnDeferral("ssh_outage_past_limit", "swarm", try_number=2, action=open_gate)
    outage = SshOutage(Path(root) / "exec" / "ledger.json", after=2, for_seconds=10)
    opener.start()
    outage.start()
    dag = sleepy_swarm_dag(
        "ssh_outage_past_limit", tmp_path, remote_root, swarm_id, command=command,
        max_poll_failures=1, retries=1, retry_delay=timedelta(seconds=15),
    )
    try:
        result = run_dag(dag)
    finally:
        cluster.ssh(f"touch {gate}", check=False)
    outage.join(timeout=180)
    opener.check()

    assert outage.error is None, outage.error
    # The first try failed because the host could not be polled, and said so, naming the
    # swarm root and that a retry resumes watching it. (How sure it is that the swarm still
    # runs depends on whether SSH was back when the worker looked; with SSH still down the
    # traceback also shows the worker's own failed attempt as the cause.)
    errors = raised(capfd.readouterr().out)
    lost = [m for m in errors if "Lost track of the swarm" in m]
    assert len(lost) == 1, errors
    assert "Lost track of the swarm: the swarm's host could not be polled 2 times in a row: " in lost[0], lost[0]
    assert root in lost[0] and "retry resumes watching it" in lost[0].lower(), lost[0]
    # When the retry deferred, the first try's manager was still running with no task ended.
    assert seen_at_retry.get("running") is True and seen_at_retry.get("ended") == 0, (
        f"when the retry deferred, the first try's manager should have been running with no task ended: {seen_at_retry}"
    )
    assert result.task_states() == {"swarm": "success"}
    assert result.try_number("swarm") == 2
    assert result.xcom("swarm", key="succeeded") == [str(i) for i in range(30)]
    # Watched again, not started again: one round, its manager launched once, every task run once.
    assert cluster.ssh(f"cat {root}/exec/pid_r0m0").stdout.split()[0] == seen_at_retry["pid"]
    assert cluster.ssh(f"cd {root}/exec && ls launched_*").stdout.split() == ["launched_r0m0"]
    assert_ran_once_in_one_round(tmp_path, Path(root))
