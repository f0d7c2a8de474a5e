"""No secret reaches logs, XCom or the files a swarm writes: a swarm runs over SSH with a
connection that carries its private key inline, and everything it printed, logged and
stored is searched for the key."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

import pytest
from airflow.sdk import DAG

from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator

pytestmark = pytest.mark.cluster


def test_private_key_never_appears_in_logs_xcom_or_files(cluster, run_dag, tmp_path, remote_root, monkeypatch, capfd, caplog):
    key_text = Path(cluster.env["LOCUSTS_SSH_KEY"]).read_text()
    key_lines = [line for line in key_text.splitlines() if line and not line.startswith("-----")]
    connection = json.loads(cluster.env["AIRFLOW_CONN_LOCUSTS_TEST_SSH"])
    connection["extra"].pop("key_file")
    connection["extra"]["private_key"] = key_text
    monkeypatch.setenv("AIRFLOW_CONN_LOCUSTS_INLINE_KEY", json.dumps(connection))
    caplog.set_level(logging.DEBUG)

    with DAG("no_secrets", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        LocustsSwarmOperator(
            task_id="swarm",
            deferrable=True,
            command="echo <arg0> > out_<id>.txt",
            args=[[i] for i in range(5)],
            outputs=["out_<id>.txt"],
            output_dir=str(tmp_path / "out"),
            work_root=str(tmp_path / "staging"),
            ssh_conn_id="locusts_inline_key",
            remote_root=remote_root,
            poll_interval=0.5,
        )
    result = run_dag(dag)

    assert result.task_states() == {"swarm": "success"}
    summary = result.xcom("swarm")
    assert result.xcom("swarm", key="succeeded") == ["0", "1", "2", "3", "4"]
    printed = capfd.readouterr()
    texts = {
        "stdout": printed.out,
        "stderr": printed.err,
        "log records": "\n".join(r.getMessage() for r in caplog.records),
        "xcom": json.dumps([summary, result.xcom("swarm", key="failed"), result.xcom("swarm", key="succeeded")]),
    }
    texts.update({str(p): p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()})
    for where, text in texts.items():
        for line in key_lines:
            assert line not in text, f"a line of the private key appears in {where}"
