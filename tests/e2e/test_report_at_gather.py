"""The HTML report a swarm's gather writes next to its manifest, in a real deferrable DAG run:
its path in the XCom summary, the failures with their reasons and stderr tails, the plots."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from airflow.sdk import DAG

from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator

pytestmark = pytest.mark.e2e

COMMAND = (
    "echo processing <arg0>; "
    "if [ $((<arg0> % 7)) = 3 ]; then echo \"<i>bad input</i> in task <arg0>\" >&2; exit 2; fi; "
    "echo ok > out_<id>.txt"
)


def test_the_report_is_written_next_to_the_manifest_with_the_failures(run_dag, tmp_path):
    with DAG("report_at_gather", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        LocustsSwarmOperator(
            task_id="swarm", args=[[i] for i in range(30)], command=COMMAND, outputs=["out_<id>.txt"],
            output_dir=str(tmp_path / "out"), work_root=str(tmp_path / "swarms"), processes=4, poll_interval=0.5,
            max_failed_fraction=0.5, deferrable=True,
        )
    result = run_dag(dag)

    assert result.task_states() == {"swarm": "success"}
    summary = result.xcom("swarm")
    failing = [str(i) for i in range(30) if i % 7 == 3]
    assert result.xcom("swarm", key="failed") == summary["failed_first"] == failing
    report = Path(summary["report"])
    assert report == Path(summary["manifest"]).with_name(f"locusts_report.{summary['swarm_id']}.html")
    html = report.read_text()
    assert f'id="count-failed">{len(failing)}<' in html and 'id="count-total">30<' in html
    for task_id in failing:
        assert f"<h3>task {task_id}</h3>" in html
        assert f"&lt;i&gt;bad input&lt;/i&gt; in task {task_id}" in html  # its stderr, as text
        assert f"processing {task_id}" in html  # and its stdout
    assert html.count('<div class="reason">exit code 2; missing outputs: out_') == len(failing)
    for plot in ("timeline", "completion", "durations"):
        assert f'<div class="plot" id="plot-{plot}"><svg' in html
    assert "<i>" not in html
