"""gather(): event logs and task folders → succeeded / failed with reasons, outputs moved
into output_dir without clobbering, manifest written, idempotent."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from airflow_provider_locusts.swarm.collect import (
    OutputCollisionError,
    check_output_dir,
    fold_event_files,
    gather,
    manifest_name,
    succeeded_indexes,
)
from airflow_provider_locusts.swarm.engine import SwarmEngine
from airflow_provider_locusts.swarm.sinks import LocalSink
from airflow_provider_locusts.swarm.table import as_rows
from airflow_provider_locusts.swarm.shell import LocalShell
from airflow_provider_locusts.swarm.layout import SwarmLayout
from airflow_provider_locusts.swarm.spec import build_spec


class Swarm:
    """A hand-made swarm root: tasks ids "0".."n-1", outputs o_<id>.txt and p_<id>.txt."""

    def __init__(self, tmp_path: Path, n: int = 6, sharded: bool = False, batch_size: int = 10000, names=("o", "p")):
        self.tmp = tmp_path
        self.sharded = sharded
        self.names = names
        self.spec = build_spec(command="true <arg0>", args=[[str(i)] for i in range(n)], outputs=[f"{o}_<id>.txt" for o in names],
                               output_dir=tmp_path / "out", batch_size=batch_size)
        self.layout = SwarmLayout(str(tmp_path / "root"))
        os.makedirs(self.layout.exec_dir)
        for t in self.spec.tasks:
            os.makedirs(self.layout.task_dir(t.folder))
        self.out = tmp_path / "out"
        self.rows = as_rows(self.spec.tasks)

    def sink(self) -> LocalSink:
        return LocalSink(self.out, self.layout.work_dir, sharded=self.sharded)

    def check_output_dir(self, overwrite: bool) -> None:
        check_output_dir(self.rows, self.layout, self.sink(), overwrite)

    def task_dir(self, i: int) -> Path:
        return Path(self.layout.task_dir(self.spec.tasks[i].folder))

    def event(self, line: str, manager: str = "r0m0") -> None:
        with open(os.path.join(self.layout.exec_dir, f"events_{manager}"), "a") as f:
            f.write(line + "\n")

    def run(self, i: int, rc: int = 0, outputs=None, start: float = 100.0, manager: str = "r0m0", host: str = "h1") -> None:
        """What the manager leaves behind for one finished task."""
        d = self.task_dir(i)
        outputs = self.names if outputs is None else outputs
        for o in outputs:
            (d / f"{o}_{i}.txt").write_text(f"{o} of {i} (start {start})\n")
        missing = [f"{o}_{i}.txt" for o in self.names if o not in outputs]
        if missing:
            (d / ".locusts_missing").write_text("".join(m + "\n" for m in missing))
        self.event(f"{start} {i} start - {host}", manager)
        self.event(f"{start + 0.5} {i} end {rc} {host} {1 if missing else 0}", manager)

    def gather(self, **kw):
        return gather(self.rows, self.layout, "sw1", self.sink(), **kw)


@pytest.fixture
def swarm(tmp_path):
    return Swarm(tmp_path)


def by_id(result):
    return {r.id: r for r in result.results}


def test_gather_states_and_reasons(swarm):
    swarm.run(0)
    swarm.run(1, rc=3)
    swarm.run(2, outputs=("o",))
    swarm.run(3, rc=2, outputs=())
    swarm.event("100.0 4 start - h1")  # started, never ended
    # task 5 never started
    result = swarm.gather(lost_reason="manager r0m0 died")

    assert result.succeeded == ["0"]
    assert result.failed == ["1", "2", "3", "4", "5"]
    assert result.reasons == {
        "1": "exit code 3",
        "2": "missing outputs: p_2.txt",
        "3": "exit code 2; missing outputs: o_3.txt, p_3.txt",
        "4": "never finished: manager r0m0 died",
        "5": "never started: manager r0m0 died",
    }
    r = by_id(result)
    assert (r["0"].state, r["0"].exit_code, r["0"].attempts, r["0"].duration, r["0"].host) == ("succeeded", 0, 1, 0.5, "h1")
    assert r["0"].outputs == [str(swarm.out / "o_0.txt"), str(swarm.out / "p_0.txt")]
    assert (r["1"].exit_code, r["1"].attempts, r["1"].outputs) == (3, 1, [])
    assert (r["4"].exit_code, r["4"].attempts) == (None, 1)
    assert (r["5"].exit_code, r["5"].attempts, r["5"].host, r["5"].duration) == (None, 0, None, None)

    # only the succeeded task's outputs moved; failed ones stay in their folders
    assert sorted(p.name for p in swarm.out.iterdir()) == ["locusts_manifest.sw1.jsonl", "o_0.txt", "p_0.txt"]
    assert (swarm.out / "o_0.txt").read_text() == "o of 0 (start 100.0)\n"
    assert not (swarm.task_dir(0) / "o_0.txt").exists()
    assert (swarm.task_dir(1) / "o_1.txt").exists()


def test_gather_without_lost_reason(swarm):
    swarm.event("1.0 4 start - h1")
    result = swarm.gather()
    assert result.reasons["4"] == "never finished"
    assert result.reasons["0"] == "never started"


def test_output_reported_but_gone_is_missing(swarm):
    swarm.run(0)
    (swarm.task_dir(0) / "p_0.txt").unlink()
    result = swarm.gather()
    assert result.reasons == {**{str(i): "never started" for i in range(1, 6)}, "0": "missing outputs: p_0.txt"}
    assert not (swarm.out / "o_0.txt").exists()  # nothing of a failed task is collected


def test_manifest_one_line_per_task(swarm):
    swarm.run(0)
    swarm.run(1, rc=1)
    result = swarm.gather()
    manifest = swarm.out / manifest_name("sw1")
    assert result.manifest == str(manifest)
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [e["id"] for e in lines] == ["0", "1", "2", "3", "4", "5"]
    assert [e["index"] for e in lines] == list(range(6))
    assert {e["id"]: e["state"] for e in lines} == {"0": "succeeded", **{str(i): "failed" for i in range(1, 6)}}
    assert set(lines[0]) >= {"id", "state", "reason", "exit_code", "attempts", "duration", "host", "outputs"}
    assert lines[1]["reason"] == "exit code 1"
    # the swarm root keeps the same record for a retry
    assert Path(swarm.layout.results).read_text() == manifest.read_text()
    s = result.summary()
    assert (s["total"], s["succeeded_count"], s["failed_count"]) == (6, 1, 5)
    assert s["failed_first"] == ["1", "2", "3", "4", "5"] and s["reasons"]["1"] == "exit code 1"
    assert (s["manifest"], s["output_dir"], s["outputs_sharded_by"], s["report"]) == (str(manifest), str(swarm.out), None, None)
    assert s["xcom_keys"] == ["succeeded", "failed"] and "succeeded" not in s and "failed" not in s
    json.dumps(s)


def test_the_summary_stays_small_at_any_size(tmp_path):
    """No id list in the return value: counts, the first failures, where the rest is."""
    swarm = Swarm(tmp_path, n=3000)
    for i in range(3000):
        swarm.run(i, rc=0 if i % 3 else 5)
    result = swarm.gather()
    s = result.summary()
    assert (s["total"], s["succeeded_count"], s["failed_count"]) == (3000, 2000, 1000)
    assert s["failed_first"] == [str(i) for i in range(0, 300, 3)]
    assert s["reasons"] == {str(i): "exit code 5" for i in range(0, 300, 3)}
    assert len(result.failed) == 1000 and len(result.succeeded) == 2000
    assert len(json.dumps(s)) < 4000


# --- sharded outputs ---------------------------------------------------------------------------


def test_sharded_outputs_go_into_their_batch_folder_and_the_manifest_says_where(tmp_path):
    swarm = Swarm(tmp_path, n=5, sharded=True, batch_size=2)
    for i in range(5):
        swarm.run(i)
    result = swarm.gather()
    assert result.failed == []
    found = sorted(str(p.relative_to(swarm.out)) for p in swarm.out.rglob("*_*.txt"))
    assert found == sorted(f"batch_{i // 2}/{o}_{i}.txt" for i in range(5) for o in ("o", "p"))
    manifest = [json.loads(line) for line in (swarm.out / manifest_name("sw1")).read_text().splitlines()]
    assert [m["outputs"] for m in manifest] == [
        [str(swarm.out / f"batch_{i // 2}" / f"{o}_{i}.txt") for o in ("o", "p")] for i in range(5)
    ]
    assert result.summary()["outputs_sharded_by"] == "batch_<k>"


def test_sharded_collision_check_looks_in_the_shard(tmp_path):
    swarm = Swarm(tmp_path, n=5, sharded=True, batch_size=2)
    swarm.out.mkdir()
    (swarm.out / "o_3.txt").write_text("flat: not where task 3 writes")
    swarm.check_output_dir(overwrite=False)
    (swarm.out / "batch_1").mkdir()
    (swarm.out / "batch_1" / "o_3.txt").write_text("the user's")
    with pytest.raises(OutputCollisionError, match="batch_1/o_3.txt"):
        swarm.check_output_dir(overwrite=False)


def test_sharded_gather_after_an_interrupted_move(tmp_path):
    swarm = Swarm(tmp_path, n=4, sharded=True, batch_size=2)
    swarm.run(2)
    swarm.run(3)
    (swarm.out / "batch_1").mkdir(parents=True)
    os.replace(swarm.task_dir(2) / "o_2.txt", swarm.out / "batch_1" / "o_2.txt")
    result = swarm.gather()
    assert result.succeeded == ["2", "3"]
    assert sorted(p.name for p in (swarm.out / "batch_1").iterdir()) == ["o_2.txt", "o_3.txt", "p_2.txt", "p_3.txt"]


def test_gather_twice_is_idempotent(swarm):
    swarm.run(0)
    swarm.run(1, rc=4)
    first = swarm.gather()
    second = swarm.gather()
    assert second.succeeded == first.succeeded == ["0"]
    assert second.reasons == first.reasons
    assert [r.__dict__ for r in second.results] == [r.__dict__ for r in first.results]
    assert (swarm.out / "o_0.txt").read_text() == "o of 0 (start 100.0)\n"
    assert (swarm.out / "p_0.txt").exists()


def test_gather_after_an_interrupted_move(swarm):
    """A gather stopped after moving some outputs: the next gather completes the job."""
    swarm.run(0)
    swarm.run(1)
    swarm.out.mkdir()
    os.replace(swarm.task_dir(0) / "o_0.txt", swarm.out / "o_0.txt")  # o_0 moved, p_0 not yet
    result = swarm.gather()
    assert result.succeeded == ["0", "1"]
    assert sorted(p.name for p in swarm.out.glob("*.txt")) == ["o_0.txt", "o_1.txt", "p_0.txt", "p_1.txt"]


def test_gather_after_interruption_between_link_and_unlink(swarm):
    """A gather killed between os.link and os.unlink left the same file in both places."""
    swarm.run(0)
    swarm.out.mkdir()
    os.link(swarm.task_dir(0) / "o_0.txt", swarm.out / "o_0.txt")  # linked, source not yet unlinked
    result = swarm.gather()
    assert result.succeeded == ["0"]
    assert not (swarm.task_dir(0) / "o_0.txt").exists()
    assert (swarm.out / "o_0.txt").read_text() == "o of 0 (start 100.0)\n"


def test_later_round_overrides_earlier_attempt(swarm):
    """Rounds are folded in numeric order: round 10 comes after round 2."""
    swarm.run(0, rc=1, manager="r2m0", start=10.0)
    swarm.run(0, rc=0, manager="r10m0", start=20.0)
    outcome = fold_event_files(swarm.layout)[0]
    assert (outcome.attempts, outcome.exit_code, outcome.ok) == (2, 0, True)
    result = swarm.gather()
    assert by_id(result)["0"].state == "succeeded"
    assert by_id(result)["0"].attempts == 2
    assert succeeded_indexes(swarm.layout) == {0}


def test_second_gather_keeps_succeeded_even_if_events_later_disagree(swarm):
    swarm.run(0)
    swarm.gather()
    # a later round ran task 0 again and it failed: the collected success stands
    swarm.run(0, rc=9, manager="r1m0", start=200.0)
    result = swarm.gather()
    assert by_id(result)["0"].state == "succeeded"
    assert (swarm.out / "o_0.txt").read_text() == "o of 0 (start 100.0)\n"


# --- output_dir collisions ------------------------------------------------------------------------


def test_preexisting_output_is_refused_and_untouched(swarm):
    swarm.out.mkdir()
    (swarm.out / "p_3.txt").write_text("the user's own file")
    with pytest.raises(OutputCollisionError) as err:
        swarm.check_output_dir(overwrite=False)
    message = str(err.value)
    assert "p_3.txt" in message and "'3'" in message and "overwrite_outputs=True" in message
    assert (swarm.out / "p_3.txt").read_text() == "the user's own file"

    # gather refuses too when a task would collect onto it; the file stays untouched
    swarm.run(3)
    with pytest.raises(OutputCollisionError):
        swarm.gather()
    assert (swarm.out / "p_3.txt").read_text() == "the user's own file"


def test_engine_refuses_to_prepare_over_a_users_file(tmp_path):
    spec = build_spec(command="true", args=[["a"], ["b"]], outputs=["o_<id>.txt"], output_dir=tmp_path / "out")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "o_1.txt").write_text("mine")
    engine = SwarmEngine(spec, "sw", str(tmp_path / "root"), LocalShell())
    with pytest.raises(OutputCollisionError):
        engine.prepare_round()
    assert not (tmp_path / "root").exists()
    assert (tmp_path / "out" / "o_1.txt").read_text() == "mine"


def test_overwrite_replaces(swarm):
    swarm.out.mkdir()
    (swarm.out / "o_0.txt").write_text("old")
    swarm.check_output_dir(overwrite=True)  # no error
    swarm.run(0)
    result = swarm.gather(overwrite=True)
    assert result.succeeded == ["0"]
    assert (swarm.out / "o_0.txt").read_text() == "o of 0 (start 100.0)\n"


def test_outputs_we_collected_are_not_a_collision(swarm):
    swarm.run(0)
    swarm.gather()
    swarm.check_output_dir(overwrite=False)  # our own earlier outputs: fine
    (swarm.out / "o_1.txt").write_text("foreign")
    with pytest.raises(OutputCollisionError, match="o_1.txt"):
        swarm.check_output_dir(overwrite=False)


# --- the usual task: one output, moved without a look first ------------------------------------


@pytest.mark.parametrize("sharded", [False, True])
def test_one_output_tasks_are_collected_and_a_vanished_output_is_missing(tmp_path, sharded):
    swarm = Swarm(tmp_path, n=4, sharded=sharded, batch_size=2, names=("o",))
    for i in range(4):
        swarm.run(i)
    os.unlink(swarm.task_dir(2) / "o_2.txt")  # reported, then gone
    os.unlink(swarm.task_dir(3) / "o_3.txt")
    result = swarm.gather()
    assert result.succeeded == ["0", "1"]
    assert result.reasons == {"2": "missing outputs: o_2.txt", "3": "missing outputs: o_3.txt"}
    found = sorted(str(p.relative_to(swarm.out)) for p in swarm.out.rglob("o_*.txt"))
    assert found == (["batch_0/o_0.txt", "batch_0/o_1.txt"] if sharded else ["o_0.txt", "o_1.txt"])
    assert not (swarm.out / "batch_1").exists()  # no folder made for outputs that were not there
    assert by_id(result)["1"].outputs == [str(swarm.out / ("batch_0/o_1.txt" if sharded else "o_1.txt"))]


def test_one_output_tasks_after_interrupted_gathers(tmp_path):
    swarm = Swarm(tmp_path, n=3, names=("o",))
    for i in range(3):
        swarm.run(i)
    swarm.out.mkdir()
    os.replace(swarm.task_dir(0) / "o_0.txt", swarm.out / "o_0.txt")  # moved by the earlier gather
    os.link(swarm.task_dir(1) / "o_1.txt", swarm.out / "o_1.txt")  # linked, not yet unlinked
    result = swarm.gather()
    assert result.succeeded == ["0", "1", "2"]
    assert sorted(os.listdir(swarm.out)) == ["locusts_manifest.sw1.jsonl", "o_0.txt", "o_1.txt", "o_2.txt"]
    assert [os.listdir(swarm.task_dir(i)) for i in range(3)] == [[], [], []]


def test_one_output_task_never_replaces_a_file_that_appeared_in_output_dir(tmp_path):
    swarm = Swarm(tmp_path, n=2, names=("o",))
    swarm.run(0)
    swarm.run(1)
    swarm.out.mkdir()
    (swarm.out / "o_1.txt").write_text("the user's")
    with pytest.raises(OutputCollisionError, match="o_1.txt"):
        swarm.gather()
    assert (swarm.out / "o_1.txt").read_text() == "the user's"
    assert (swarm.task_dir(1) / "o_1.txt").exists()
    result = swarm.gather(overwrite=True)
    assert result.succeeded == ["0", "1"] and (swarm.out / "o_1.txt").read_text() == "o of 1 (start 100.0)\n"
