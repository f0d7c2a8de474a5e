"""The scripts a swarm's host runs for gathering and rescheduling, run for real with bash:
outputs moved into output_dir on the host (HostSink), task folders reset to what staging
put there, cancel's report, the framed file reader and the log tail."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from airflow_provider_locusts.swarm.engine import EngineOptions, SwarmEngine
from airflow_provider_locusts.swarm.errors import OutputCollisionError, SwarmExecutionError
from airflow_provider_locusts.swarm.host_commands import LogTail, check_folder
from airflow_provider_locusts.swarm.layout import SwarmLayout
from airflow_provider_locusts.swarm.render import host_script
from airflow_provider_locusts.swarm.shell import LocalShell
from airflow_provider_locusts.swarm.sinks import HostSink
from airflow_provider_locusts.swarm.spec import build_spec
from airflow_provider_locusts.swarm.table import TaskRow

HOSTILE = ["plain", "with space", "quote'd", 'dq"x', "$(touch pwned)", "`touch pwned`", "semi;colon", "new\nline", "star*", "-dash"]


def row(index: int, folder: str, outputs: list[str], staged: tuple[str, ...] = ("in_top.txt",)) -> TaskRow:
    return TaskRow(index=index, task_id=str(index), folder=folder, outputs=tuple(outputs), staged=staged)


def make_task(work: Path, folder: str, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = work / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_host_sink_moves_outputs_reports_missing_and_never_clobbers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a `touch pwned` that ran would land here
    work, out = tmp_path / "work", tmp_path / "out dir"
    tasks = []
    for i, name in enumerate(HOSTILE):
        folder = f"batch_0/task_{i}"
        make_task(work, folder, {f"o_{name}.txt": f"value {i}", f"sub/p_{name}.txt": f"p {i}"})
        tasks.append(row(i, folder, [f"o_{name}.txt", f"sub/p_{name}.txt"]))
    make_task(work, "batch_0/task_missing", {"o_gone.txt": "half"})
    tasks.append(row(99, "batch_0/task_missing", ["o_gone.txt", "sub/p_gone.txt"]))

    sink = HostSink(LocalShell(), str(out), str(work))
    assert sink.collect(tasks, overwrite=False) == {99: ["sub/p_gone.txt"]}
    for i, name in enumerate(HOSTILE):
        assert (out / f"o_{name}.txt").read_text() == f"value {i}"
        assert (out / "sub" / f"p_{name}.txt").read_text() == f"p {i}"
        assert not (work / f"batch_0/task_{i}" / f"o_{name}.txt").exists()
    assert (work / "batch_0/task_missing/o_gone.txt").exists()  # an incomplete task's outputs stay
    assert not (out / "o_gone.txt").exists()
    assert not list(tmp_path.rglob("pwned"))

    # Collected by an earlier gather: nothing to move, nothing missing.
    assert sink.collect(tasks[:2], overwrite=False) == {}
    # A file that appeared in output_dir meanwhile is never replaced.
    make_task(work, "batch_1/task_x", {"o_x.txt": "ours"})
    (out / "o_x.txt").write_text("the user's")
    with pytest.raises(OutputCollisionError, match="o_x.txt"):
        sink.collect([row(7, "batch_1/task_x", ["o_x.txt"])], overwrite=False)
    assert (out / "o_x.txt").read_text() == "the user's"
    assert sink.collect([row(7, "batch_1/task_x", ["o_x.txt"])], overwrite=True) == {}
    assert (out / "o_x.txt").read_text() == "ours"
    assert sink.existing(["o_plain.txt", "nope.txt", "sub/p_new\nline.txt"]) == ["o_plain.txt", "sub/p_new\nline.txt"]
    path = sink.write_text("manifest.jsonl", '{"a": 1}\n')
    assert Path(path).read_text() == '{"a": 1}\n' and path == str(out / "manifest.jsonl")


def test_host_sink_shards_outputs_by_batch_and_reads_names_as_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("LC_ALL", "C.UTF-8")  # a byte that is not UTF-8 must not swallow the NUL after it
    work, out = tmp_path / "work", tmp_path / "out"
    latin = os.fsdecode(b"caf\xe9")
    names = ["plain", latin, "new\nline"]
    tasks = []
    for i, name in enumerate(names):
        folder = f"batch_{i}/task_{i}"
        make_task(work, folder, {f"o_{name}.txt": f"o {i}", f"sub/p_{name}.txt": f"p {i}"})
        tasks.append(row(i, folder, [f"o_{name}.txt", f"sub/p_{name}.txt"]))
    sink = HostSink(LocalShell(), str(out), str(work), sharded=True)
    (out / "o_plain.txt").parent.mkdir(parents=True)
    (out / "o_plain.txt").write_text("flat: not in the way of a sharded output")
    assert sink.existing([f"batch_0/o_{latin}.txt", "o_plain.txt"]) == ["o_plain.txt"]
    assert sink.collect(tasks, overwrite=False) == {}
    for i, name in enumerate(names):
        assert (out / f"batch_{i}" / f"o_{name}.txt").read_text() == f"o {i}"
        assert (out / f"batch_{i}" / "sub" / f"p_{name}.txt").read_text() == f"p {i}"
    assert (out / "o_plain.txt").read_text() == "flat: not in the way of a sharded output"
    # A clash is reported with the output's path under its shard; the user's file stays.
    make_task(work, "batch_1/task_9", {"o_9.txt": "ours"})
    (out / "batch_1" / "o_9.txt").write_text("the user's")
    with pytest.raises(OutputCollisionError, match="batch_1/o_9.txt"):
        sink.collect([row(9, "batch_1/task_9", ["o_9.txt"])], overwrite=False)
    assert (out / "batch_1" / "o_9.txt").read_text() == "the user's"


def test_reset_keeps_only_what_staging_put_into_a_folder(tmp_path):
    work = tmp_path / "work"
    make_task(work, "batch_0/task_a", {
        "in_top.txt": "echo", "in_a.txt": "input", "deep/in/b.txt": "nested input",
        "out_a.txt": "partial", "stdout.txt": "x", "deep/junk.txt": "j", "deep/in/junk": "j", "made/by/task": "t",
        "$(touch pwned)": "t", "new\nline": "t",
    })
    records = b"batch_0/task_a\x003\x00in_top.txt\x00in_a.txt\x00deep/in/b.txt\x00"
    LocalShell().run_script(host_script("reset_tasks.sh"), [str(work)], stdin_data=records).check("reset")
    left = sorted(str(p.relative_to(work / "batch_0/task_a")) for p in (work / "batch_0/task_a").rglob("*"))
    assert left == ["deep", "deep/in", "deep/in/b.txt", "in_a.txt", "in_top.txt"]
    assert (work / "batch_0/task_a/deep/in/b.txt").read_text() == "nested input"


def test_folders_from_a_task_table_are_checked_before_they_reach_a_path():
    assert check_folder("batch_3/task_a.b+c-d_e") == "batch_3/task_a.b+c-d_e"
    for bad in ("../etc", "batch_0/../../etc", "/etc/passwd", "batch_0/task_x/../../y", "batch_0/x", "batch_0/task_a\nb"):
        with pytest.raises(SwarmExecutionError, match="unexpected task folder"):
            check_folder(bad)


def small_engine(tmp_path: Path) -> SwarmEngine:
    spec = build_spec(command="echo <arg0> >&2; echo out > out_<id>.txt", args=[["a"], ["b"]], outputs=["out_<id>.txt"],
                      output_dir=tmp_path / "out")
    return SwarmEngine(spec, "sw", str(tmp_path / "sw"), LocalShell(), EngineOptions(heartbeat_interval=1))


def test_a_cancelled_manager_never_starts_and_cancel_says_what_it_did(tmp_path):
    engine = small_engine(tmp_path)
    round_ = engine.prepare_round()
    report = engine.cancel(round_.managers)
    assert report.outcomes == {"r0m0": "not-started"}
    engine.start(round_)  # too late: marked cancelled
    assert not Path(engine.layout.manager_file("r0m0", "launched")).exists()
    assert engine.live_round() is None
    assert engine.poll({"r0m0": None}).managers["r0m0"].state == "dead"


def test_cancel_fails_loudly_when_there_is_nothing_to_reach(tmp_path):
    engine = small_engine(tmp_path)
    with pytest.raises(SwarmExecutionError, match=r"not found on .*nothing was stopped"):
        engine.cancel(["r0m0"])
    round_ = engine.prepare_round()
    Path(engine.layout.manager_file("r0m0", "pid")).write_text("12345 some-other-host\n")
    with pytest.raises(SwarmExecutionError, match="runs on host some-other-host"):
        engine.cancel(round_.managers)


def test_files_and_log_tails_are_read_on_the_host(tmp_path, run_swarm_round):
    engine = small_engine(tmp_path)
    round_ = engine.prepare_round()
    run_swarm_round(engine, round_)
    files = engine.read_files(["exec/ledger.json", "exec/nothing"])
    assert json.loads(files["exec/ledger.json"])["rounds"][0]["managers"] == ["r0m0"]
    assert files["exec/nothing"] is None
    tail = engine.log_tail(engine.tasks[1], "stderr.txt", max_bytes=1)
    assert (tail.size, tail.data, tail.truncated) == (2, b"\n", True)
    assert engine.log_tail(engine.tasks[0], "stderr.txt").data == b"a\n"
    # An empty log is not kept: it reads as no log, not as an error.
    assert not os.path.exists(SwarmLayout(engine.layout.root).task_dir(engine.tasks[0].folder) + "/stdout.txt")
    assert engine.log_tail(engine.tasks[0], "stdout.txt") == LogTail(None, b"")
    with pytest.raises(ValueError, match="unknown log"):
        engine.log_tail(engine.tasks[0], "../../etc/passwd")
