"""The swarm's XComs through Airflow's object-storage XCom backend (common.io), as a large swarm
should use it: values above a threshold go to a file:// folder, the database keeps a reference,
and downstream tasks still receive the full lists. Run in a fresh Airflow (the backend is read
from the configuration when Airflow starts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
N = 300


@pytest.mark.e2e
def test_the_swarms_xcoms_work_with_the_object_storage_backend(tmp_path):
    home, store, work = tmp_path / "home", tmp_path / "xcom store", tmp_path / "work"
    (home / "dags").mkdir(parents=True)
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__XCOM_BACKEND="airflow.providers.common.io.xcom.backend.XComObjectStorageBackend",
        AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_PATH=f"file://{store}",
        AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_THRESHOLD="1000",  # bytes: the id lists go to the store
        PYTHONPATH=os.pathsep.join([str(HERE.parents[1]), env.get("PYTHONPATH", "")]),
    )
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    proc = subprocess.run([sys.executable, str(HERE / "xcom_object_storage_run.py"), str(work), str(N)],
                          env=env, capture_output=True, timeout=600)
    output = proc.stdout.decode(errors="replace")
    lines = [line for line in output.splitlines() if line.startswith("@result ")]
    assert proc.returncode == 0 and lines, output[-3000:] + proc.stderr.decode(errors="replace")[-3000:]
    result = json.loads(lines[-1][len("@result "):])

    failing = [str(i) for i in range(N) if i % 7 == 3]
    succeeding = [str(i) for i in range(N) if i % 7 != 3]
    assert result["state"] == "success"
    received = result["received"]
    assert received["succeeded"] == succeeding and received["failed"] == failing == received["pulled_failed"]
    assert received["summary"]["failed_count"] == len(failing) and received["summary"]["failed_first"] == failing[:100]
    # Above the threshold a value went to the store and the database holds a reference to it;
    # below, the value itself. The swarm's return value stays small, whatever the swarm's size.
    stored = result["stored"]
    assert str(store) in stored["swarm:succeeded"] and '"1"' not in stored["swarm:succeeded"]
    assert json.loads(stored["swarm:failed"]) == failing  # 43 ids: under 1,000 bytes
    assert len(json.dumps(received["summary"])) < 5000
    files = [p for p in store.rglob("*") if p.is_file()]
    assert [json.loads(p.read_text()) for p in files if json.loads(p.read_text()) == succeeding]
