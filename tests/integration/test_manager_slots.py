"""The manager's task slots: a task whose shell dies without reporting its end (SIGKILL)
still frees its slot, and the swarm goes on to the end instead of waiting for it."""

from __future__ import annotations

from airflow_provider_locusts.swarm.engine import EngineOptions, SwarmEngine
from airflow_provider_locusts.swarm.shell import LocalShell
from airflow_provider_locusts.swarm.spec import build_spec

# Task "1" SIGKILLs the task shell that runs it (its command reads $PPID, so it runs in a bash
# of its own whose parent is that shell): no end event,
# no word on the manager's completion channel. The others write their output.
COMMAND = 'if [ <id> = 1 ]; then kill -KILL "$PPID"; exit 9; fi; printf done > out_<id>.txt'


def test_a_task_shell_killed_without_a_word_frees_its_slot(tmp_path, run_swarm_round):
    spec = build_spec(command=COMMAND, args=[[i] for i in range(6)], outputs=["out_<id>.txt"],
                      output_dir=tmp_path / "out", processes=2)
    root = tmp_path / "root"
    engine = SwarmEngine(spec, "slots", str(root), LocalShell(), EngineOptions(heartbeat_interval=1))
    round_ = engine.prepare_round()
    run = run_swarm_round(engine, round_, timeout=30)
    result = engine.gather()

    assert run.verdict.lost == []
    assert (root / "exec" / "done_r0m0").exists()
    assert sorted(result.succeeded) == ["0", "2", "3", "4", "5"]
    assert result.reasons == {"1": "never finished"}
    assert sorted(p.name for p in (tmp_path / "out").glob("out_*.txt")) == [f"out_{i}.txt" for i in (0, 2, 3, 4, 5)]
