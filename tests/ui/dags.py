"""The DAGs the UI tests run, written into the services' DAG folder."""

from __future__ import annotations

from pathlib import Path

SWARM_DAG, HANDLE_DAG, OTHER_DAG = "locusts_ui_swarm", "locusts_ui_handle", "locusts_ui_other"
SWARM_TASKS, SWARM_FAILING = 6, 2  # task "2" exits 3
HOSTILE = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>')

DAG_FILE = '''"""DAGs of tests/ui (written by the tests)."""
from datetime import datetime

from airflow.sdk import DAG, get_current_context, task

from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator

BASE = @BASE@

with DAG("@SWARM_DAG@", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    LocustsSwarmOperator(
        task_id="swarm",
        args=[[i] for i in range(@SWARM_TASKS@)],
        command="echo task <arg0>; if [ <arg0> = @SWARM_FAILING@ ]; then echo failing on purpose >&2; exit 3; fi; echo <arg0> > out_<id>.txt",
        outputs=["out_<id>.txt"],
        output_dir=f"{BASE}/out/@SWARM_DAG@",
        work_root=f"{BASE}/swarms/@SWARM_DAG@",
        processes=2,
        max_failed_fraction=0.5,
        poll_interval=1,
        heartbeat_interval=2,
        retries=0,
    )

with DAG("@HANDLE_DAG@", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

    @task(task_id="record")
    def record():
        # Records a swarm handle the way the operator will, with hostile text in it: the view
        # must show it as text.
        get_current_context()["ti"].xcom_push(key="locusts_swarm", value={
            "root": "/scratch/swarms/@HOSTILE0@", "connection": @HOSTILE1@, "round": 0, "managers": ["r0m0"],
        })

    record()

with DAG("@OTHER_DAG@", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

    @task(task_id="plain")
    def plain():
        return 1

    plain()
'''


def write_dags(dags: Path, base: Path) -> None:
    for folder in ("out", "swarms"):
        (base / folder).mkdir(exist_ok=True)
    text = (
        DAG_FILE.replace("@BASE@", repr(str(base)))
        .replace("@SWARM_DAG@", SWARM_DAG).replace("@HANDLE_DAG@", HANDLE_DAG).replace("@OTHER_DAG@", OTHER_DAG)
        .replace("@SWARM_TASKS@", str(SWARM_TASKS)).replace("@SWARM_FAILING@", str(SWARM_FAILING))
        .replace("@HOSTILE0@", HOSTILE[0]).replace("@HOSTILE1@", repr(HOSTILE[1]))
    )
    (dags / "locusts_ui_dags.py").write_text(text)
