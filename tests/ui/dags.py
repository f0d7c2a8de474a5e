"""The DAGs the UI tests run, written into the services' DAG folder."""

from __future__ import annotations

from pathlib import Path

SWARM_DAG, HANDLE_DAG, OTHER_DAG = "locusts_ui_swarm", "locusts_ui_handle", "locusts_ui_other"
LIVE_DAG, BIG_DAG, CLUSTER_DAG = "locusts_ui_live", "locusts_ui_big", "locusts_ui_cluster"
ENV_DAG = "locusts_ui_environment"
SWARM_TASKS, SWARM_FAILING = 6, 2  # task "2" exits 3
HOSTILE = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>')

# LIVE_DAG: 100 tasks, 4 at a time, ids "sample_000" … "sample_098" and HOSTILE[1] (a file
# name can hold it; HOSTILE[0] holds a "/", so it comes from the manifest-only swarm). The
# ids sample_00x and the hostile one run at once; the others wait (at most 300 s) for the
# gate file the test creates. Ids ending in 0, and the hostile one, fail with HTML on stderr.
LIVE_IDS = [HOSTILE[1]] + [f"sample_{i:03d}" for i in range(99)]
LIVE_FAILING = [i for i in LIVE_IDS if i.endswith("0") or i == HOSTILE[1]]
LIVE_PROCESSES = 4
LIVE_STDERR = "</pre><b>bold</b><script>alert(3)</script> failing on purpose"
LIVE_COMMAND = (
    "case <id> in sample_00*|*onerror*) ;; *) n=0; while [ ! -e @GATE@ ] && [ $n -lt 3000 ]; do sleep 0.1; n=$((n+1)); done; sleep 0.2;; esac; "
    "echo working on <id>; "
    "case <id> in *0|*onerror*) echo '@STDERR@' >&2; exit 3;; esac; "
    "cp in_<id>.txt out_<id>.txt"
)
# ENV_DAG: 3 tasks in a Custom Environment (the tree env_tree/: conf/ read-only, results/
# writable, holding old.txt): each writes a result under a hostile name and rewrites old.txt;
# task 1 also deletes it; task 2 writes into conf/ (read-only) and so fails naming the file.
ENV_TASKS = 3
ENV_RESULT = "<b>r_<img src=x onerror=alert(6)>"
ENV_COMMAND = (
    "echo result <arg0> > 'results/@RESULT@'<arg0>.txt; echo new > results/old.txt; "
    "if [ <arg0> = 1 ]; then rm results/old.txt; fi; "
    "if [ <arg0> = 2 ]; then echo sneaky > conf/settings.txt; fi"
)

# CLUSTER_DAG: 6 tasks on SLURM over SSH (2 jobs), gated the same way on the SSH host; task 5 fails.
CLUSTER_TASKS = 6
CLUSTER_COMMAND = (
    "n=0; while [ ! -e @GATE@ ] && [ $n -lt 3000 ]; do sleep 0.1; n=$((n+1)); done; "
    "echo working on <arg0> on $(hostname); "
    "if [ <arg0> = 5 ]; then echo \"cluster task <arg0> failing on purpose\" >&2; exit 5; fi; "
    "echo <arg0> > out_<id>.txt"
)

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

with DAG("@LIVE_DAG@", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    LocustsSwarmOperator(
        task_id="swarm",
        command=@LIVE_COMMAND@,
        input_dir=f"{BASE}/live_inputs",
        task_inputs=["in_<id>.txt"],
        outputs=["out_<id>.txt"],
        output_dir=f"{BASE}/out/{{{{ run_id }}}}",
        work_root=f"{BASE}/swarms/@LIVE_DAG@",
        processes=@LIVE_PROCESSES@,
        max_failed_fraction=0.5,
        poll_interval=1,
        heartbeat_interval=2,
        deferrable=True,
        retries=0,
    )

with DAG("@BIG_DAG@", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

    @task(task_id="swarm")
    def big():
        # The handle of a swarm root the test builds (results and task table only): the view
        # reads it like any other swarm's.
        get_current_context()["ti"].xcom_push(key="locusts_swarm", value={
            "swarm_id": "big", "root": f"{BASE}/big/big", "ssh_conn_id": None, "output_dir": f"{BASE}/big/out",
            "scheduler": "direct", "round": 0, "managers": ["r0m0"], "round_tasks": 100000, "total": 100000,
        })

    big()

with DAG("@ENV_DAG@", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    LocustsSwarmOperator(
        task_id="swarm",
        args=[[i] for i in range(@ENV_TASKS@)],
        command=@ENV_COMMAND@,
        environment_dir=f"{BASE}/env_tree",
        environment_writable=["results"],
        output_dir=f"{BASE}/out/@ENV_DAG@",
        work_root=f"{BASE}/swarms/@ENV_DAG@",
        processes=1,
        max_failed_fraction=0.5,
        poll_interval=1,
        heartbeat_interval=2,
        retries=0,
    )

@CLUSTER_DAG_TEXT@
with DAG("@OTHER_DAG@", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

    @task(task_id="plain")
    def plain():
        return 1

    plain()
'''


CLUSTER_DAG_TEXT = '''
with DAG("@CLUSTER_DAG@", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    LocustsSwarmOperator(
        task_id="swarm",
        args=[[i] for i in range(@CLUSTER_TASKS@)],
        command=@CLUSTER_COMMAND@,
        outputs=["out_<id>.txt"],
        output_dir=f"{BASE}/out/@CLUSTER_DAG@",
        work_root=f"{BASE}/swarms/@CLUSTER_DAG@",
        ssh_conn_id="locusts_test_ssh",
        remote_root=@REMOTE_ROOT@,
        swarm_id=@CLUSTER_SWARM_ID@,
        scheduler="slurm",
        nodes=2,
        min_tasks_per_process=1,
        processes=2,
        slurm_options={"cpus_per_task": 1},
        max_failed_fraction=0.5,
        poll_interval=1,
        heartbeat_interval=2,
        deferrable=True,
        retries=0,
    )
'''


def live_gate(base: Path) -> Path:
    return base / "gates" / "live"


def write_dags(dags: Path, base: Path, cluster: dict[str, str] | None = None) -> None:
    """The DAG file; the cluster DAG only with `cluster`: its "gate" and "remote_root" (paths on
    the SSH host) and "swarm_id" (unique, so its SLURM jobs are known by name)."""
    import shlex

    for folder in ("out", "swarms", "gates", "live_inputs", "big"):
        (base / folder).mkdir(exist_ok=True)
    for task_id in LIVE_IDS:
        (base / "live_inputs" / f"in_{task_id}.txt").write_text(f"input of {task_id}\n")
    for part, name, text in (("conf", "settings.txt", "threshold = 3\n"), ("results", "old.txt", "old\n")):
        (base / "env_tree" / part).mkdir(parents=True, exist_ok=True)
        (base / "env_tree" / part / name).write_text(text)
    cluster_text = ""
    if cluster:
        cluster_text = (
            CLUSTER_DAG_TEXT.replace("@CLUSTER_DAG@", CLUSTER_DAG).replace("@CLUSTER_TASKS@", str(CLUSTER_TASKS))
            .replace("@CLUSTER_COMMAND@", repr(CLUSTER_COMMAND.replace("@GATE@", shlex.quote(cluster["gate"]))))
            .replace("@REMOTE_ROOT@", repr(cluster["remote_root"])).replace("@CLUSTER_SWARM_ID@", repr(cluster["swarm_id"]))
        )
    live_command = LIVE_COMMAND.replace("@GATE@", shlex.quote(str(live_gate(base)))).replace("@STDERR@", LIVE_STDERR)
    text = (
        DAG_FILE.replace("@CLUSTER_DAG_TEXT@", cluster_text)
        .replace("@BASE@", repr(str(base)))
        .replace("@SWARM_DAG@", SWARM_DAG).replace("@HANDLE_DAG@", HANDLE_DAG).replace("@OTHER_DAG@", OTHER_DAG)
        .replace("@LIVE_DAG@", LIVE_DAG).replace("@BIG_DAG@", BIG_DAG).replace("@ENV_DAG@", ENV_DAG)
        .replace("@ENV_TASKS@", str(ENV_TASKS)).replace("@ENV_COMMAND@", repr(ENV_COMMAND.replace("@RESULT@", ENV_RESULT)))
        .replace("@LIVE_COMMAND@", repr(live_command)).replace("@LIVE_PROCESSES@", str(LIVE_PROCESSES))
        .replace("@SWARM_TASKS@", str(SWARM_TASKS)).replace("@SWARM_FAILING@", str(SWARM_FAILING))
        .replace("@HOSTILE0@", HOSTILE[0]).replace("@HOSTILE1@", repr(HOSTILE[1]))
    )
    (dags / "locusts_ui_dags.py").write_text(text)
