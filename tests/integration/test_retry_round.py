"""A second round after gather (what an Airflow retry does) runs only the failed tasks."""

from __future__ import annotations

import json

from airflow_provider_locusts.swarm.engine import EngineOptions, SwarmEngine
from airflow_provider_locusts.swarm.shell import LocalShell
from airflow_provider_locusts.swarm.spec import build_spec
from tests.support.swarm_files import parse_task_list


N = 20
FLAKY = {3, 11, 17}

# Each run appends a line to a per-task counter outside the swarm root. A flaky task fails
# on its first run (its marker is absent: it creates it), and succeeds on the next.
COMMAND = (
    "printf 'run\\n' >> <arg2>/count_<id>; "
    "if [ <arg1> = 1 ] && [ ! -e <arg2>/marker_<id> ]; then : > <arg2>/marker_<id>; echo flaky >&2; exit 1; fi; "
    "printf 'done %s\\n' <id> > out_<id>.txt"
)


def test_second_round_reruns_only_the_failed(tmp_path, run_swarm_round):
    state = tmp_path / "state dir"  # outside the swarm root
    state.mkdir()
    spec = build_spec(command=COMMAND, args=[[i, int(i in FLAKY), str(state)] for i in range(N)], outputs=["out_<id>.txt"],
                      output_dir=tmp_path / "out", processes=3)
    root = tmp_path / "root"

    def engine() -> SwarmEngine:  # a new engine per try, as a new Airflow try would build
        return SwarmEngine(spec, "retry", str(root), LocalShell(), EngineOptions(heartbeat_interval=1))

    first = engine()
    r0 = first.prepare_round()
    assert (r0.number, r0.task_count) == (0, N)
    run_swarm_round(first, r0)
    result0 = first.gather()
    assert set(result0.failed) == {str(i) for i in FLAKY}
    assert result0.reasons == {str(i): f"exit code 1; missing outputs: out_{i}.txt" for i in FLAKY}
    assert first.live_round() is None

    second = engine()
    r1 = second.prepare_round()
    assert (r1.number, r1.managers, r1.task_count) == (1, ["r1m0"], len(FLAKY))
    rerun = [t for t in parse_task_list((root / "exec" / "tasks_r1m0").read_bytes())]
    assert sorted(index for index, _ in rerun) == sorted(FLAKY)
    run = run_swarm_round(second, r1)
    assert (run.progress.finished, run.progress.failed) == (len(FLAKY), 0)
    result1 = second.gather()

    assert result1.failed == []
    assert result1.succeeded == [str(i) for i in range(N)]
    counts = {i: (state / f"count_{i}").read_text().count("run\n") for i in range(N)}
    assert counts == {i: 2 if i in FLAKY else 1 for i in range(N)}
    for i in range(N):
        assert (tmp_path / "out" / f"out_{i}.txt").read_text() == f"done {i}\n"
    manifest = [json.loads(line) for line in (tmp_path / "out" / "locusts_manifest.retry.jsonl").read_text().splitlines()]
    assert {e["id"]: e["attempts"] for e in manifest} == {str(i): 2 if i in FLAKY else 1 for i in range(N)}
    # the re-run task's folder was staged clean: no trace of the first attempt's stderr (and
    # the empty logs of its second attempt are not kept)
    flaky_dir = root / "work" / spec.tasks[3].folder
    assert sorted(p.name for p in flaky_dir.iterdir()) == []
    ledger = json.loads((root / "exec" / "ledger.json").read_text())
    assert [(r["round"], r["managers"], r["tasks"]) for r in ledger["rounds"]] == [(0, ["r0m0"], N), (1, ["r1m0"], 3)]

    # a third try has nothing left to run
    assert engine().prepare_round() is None
