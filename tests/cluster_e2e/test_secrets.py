"""No secret reaches logs, XCom or the files a swarm writes: a swarm runs over SSH with a
connection that carries its private key inline, and every place the key could land is
searched for it:

- with dag.test(): what the run printed (Airflow writes its task and trigger logs to
  stdout there) and logged, the XComs, work_root (copy mode's scratch folders) and output_dir, the swarm
  root on the SSH host, and the whole private AIRFLOW_HOME (metadata database included);
- with the real services (scheduler, worker, triggerer, api-server, dag-processor of
  tests/services/conftest.py): Airflow's own log files — the task's and the trigger's logs,
  each service's output — besides the same files, database and swarm root.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path

import pytest
from airflow.sdk import DAG

from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator
from tests.services.conftest import AirflowServices

from .conftest import unique_name

pytestmark = pytest.mark.cluster

INLINE_CONN_ID = "locusts_inline_key"


def inline_key_connection(cluster) -> tuple[str, list[bytes]]:
    """The test cluster's SSH connection with its private key inline instead of a key file
    (JSON, for an AIRFLOW_CONN_ variable), and the key's body lines to search for."""
    key_text = Path(cluster.env["LOCUSTS_SSH_KEY"]).read_text()
    key_lines = [line.encode() for line in key_text.splitlines() if line and not line.startswith("-----")]
    assert key_lines
    connection = json.loads(cluster.env["AIRFLOW_CONN_LOCUSTS_TEST_SSH"])
    connection["extra"].pop("key_file")
    connection["extra"]["private_key"] = key_text
    return json.dumps(connection), key_lines


def files_under(*folders: Path) -> dict[str, bytes]:
    """Every regular file under the folders, by path. The SSH host is this machine (the test
    cluster listens on loopback only) and the tests run as root, so the swarm root on the
    host is read directly, whoever owns it there."""
    found = {}
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                found[str(path)] = path.read_bytes()
    return found


def assert_nowhere(key_lines: list[bytes], places: dict[str, bytes]) -> None:
    """Fails naming the place, without printing the key (a plain assert would show it)."""
    leaks = sorted({where for where, data in places.items() for line in key_lines if line in data})
    if leaks:
        pytest.fail(f"a line of the private key appears in: {', '.join(leaks)}", pytrace=False)


def swarm_files_on_host(remote_root: str) -> dict[str, bytes]:
    """The swarm root on the SSH host, checked to hold what a finished swarm leaves there."""
    files = files_under(Path(remote_root))
    names = {Path(p).name for p in files}
    assert {"ledger.json", "command.sh", "manager_r0m0.sh", "manager_r0m0.log", "events_r0m0", "stdout.txt", "stderr.txt"} <= names, sorted(names)
    return files


def test_private_key_never_appears_in_logs_xcom_files_or_the_metadata_database(
    cluster, run_dag, tmp_path, remote_root, monkeypatch, capfd, caplog
):
    connection, key_lines = inline_key_connection(cluster)
    monkeypatch.setenv(f"AIRFLOW_CONN_{INLINE_CONN_ID.upper()}", connection)
    caplog.set_level(logging.DEBUG)

    with DAG("no_secrets", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        LocustsSwarmOperator(
            task_id="swarm",
            deferrable=True,
            # Prints on both streams, so the tasks' logs are kept and searched too.
            command="echo task <arg0>; echo note <arg0> >&2; echo <arg0> > out_<id>.txt",
            args=[[i] for i in range(5)],
            outputs=["out_<id>.txt"],
            output_dir=str(tmp_path / "out"),
            work_root=str(tmp_path / "staging"),
            ssh_conn_id=INLINE_CONN_ID,
            remote_root=remote_root,
            poll_interval=0.5,
        )
    result = run_dag(dag)

    assert result.task_states() == {"swarm": "success"}
    summary = result.xcom("swarm")
    assert result.xcom("swarm", key="succeeded") == ["0", "1", "2", "3", "4"]
    printed = capfd.readouterr()
    # Airflow's logs of the task and of its trigger (which names the swarm root) are here.
    # Airflow's logs of the task and of its trigger are here: both name the swarm, and the
    # trigger logs its progress.
    assert printed.out.count(summary["swarm_id"]) >= 2 and "5/5 done" in printed.out
    places = {
        "stdout": printed.out.encode(),
        "stderr": printed.err.encode(),
        "log records": "\n".join(r.getMessage() for r in caplog.records).encode(),
        "xcom": json.dumps([summary, result.xcom("swarm", key="failed"), result.xcom("swarm", key="succeeded")]).encode(),
    }
    places.update(files_under(tmp_path))
    places.update(swarm_files_on_host(remote_root))
    home = files_under(Path(os.environ["AIRFLOW_HOME"]))
    assert any(p.endswith("airflow.db") for p in home), sorted(home)
    places.update(home)
    assert_nowhere(key_lines, places)


DAG_FILE = '''"""DAG of tests/cluster_e2e/test_secrets.py (written by the test)."""
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator

with DAG(@DAG_ID@, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    LocustsSwarmOperator(
        task_id="swarm",
        deferrable=True,
        command="echo task <arg0>; echo note <arg0> >&2; echo <arg0> > out_<id>.txt",
        args=[[i] for i in range(5)],
        outputs=["out_<id>.txt"],
        output_dir=@OUT@,
        work_root=@STAGING@,
        ssh_conn_id=@CONN_ID@,
        remote_root=@REMOTE_ROOT@,
        poll_interval=1,
        retries=0,
    )
'''


@pytest.mark.services
def test_private_key_never_appears_in_airflow_log_files(cluster, tmp_path, remote_root):
    connection, key_lines = inline_key_connection(cluster)
    dag_id, run_id = "locusts_no_secrets_services", unique_name("run")
    services = AirflowServices(tmp_path / "services")
    services.env[f"AIRFLOW_CONN_{INLINE_CONN_ID.upper()}"] = connection
    (services.dags / "locusts_no_secrets.py").write_text(
        DAG_FILE.replace("@DAG_ID@", repr(dag_id))
        .replace("@OUT@", repr(str(tmp_path / "out")))
        .replace("@STAGING@", repr(str(tmp_path / "staging")))
        .replace("@CONN_ID@", repr(INLINE_CONN_ID))
        .replace("@REMOTE_ROOT@", repr(remote_root))
    )
    try:
        services.start_all()
        services.wait_for_dag(dag_id)
        services.trigger_dag(dag_id, run_id)
        state = services.wait_for(
            lambda: (s := services.dag_run(dag_id, run_id)["state"]) in ("success", "failed") and s, 300,
            f"run {run_id} of {dag_id} to finish", extra=lambda: services.task_log_tail(dag_id, run_id, "swarm"),
        )
        assert state == "success", services.task_log_tail(dag_id, run_id, "swarm", 80)
        assert services.xcom(dag_id, run_id, "swarm", "succeeded") == ["0", "1", "2", "3", "4"]
    finally:
        services.close()

    # Airflow's own log files: the task's (worker) and the trigger's, and each service's output.
    task_logs = sorted((services.home / "logs" / f"dag_id={dag_id}").rglob("*.log"))
    assert any(".trigger." in p.name for p in task_logs) and any(".trigger." not in p.name for p in task_logs), task_logs
    assert "Swarm " in services.task_logs(dag_id, run_id, "swarm", trigger_only=True)
    places = files_under(services.home, services.logs, tmp_path / "out", tmp_path / "staging")
    assert {f"{c}.log" for c in ("scheduler", "triggerer", "api-server", "dag-processor")} <= {Path(p).name for p in places}
    places.update(swarm_files_on_host(remote_root))
    assert_nowhere(key_lines, places)
