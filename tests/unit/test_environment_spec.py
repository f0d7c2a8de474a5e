"""The Custom Environment's description: every bad input is refused with one message saying
what to fix, before anything is staged; patterns, sizes and what a task's records say."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from airflow_provider_locusts.swarm.environment import TASK_COMMAND, build_environment_spec, pattern_regex
from airflow_provider_locusts.swarm.errors import SwarmSpecError
from airflow_provider_locusts.swarm.replica_gather import parse_changes

from tests.support.trees import make_tree


@pytest.fixture
def tree(tmp_path) -> Path:
    return make_tree(
        tmp_path / "tree",
        {"conf/app.ini": "x\n", "results/a.csv": "a\n", "results/b.txt": "b\n", "data/out/o.txt": "o\n", "big.db": b"\0" * 10000},
        ("inbox", "logs", "bin"),
    )


def spec(tree: Path, tmp_path: Path, **kwargs):
    arguments = {
        "environment_dir": tree,
        "writable": ["results", "inbox", "logs"],
        "workdir": ".",
        "inputs_dir": None,
        "command": "cat conf/app.ini > results/out_<id>.txt",
        "output_dir": tmp_path / "out",
        "args": [["a"], ["b"]],
    }
    arguments.update(kwargs)
    return build_environment_spec(**arguments)


def refused(tree, tmp_path, match: str, **kwargs):
    with pytest.raises(SwarmSpecError, match=match):
        spec(tree, tmp_path, **kwargs)


def test_a_valid_description(tree, tmp_path):
    swarm = spec(tree, tmp_path, writable=["results/*.csv", "inbox", "logs", "data/**/o.txt"], workdir="bin/../conf", outputs=["logs/<id>.log"])
    env = swarm.environment
    assert env.writable == ("data/out/o.txt", "inbox", "logs", "results/a.csv")
    assert env.workdir == "conf" and env.inputs_dir == "conf"
    assert env.output_templates == ("logs/<id>.log",)
    # Tasks run the per-task script; the user's command is kept for it.
    assert swarm.command.script == TASK_COMMAND
    assert env.command.script == 'cat conf/app.ini > results/out_"${LOCUSTS_ID}".txt'
    assert swarm.tasks[0].outputs == ()  # outputs are the tree's, checked by the per-task script
    assert env.size.writable_entries == 4  # inbox, logs, results/a.csv, data/out/o.txt
    assert env.size.readonly_dirs == 6  # the top, conf, bin, data, data/out, results: made anew in each replica
    assert env.size.bytes >= 10000


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"environment_dir": "/nonexistent/tree"}, "environment_dir does not exist"),
        ({"environment_dir": ""}, "environment_dir is empty"),
        ({"workdir": "../elsewhere"}, "is outside the tree"),
        ({"workdir": "/etc"}, "is outside the tree"),
        ({"workdir": "nosuch"}, "is not a folder of the tree.*missing"),
        ({"workdir": "big.db"}, "is not a folder of the tree.*a file"),
        ({"writable": ["results", "nosuch*"]}, "pattern 'nosuch\\*' matches nothing"),
        ({"writable": ["../x"]}, "leaves the tree"),
        ({"writable": ["/abs"]}, "relative to the tree"),
        ({"writable": [""]}, "is empty"),
        ({"outputs": ["conf/<id>.txt"]}, "compulsory output 'conf/<id>.txt' is in the read-only part"),
        ({"outputs": ["results/fixed.txt"]}, "has no <id>"),
        ({"outputs": ["../<id>.txt"]}, "escapes"),
    ],
)
def test_bad_input_is_refused_with_what_to_fix(tree, tmp_path, kwargs, match):
    refused(tree, tmp_path, match, **kwargs)


def test_special_files_are_refused(tree, tmp_path):
    os.mkfifo(tree / "conf" / "a fifo")
    refused(tree, tmp_path, r"special files.*conf/a fifo \(FIFO\)")
    os.unlink(tree / "conf" / "a fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tree / "data" / "sock"))
        refused(tree, tmp_path, r"special files.*data/sock \(socket\)")


def test_links_in_the_tree(tree, tmp_path):
    os.symlink("../../outside", tree / "conf" / "escape")
    refused(tree, tmp_path, r"the link conf/escape -> ../../outside, which leaves the tree")
    os.unlink(tree / "conf" / "escape")
    os.symlink("/etc/hosts", tree / "conf" / "hosts")  # absolute: the same place for every task
    os.symlink("../results", tree / "conf" / "results-link")
    assert spec(tree, tmp_path).environment.writable == ("inbox", "logs", "results")
    refused(tree, tmp_path, "names 'conf/results-link', a symbolic link", writable=["conf/results-link"])
    refused(tree, tmp_path, "is not a folder of the tree.*a link", workdir="conf/results-link")


def test_task_inputs_go_to_a_writable_folder_and_never_replace_a_file_of_the_tree(tree, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(2):
        (inputs / f"item_{i}.txt").write_text("x")
    common = {"input_dir": inputs, "task_inputs": ["item_<id>.txt"], "args": None}
    refused(tree, tmp_path, "task inputs are placed in 'conf' of the tree, which is read-only", workdir="conf", **common)
    assert spec(tree, tmp_path, workdir="conf", inputs_dir="inbox", **common).environment.inputs_dir == "inbox"
    (tree / "inbox" / "item_1.txt").write_text("already there")
    refused(tree, tmp_path, "input 'item_1.txt' of task '1' would replace .*inbox/item_1.txt", inputs_dir="inbox", **common)


def test_the_settings_need_a_tree(tmp_path):
    from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator

    operator = LocustsSwarmOperator(task_id="t", command="true", args=[[1]], output_dir=str(tmp_path), environment_writable=["x"])
    with pytest.raises(SwarmSpecError, match="give its tree with environment_dir"):
        operator._spec()


@pytest.mark.parametrize(
    "pattern, path, matches",
    [
        ("results", "results", True),
        ("results", "results/a", False),  # a folder's contents come with it, not by matching
        ("*.csv", "a.csv", True),
        ("*.csv", "d/a.csv", False),
        ("**/*.csv", "d/e/a.csv", True),
        ("**/*.csv", "a.csv", True),
        ("d/**", "d/e/f", True),
        ("[ab]?", "b1", True),
        ("[!ab]?", "b1", False),
        ("a[", "a[", True),
        ("with space", "with space", True),
        ("a.b", "axb", False),
    ],
)
def test_patterns(pattern, path, matches):
    assert bool(pattern_regex(pattern).fullmatch(path)) is matches


def test_records_of_a_task_are_read_as_data_and_unsafe_paths_refused():
    def rec(*fields):
        return b"".join(f.encode() + b"\0" for f in fields)

    data = (
        rec("created", "f", "results/new\nline.txt", "")
        + rec("created", "l", "results/x", "/etc/passwd")
        + rec("modified", "f", "logs/-dash", "")
        + rec("deleted", "f", "inbox/item_1.txt", "")
        + rec("created", "f", "../../etc/passwd", "")
        + rec("created", "f", "/etc/shadow", "")
        + rec("readonly", "f", "conf/app.ini", "modified")
        + rec("missing", "-", "results/out_1.txt", "")
        + rec("exit", "-", "-", "3")
    )
    changes = parse_changes(data)
    assert changes.created == ["results/new\nline.txt", "results/x"]
    assert changes.refused == ["../../etc/passwd", "/etc/shadow"]
    assert changes.collectable(["results", "logs"]) == ["results/new\nline.txt", "logs/-dash"]
    assert changes.not_collected() == {"results/x": "symbolic link to /etc/passwd"}
    assert changes.reason("exit code 1") == (
        "exit code 3; changed the read-only part of the tree: modified conf/app.ini (a file every task shares: this "
        "task, or one running at the same time, changed it); missing outputs: results/out_1.txt"
    )
    # No record of the end: the default reason stands.
    assert parse_changes(rec("created", "f", "results/a", "")).reason("never finished") == "never finished"
