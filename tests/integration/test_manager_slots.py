"""The manager's task slots: an attempt killed without a word (SIGKILL, no trap can run) is
recorded as failed with the signal's exit code and frees its slot, or runs again when retries
are left; the swarm goes on to the end instead of waiting for it."""

from __future__ import annotations

from pathlib import Path

from airflow_provider_locusts.swarm.engine import EngineOptions, SwarmEngine
from airflow_provider_locusts.swarm.progress import EventFold
from airflow_provider_locusts.swarm.shell import LocalShell
from airflow_provider_locusts.swarm.spec import build_spec


def run(tmp_path: Path, run_swarm_round, command: str, n: int, **options):
    spec = build_spec(command=command, args=[[i] for i in range(n)], outputs=["out_<id>.txt"],
                      output_dir=tmp_path / "out", processes=2)
    root = tmp_path / "root"
    engine = SwarmEngine(spec, "slots", str(root), LocalShell(), EngineOptions(heartbeat_interval=1, **options))
    run = run_swarm_round(engine, engine.prepare_round(), timeout=30)
    assert run.verdict.lost == []
    assert (root / "exec" / "done_r0m0").exists()
    fold = EventFold()
    fold.feed_bytes((root / "exec" / "events_r0m0").read_bytes())
    return engine.gather(), fold


def test_a_sourced_attempt_killed_without_a_word_fails_and_frees_its_slot(tmp_path, run_swarm_round):
    # Task 1's attempt (the manager's forked subshell, $BASHPID) SIGKILLs itself.
    command = 'if [ <id> = 1 ]; then kill -KILL "$BASHPID"; fi; printf done > out_<id>.txt'
    result, fold = run(tmp_path, run_swarm_round, command, 6)
    assert sorted(result.succeeded) == ["0", "2", "3", "4", "5"]
    assert result.reasons["1"].startswith("exit code 137")
    assert fold.outcomes[1].attempts == 1 and fold.outcomes[1].exit_code == 137
    assert sorted(p.name for p in (tmp_path / "out").glob("out_*.txt")) == [f"out_{i}.txt" for i in (0, 2, 3, 4, 5)]


def test_an_attempt_in_a_bash_of_its_own_killed_runs_again_when_retries_are_left(tmp_path, run_swarm_round):
    # $$ makes each attempt a bash of its own; task 1's first attempt SIGKILLs that bash, its
    # second (a marker says it is the second) succeeds, in the same folder.
    command = (
        'if [ <id> = 1 ] && [ ! -e tried ]; then : > tried; kill -KILL "$$"; fi; '
        'printf "%s" "$$" > out_<id>.txt'
    )
    result, fold = run(tmp_path, run_swarm_round, command, 6, task_retries=1)
    assert sorted(result.succeeded) == [str(i) for i in range(6)]
    assert fold.outcomes[1].attempts == 2 and fold.outcomes[1].exit_code == 0
    assert all(fold.outcomes[i].attempts == 1 for i in (0, 2, 3, 4, 5))


def test_the_heartbeat_is_written_while_the_manager_waits_for_long_tasks(tmp_path, run_swarm_round):
    # Every task runs 5 s: the manager sits in `wait -n` throughout, and its ticker still
    # writes the heartbeat every second (a manager silent for 4 s would count as lost).
    spec = build_spec(command="sleep 5; printf done > out_<id>.txt", args=[[i] for i in range(4)],
                      outputs=["out_<id>.txt"], output_dir=tmp_path / "out", processes=2)
    engine = SwarmEngine(spec, "beat", str(tmp_path / "root"), LocalShell(), EngineOptions(heartbeat_interval=1))
    run = run_swarm_round(engine, engine.prepare_round(), timeout=60, heartbeat_timeout=4)
    assert run.verdict.lost == []
    assert run.seconds >= 10  # two rounds of 5 s: the manager did wait
    assert sorted(engine.gather().succeeded) == ["0", "1", "2", "3"]
