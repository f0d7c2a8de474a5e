"""A swarm's footprint in its root, counted for real on 1,000-task swarms run by the bash manager:
each task folder holds its inputs, what the task wrote, its logs only when they are not empty,
and of ours at most `.locusts_missing` (when a compulsory output is missing). No task script,
no exit code file: exit codes are in the events. Counted without failures, with failures,
with task retries, and after a manager was killed and its tasks rescheduled."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from airflow_provider_locusts.swarm.engine import EngineOptions, SwarmEngine
from airflow_provider_locusts.swarm.shell import LocalShell
from airflow_provider_locusts.swarm.spec import build_spec

N = 1000
LOGS = ("stdout.txt", "stderr.txt")


def make_inputs(folder: Path, n: int = N) -> Path:
    folder.mkdir()
    for i in range(n):
        (folder / f"in_{i}.txt").write_text(f"{i}\n")
    return folder


def engine_for(tmp_path: Path, command: str, processes: int = 4, **options) -> SwarmEngine:
    spec = build_spec(command=command, input_dir=make_inputs(tmp_path / "in"), task_inputs=["in_<id>.txt"],
                      outputs=["out_<id>.txt"], output_dir=tmp_path / "out", processes=processes)
    return SwarmEngine(spec, "footprint", str(tmp_path / "root"), LocalShell(), EngineOptions(heartbeat_interval=1, **options))


def new_inodes(root: Path, inputs: Path) -> int:
    """Inodes the root takes: every distinct inode under it, but the inputs (hard links)."""
    input_inodes = {os.stat(p).st_ino for p in inputs.iterdir()}
    seen = set()
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            ino = os.lstat(os.path.join(folder, name)).st_ino
            if ino not in input_inodes:
                seen.add(ino)
    return len(seen)


def ours_in_each_folder(engine: SwarmEngine) -> dict[str, set[str]]:
    """Per task id, what its folder holds besides its inputs, outputs and non-empty logs."""
    left = {}
    for task in engine.tasks:
        folder = Path(engine.layout.task_dir(task.folder))
        names = set(os.listdir(folder))
        for log in LOGS:
            if log in names:
                assert (folder / log).stat().st_size > 0, f"empty {log} kept for task {task.task_id}"
                names.discard(log)
        left[task.task_id] = names - set(task.staged) - set(task.outputs)
    return left


def test_a_swarm_without_failures_keeps_one_inode_per_task(tmp_path, run_swarm_round):
    engine = engine_for(tmp_path, "cat in_<id>.txt > out_<id>.txt")
    round_ = engine.prepare_round()
    root = Path(engine.layout.root)
    assert new_inodes(root, tmp_path / "in") <= N + 20  # staged: a folder per task, inputs linked
    run_swarm_round(engine, round_, timeout=120)
    result = engine.gather()
    assert len(result.succeeded) == N

    assert ours_in_each_folder(engine) == {str(i): set() for i in range(N)}
    for task in engine.tasks:
        assert os.listdir(engine.layout.task_dir(task.folder)) == [f"in_{task.task_id}.txt"]
    exec_files = len(os.listdir(root / "exec"))
    # The folders, the batch folder, exec/, work/, shared/ and exec/'s files (the root itself is not counted).
    assert new_inodes(root, tmp_path / "in") == N + 4 + exec_files
    assert exec_files <= 20


def test_failures_keep_their_logs_and_missing_outputs_and_nothing_else(tmp_path, run_swarm_round):
    # ids ending in 3 fail (a word on stderr, no output); ids ending in 7 succeed but talk on stdout.
    command = (
        'case <id> in *3) echo "no luck with <id>" >&2; exit 2;; *7) echo "chatty <id>";; esac; '
        "cat in_<id>.txt > out_<id>.txt"
    )
    engine = engine_for(tmp_path, command)
    run_swarm_round(engine, engine.prepare_round(), timeout=120)
    result = engine.gather()
    failing = {str(i) for i in range(N) if i % 10 == 3}
    talking = {str(i) for i in range(N) if i % 10 == 7}
    assert set(result.failed) == failing
    assert result.reasons["13"] == "exit code 2; missing outputs: out_13.txt"

    ours = ours_in_each_folder(engine)
    assert ours == {str(i): {".locusts_missing"} if str(i) in failing else set() for i in range(N)}
    for task in engine.tasks:
        folder = Path(engine.layout.task_dir(task.folder))
        logs = {log for log in LOGS if (folder / log).exists()}
        assert logs == ({"stderr.txt"} if task.task_id in failing else {"stdout.txt"} if task.task_id in talking else set())
    # A failed task's stderr is where the manifest says, and log_tail reads it; the empty stdout reads as no log.
    task = engine.tasks[13]
    entry = next(r for r in result.results if r.id == "13")
    assert Path(entry.folder, "stderr.txt").read_text() == "no luck with 13\n"
    assert engine.log_tail(task, "stderr.txt").data == b"no luck with 13\n"
    assert engine.log_tail(task, "stdout.txt").size is None
    root = Path(engine.layout.root)
    exec_files = len(os.listdir(root / "exec"))
    assert new_inodes(root, tmp_path / "in") == N + 2 * len(failing) + len(talking) + 4 + exec_files


def test_task_retries_leave_only_the_last_attempts_logs(tmp_path, run_swarm_round):
    # Ids ending in 1 fail their first attempt loudly, then succeed silently; ids ending in 9 fail
    # every attempt. The state of the first attempt is kept outside the root.
    state = tmp_path / "state"
    state.mkdir()
    command = (
        f'if [[ <id> == *1 && ! -e {state}/<id> ]]; then : > {state}/<id>; echo "first try of <id>" >&2; exit 1; fi; '
        'if [[ <id> == *9 ]]; then echo "never <id>" >&2; exit 4; fi; '
        "cat in_<id>.txt > out_<id>.txt"
    )
    engine = engine_for(tmp_path, command, task_retries=1)
    run_swarm_round(engine, engine.prepare_round(), timeout=120)
    result = engine.gather()
    always = {str(i) for i in range(N) if i % 10 == 9}
    assert set(result.failed) == always
    attempts = {r.id: r.attempts for r in result.results}
    assert attempts == {str(i): 2 if i % 10 in (1, 9) else 1 for i in range(N)}
    assert ours_in_each_folder(engine) == {str(i): {".locusts_missing"} if str(i) in always else set() for i in range(N)}
    for task in engine.tasks:
        folder = Path(engine.layout.task_dir(task.folder))
        if task.task_id in always:
            assert (folder / "stderr.txt").read_text() == f"never {task.task_id}\n"
        else:
            assert not (folder / "stderr.txt").exists()  # the first attempt's words went with its empty retry


def test_after_a_killed_manager_is_rescheduled_no_empty_log_is_left(tmp_path, run_swarm_round):
    engine = engine_for(tmp_path, "sleep 0.0$((<id> % 3)); cat in_<id>.txt > out_<id>.txt", processes=4)
    round_ = engine.prepare_round()
    engine.start(round_)
    events = Path(engine.layout.manager_file("r0m0", "events"))
    deadline = time.monotonic() + 60
    while not events.exists() or events.read_text().count(" end ") < 300:
        assert time.monotonic() < deadline, "the manager did not get going"
        time.sleep(0.05)
    pid = int(Path(engine.layout.manager_file("r0m0", "pid")).read_text().split()[0])
    os.kill(pid, signal.SIGKILL)  # no chance to remove the empty logs it holds
    run_swarm_round.started.append(engine)
    engine.cancel(["r0m0"])  # fencing: its orphaned attempts are stopped too
    root = Path(engine.layout.root)
    empty_before = [p for p in root.glob("work/*/*/std*.txt") if p.stat().st_size == 0]
    assert empty_before, "the killed manager left no empty log: nothing is tested"

    again = engine.reschedule(["r0m0"])
    assert again is not None and 0 < again.task_count < N
    run_swarm_round(engine, again, timeout=120)
    result = engine.gather()
    assert len(result.succeeded) == N and result.failed == []
    assert [p for p in root.glob("work/*/*/std*.txt")] == []
    assert ours_in_each_folder(engine) == {str(i): set() for i in range(N)}
    exec_files = len(os.listdir(root / "exec"))
    assert new_inodes(root, tmp_path / "in") == N + 4 + exec_files


@pytest.mark.parametrize("tasks, threshold, sharded", [(30, 29, True), (30, 30, False)])
def test_outputs_are_sharded_by_batch_above_the_threshold_only(tmp_path, run_swarm_round, tasks, threshold, sharded):
    spec = build_spec(command="echo <id> > out_<id>.txt", args=[[i] for i in range(tasks)], outputs=["out_<id>.txt"],
                      output_dir=tmp_path / "out", processes=4, batch_size=12)
    engine = SwarmEngine(spec, "shards", str(tmp_path / "root"), LocalShell(),
                         EngineOptions(heartbeat_interval=1, shard_outputs_above=threshold))
    run_swarm_round(engine, engine.prepare_round())
    result = engine.gather()
    assert len(result.succeeded) == tasks
    found = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("out_*.txt"))
    if sharded:
        assert found == sorted(f"batch_{i // 12}/out_{i}.txt" for i in range(tasks))
        assert result.summary()["outputs_sharded_by"] == "batch_<k>"
    else:
        assert found == sorted(f"out_{i}.txt" for i in range(tasks))
        assert result.summary()["outputs_sharded_by"] is None
    assert [r.outputs for r in result.results] == [[os.path.join(tmp_path / "out", f)] for f in
                                                   ((f"batch_{i // 12}/" if sharded else "") + f"out_{i}.txt" for i in range(tasks))]


def test_a_retry_after_a_partial_failure_collects_into_the_same_shards(tmp_path, run_swarm_round):
    state = tmp_path / "state"
    state.mkdir()
    flaky = {4, 13, 25}
    command = f"if [[ <arg1> == 1 && ! -e {state}/<id> ]]; then : > {state}/<id>; exit 1; fi; echo <id> > out_<id>.txt"
    spec = build_spec(command=command, args=[[i, int(i in flaky)] for i in range(30)], outputs=["out_<id>.txt"],
                      output_dir=tmp_path / "out", processes=3, batch_size=10)

    def engine() -> SwarmEngine:  # a new engine per try, as an Airflow retry builds
        return SwarmEngine(spec, "retry-shards", str(tmp_path / "root"), LocalShell(),
                           EngineOptions(heartbeat_interval=1, shard_outputs_above=20))

    first = engine()
    run_swarm_round(first, first.prepare_round())
    assert set(first.gather().failed) == {str(i) for i in flaky}
    second = engine()
    round_ = second.prepare_round()
    assert round_.task_count == len(flaky)
    run_swarm_round(second, round_)
    result = second.gather()
    assert result.failed == [] and len(result.succeeded) == 30
    found = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("out_*.txt"))
    assert found == sorted(f"batch_{i // 10}/out_{i}.txt" for i in range(30))
    assert {r.id: r.outputs for r in result.results}["25"] == [str(tmp_path / "out" / "batch_2" / "out_25.txt")]
