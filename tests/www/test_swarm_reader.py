"""The Swarm view's reader on a real local swarm (real managers, poll.sh, task table, logs):
live counts while tasks wait on a gate, shared polls, the results after gather, log tails by
task index only, and the HTML report a gather writes next to the manifest."""

from __future__ import annotations

import json
import shlex
import socket
import time
from pathlib import Path

import pytest

from airflow_provider_locusts.swarm.engine import EngineOptions, SwarmEngine
from airflow_provider_locusts.swarm.errors import SwarmExecutionError
from airflow_provider_locusts.swarm.handle import SwarmHandle
from airflow_provider_locusts.swarm.host_commands import parse_task_row, task_row_command
from airflow_provider_locusts.swarm.layout import SwarmLayout
from airflow_provider_locusts.swarm.shell import LocalShell
from airflow_provider_locusts.swarm.spec import build_spec
from airflow_provider_locusts.www.report import gather_report
from airflow_provider_locusts.www.swarm_reader import HandleError, SwarmReader, handle_from_xcom

HOSTILE_ID = '"><img src=x onerror=alert(1)>'  # a valid file name, so a valid task id
IDS = [str(i) for i in range(10)] + [HOSTILE_ID, "13"]
FAILING = {"3", "13", HOSTILE_ID}


def wait_until(predicate, timeout: float, what: str, step: float = 0.3):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


@pytest.fixture
def gated_swarm(tmp_path, run_swarm_round):
    """12 tasks, 3 at a time, each waiting (at most 60 s) for a gate file; three fail with
    HTML on stderr."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for task_id in IDS:
        (inputs / f"in_{task_id}.txt").write_text(f"input {task_id}\n")
    gate = tmp_path / "gate"
    command = (
        f"n=0; while [ ! -e {shlex.quote(str(gate))} ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done; "
        "echo working on <id>; "
        "case <id> in 3|13|*onerror*) echo '</pre><script>alert(2)</script> failing on purpose' >&2; exit 3;; esac; "
        "cp in_<id>.txt out_<id>.txt"
    )
    spec = build_spec(command=command, input_dir=inputs, task_inputs=["in_<id>.txt"], outputs=["out_<id>.txt"],
                      output_dir=tmp_path / "out", processes=3)
    root = tmp_path / "swarms" / "gated"
    engine = SwarmEngine(spec, "gated", str(root), LocalShell(), EngineOptions(heartbeat_interval=1))
    round_ = engine.prepare_round()
    run_swarm_round.started.append(engine)  # cancelled at teardown if still running
    engine.start(round_)
    handle = SwarmHandle("gated", str(root), view=str(root), output_dir=str(tmp_path / "out"), scheduler="direct",
                         origin_host=socket.gethostname(), round=0, managers=tuple(round_.managers),
                         round_tasks=round_.task_count, total=len(IDS))
    return engine, handle, gate, spec


def test_live_counts_logs_results_and_report_of_a_real_swarm(gated_swarm):
    engine, handle, gate, spec = gated_swarm
    reader = SwarmReader()
    index_of = {t.task_id: t.index for t in spec.tasks}

    live = wait_until(lambda: (s := reader.live_state(handle)[0])["counts"]["running"] == 3 and s, 60, "3 tasks running")
    assert live["counts"] == {"total": 12, "succeeded": 0, "failed": 0, "running": 3, "pending": 9, "earlier": 0}
    (manager,) = live["managers"]
    assert (manager["name"], manager["state"], manager["host"], manager["job_id"]) == ("r0m0", "running", socket.gethostname(), None)
    assert live["eta_seconds"] is None  # nothing has ended: no rate yet

    # A viewer right after shares that poll; the host saw one command.
    before = reader.commands
    snapshot, shared = reader.live_state(handle)
    assert shared and reader.commands == before and snapshot["counts"] == live["counts"]

    # Any task's logs while it runs: addressed by index.
    running_logs = reader.task_logs(handle, index_of["0"])
    assert running_logs.row.task_id == "0" and running_logs.tails["stderr.txt"].data == b""

    gate.touch()
    final = wait_until(lambda: (s := reader.live_state(handle)[0])["managers"][0]["state"] == "done" and s, 90, "the manager to end")
    assert final["counts"] == {"total": 12, "succeeded": 9, "failed": 3, "running": 0, "pending": 0, "earlier": 0}
    assert {f["index"] for f in final["recent_failures"]} == {index_of[i] for i in FAILING}
    assert final["completion"][-1][1:] == (12, 3)
    assert reader.results(handle) is None  # not gathered yet

    result = engine.gather(report=gather_report)
    assert sorted(result.failed) == sorted(FAILING)
    summary = result.summary()
    report = Path(summary["report"])
    assert report == Path(summary["manifest"]).with_name("locusts_report.gated.html")
    html = report.read_text()
    assert "Failures (3)" in html and html.count('<div class="reason">exit code 3; missing outputs: out_') == 3
    assert "&lt;/pre&gt;&lt;script&gt;alert(2)&lt;/script&gt; failing on purpose" in html
    assert "task &#34;&gt;&lt;img src=x onerror=alert(1)&gt;</h3>" in html
    assert "<script" not in html and "<img" not in html

    table = reader.results(handle)
    assert table.counts() == {"succeeded": 9, "failed": 3}
    failed_rows = table.page(failed_only=True)["rows"]
    assert {r["id"]: r["reason"] for r in failed_rows} == {i: f"exit code 3; missing outputs: out_{i}.txt" for i in FAILING}
    assert table.page(query="onerror")["rows"][0]["index"] == index_of[HOSTILE_ID]

    logs = reader.task_logs(handle, index_of[HOSTILE_ID])
    assert logs.row.task_id == HOSTILE_ID
    assert logs.tails["stderr.txt"].data == b"</pre><script>alert(2)</script> failing on purpose\n"
    assert logs.tails["stdout.txt"].data == f"working on {HOSTILE_ID}\n".encode()
    assert logs.folder.startswith(handle.root + "/work/batch_0/task_")
    # A task that ended with an empty log does not keep it: the tail reads as absent and empty.
    ok_logs = reader.task_logs(handle, index_of["0"])
    assert (ok_logs.tails["stderr.txt"].size, ok_logs.tails["stderr.txt"].data) == (None, b"")
    assert not (Path(ok_logs.folder) / "stderr.txt").exists()
    assert ok_logs.tails["stdout.txt"].data == b"working on 0\n"
    assert reader.task_logs(handle, len(IDS)) is None  # no such task


def test_a_log_tail_is_the_last_64_kb(gated_swarm, tmp_path):
    engine, handle, gate, spec = gated_swarm
    reader = SwarmReader()
    # Task 0 is running (its manager truncated its logs as it started it): write its stdout.
    wait_until(lambda: reader.live_state(handle)[0]["counts"]["running"] == 3, 60, "the first tasks to start")
    folder = Path(handle.root) / "work" / spec.tasks[0].folder
    (folder / "stdout.txt").write_bytes(b"BEGIN" + b"x" * 100_000 + b"END")
    tail = reader.task_logs(handle, 0).tails["stdout.txt"]
    assert (tail.size, len(tail.data), tail.truncated) == (100_008, 65536, True)
    assert tail.data.endswith(b"xEND") and b"BEGIN" not in tail.data
    gate.touch()


def test_a_task_table_row_is_checked_before_its_folder_reaches_a_path(tmp_path):
    root = tmp_path / "root"
    (root / "exec").mkdir(parents=True)
    rows = [{"index": 0, "id": "a", "folder": "batch_0/task_a", "outputs": []},
            {"index": 1, "id": "b", "folder": "../../etc", "outputs": []},
            {"index": 5, "id": "c", "folder": "batch_0/task_c", "outputs": []}]
    (root / "exec" / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    layout = SwarmLayout(str(root))

    def row(index):
        return parse_task_row(LocalShell().run_script(*task_row_command(layout, index)).check("row").stdout, index)

    assert row(0).folder == "batch_0/task_a"
    with pytest.raises(SwarmExecutionError, match="unexpected task folder"):
        row(1)
    with pytest.raises(SwarmExecutionError, match="holds task 5, not 2"):
        row(2)
    assert row(3) is None
    for bad in (-1, "1", True, 1.5):
        with pytest.raises(ValueError):
            task_row_command(layout, bad)


@pytest.mark.parametrize("value,message", [
    ("not a dict", "not a mapping"),
    ({"root": "/scratch/x", "round": 0}, "lacks fields"),
    ({"swarm_id": "s", "root": "relative/root"}, "absolute path"),
    ({"swarm_id": "s", "root": "/a\nb"}, "absolute path"),
    ({"swarm_id": "s", "root": "/a", "ssh_conn_id": "x; rm -rf /"}, "connection id"),
    ({"swarm_id": "s", "root": "/a", "managers": ["r0m0", "../x"]}, "manager names"),
    ({"swarm_id": "s", "root": "/a", "round": "0"}, "round"),
])
def test_a_recorded_handle_that_is_not_a_handle_is_refused(value, message):
    with pytest.raises(HandleError, match=message):
        handle_from_xcom(value)
    assert handle_from_xcom({"swarm_id": "s", "root": "/a", "ssh_conn_id": "hpc", "managers": ["r0m0"]}).ssh_conn_id == "hpc"
