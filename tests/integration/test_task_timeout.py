"""task_timeout: an attempt still running after N seconds is stopped — its whole process
group, TERM then KILL — and fails with "timed out after N s", retried per task_retries.
One hung task never holds a swarm for ever. Run for real with the bash manager."""

from __future__ import annotations

import time
from pathlib import Path

from airflow_provider_locusts.swarm.engine import EngineOptions, SwarmEngine
from airflow_provider_locusts.swarm.shell import LocalShell
from airflow_provider_locusts.swarm.spec import build_spec

# Task 0 sleeps for ever; task 1 ignores TERM, and so does the child it starts; the others
# finish at once. Every process a task starts records its pid outside the swarm root.
COMMAND = (
    'case <arg0> in '
    '0) echo $$ >> <arg1>/pids; sleep 600 & echo $! >> <arg1>/pids; wait;; '
    '1) trap "" TERM; echo $$ >> <arg1>/pids; sleep 600 & echo $! >> <arg1>/pids; wait;; '
    '*) echo done > out_<id>.txt;; '
    'esac'
)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_hung_tasks_are_stopped_failed_and_retried_and_leave_nothing_running(tmp_path, run_swarm_round):
    pids = tmp_path / "pids dir"
    pids.mkdir()
    spec = build_spec(command=COMMAND, args=[[i, str(pids)] for i in range(4)], outputs=["out_<id>.txt"],
                      output_dir=tmp_path / "out", processes=4)
    engine = SwarmEngine(spec, "timeout", str(tmp_path / "root"), LocalShell(),
                         EngineOptions(heartbeat_interval=1, task_timeout=2, task_retries=1))
    round_ = engine.prepare_round()
    started = time.monotonic()
    run = run_swarm_round(engine, round_, timeout=60)
    elapsed = time.monotonic() - started

    result = engine.gather()
    assert result.reasons == {"0": "timed out after 2 s", "1": "timed out after 2 s"}
    assert {r.id: r.attempts for r in result.results} == {"0": 2, "1": 2, "2": 1, "3": 1}
    assert result.succeeded == ["2", "3"]
    # Two attempts of 2 s each; the TERM-ignoring one is killed 5 s after its TERM.
    assert 4 <= elapsed < 30, elapsed
    assert (run.progress.finished, run.progress.failed) == (6, 4)
    recorded = [int(p) for p in (pids / "pids").read_text().split()]
    assert len(recorded) == 8  # two processes per attempt, two attempts of two tasks
    assert [p for p in recorded if alive(p)] == []


def test_without_task_timeout_the_manager_script_has_no_timeout(tmp_path):
    spec = build_spec(command="true", args=[[0]], output_dir=tmp_path / "out")
    engine = SwarmEngine(spec, "plain", str(tmp_path / "root"), LocalShell())
    round_ = engine.prepare_round()
    script = Path(engine.layout.manager_file(round_.managers[0], "sh")).read_text()
    assert "timeout -k" not in script and "attempt_pid" not in script
