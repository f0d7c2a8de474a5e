"""What a task's command sees: by default a forked subshell of its manager that sources
exec/command.sh (no new bash per task), with the manager's state reset; a bash of its own
when the command reads $$ or $PPID (or with task_timeout). Run for real with the bash manager."""

from __future__ import annotations

from pathlib import Path

from airflow_provider_locusts.swarm.engine import EngineOptions, SwarmEngine
from airflow_provider_locusts.swarm.shell import LocalShell
from airflow_provider_locusts.swarm.spec import build_spec

# Prints what a command could inherit from its manager, then uses the shell as a fresh bash
# allows: an unset variable (no `set -u`), its own traps, `set -e`, `cd` away, `exit`.
PROBE = (
    'echo "functions:$(declare -F | grep -c " _lm_")"; '
    'echo "variables:${!_lm_*}"; '
    'echo "traps:$(trap -p | wc -l)"; '
    'echo "options:$-"; '
    'echo "zero:$0"; '
    'echo "id:$LOCUSTS_ID arg:$LOCUSTS_ARG_0 root:${LOCUSTS_SWARM_ROOT:+set}"; '
    'echo "unset:[$NOT_SET_ANYWHERE]"; '
    "echo out > out_<id>.txt; "
    "trap 'echo bye >&2' EXIT; "
    "set -e; cd /; "
    "if [ <arg0> = 2 ]; then exit 5; fi; "
    "if [ <arg0> = 3 ]; then exec true; fi"
)


def run(tmp_path: Path, run_swarm_round, command: str, n: int, **options):
    spec = build_spec(command=command, args=[[i] for i in range(n)], outputs=["out_<id>.txt"],
                      output_dir=tmp_path / "out", processes=2)
    engine = SwarmEngine(spec, "shell", str(tmp_path / "root"), LocalShell(), EngineOptions(heartbeat_interval=1, **options))
    round_ = engine.prepare_round()
    run_swarm_round(engine, round_)
    manager = Path(engine.layout.manager_file(round_.managers[0], "sh")).read_text()
    return engine, engine.gather(), manager


def test_a_sourced_command_sees_none_of_its_managers_state(tmp_path, run_swarm_round):
    engine, result, manager = run(tmp_path, run_swarm_round, PROBE, 4)
    assert ". \"$LOCUSTS_SWARM_ROOT/exec/command.sh\"" in manager and 'bash "$_lm_command"' not in manager
    assert result.succeeded == ["0", "1", "3"]
    assert result.reasons == {"2": "exit code 5"}
    for i in range(4):
        folder = Path(engine.layout.task_dir(engine.tasks[i].folder))
        assert (folder / "stdout.txt").read_text() == (
            "functions:0\nvariables:\ntraps:0\noptions:hB\n"
            f"zero:{engine.layout.command_script}\nid:{i} arg:{i} root:set\nunset:[]\n"
        )
        # The command's own EXIT trap ran (after `exec true`, the shell was gone: no trap).
        assert (folder / "stderr.txt").exists() == (i != 3)


def test_a_command_reading_its_pid_gets_a_bash_of_its_own(tmp_path, run_swarm_round):
    command = 'echo "$$ $PPID $BASHPID" > out_<id>.txt'
    engine, result, manager = run(tmp_path, run_swarm_round, command, 6)
    assert 'bash "$_lm_command"' in manager and "reads $$ or $PPID" in manager
    assert len(result.succeeded) == 6
    manager_pid = int(Path(engine.layout.manager_file("r0m0", "pid")).read_text().split()[0])
    seen = [tuple(map(int, (tmp_path / "out" / f"out_{i}.txt").read_text().split())) for i in range(6)]
    assert all(pid == bashpid for pid, _, bashpid in seen)  # $$ is the task's own bash
    assert len({pid for pid, _, _ in seen}) == 6 and manager_pid not in {pid for pid, _, _ in seen}
    # Its parent is its attempt's subshell, not the manager: a command that signals its parent
    # stops its own attempt only.
    assert manager_pid not in {ppid for _, ppid, _ in seen}
