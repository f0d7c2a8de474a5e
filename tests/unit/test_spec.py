"""build_spec: every bad input is one SwarmSpecError that says what to fix, and nothing
is created on disk; discovery of ids from input files, their order, their batches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_provider_locusts.swarm.spec import SwarmSpecError, build_spec


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """input dir with ids 1, 2, 3: in_<id>.txt and second_<id>.txt, plus shared.txt."""
    d = tmp_path / "in"
    d.mkdir()
    for i in (1, 2, 3):
        (d / f"in_{i}.txt").write_text(f"in {i}\n")
        (d / f"second_{i}.txt").write_text(f"second {i}\n")
    (d / "shared.txt").write_text("shared\n")
    return d


def expect_error(tmp_path: Path, *words: str, **kwargs) -> str:
    """build_spec(**kwargs) must raise SwarmSpecError whose message holds every word,
    and leave tmp_path exactly as it was (in particular no output_dir)."""
    before = snapshot(tmp_path)
    kwargs.setdefault("command", "cat in_<id>.txt > out_<id>.txt")
    kwargs.setdefault("output_dir", tmp_path / "out")
    with pytest.raises(SwarmSpecError) as err:
        build_spec(**kwargs)
    message = str(err.value)
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in message {message!r}"
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "out").exists()
    return message


# --- validation ------------------------------------------------------------------------


def test_missing_input_dir_is_refused(tmp_path):
    expect_error(tmp_path, "input_dir", "does not exist", str(tmp_path / "nope"),
                 input_dir=tmp_path / "nope", task_inputs=["in_<id>.txt"])


def test_input_dir_not_given_with_task_inputs(tmp_path):
    expect_error(tmp_path, "input_dir", "task_inputs", task_inputs=["in_<id>.txt"])


def test_input_dir_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    expect_error(tmp_path, "input_dir", "not a folder", input_dir=f, task_inputs=["in_<id>.txt"])


def test_empty_input_dir_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    expect_error(tmp_path, "input_dir is empty", "input files", input_dir=tmp_path / "empty", task_inputs=["in_<id>.txt"])


def test_no_id_found(tmp_path, inputs):
    msg = expect_error(tmp_path, "no task id found", "'data_<id>.csv'", input_dir=inputs, task_inputs=["data_<id>.csv"])
    assert str(inputs) in msg


def test_task_input_template_without_id(tmp_path, inputs):
    expect_error(tmp_path, "task input template", "'shared.txt'", "has no <id>", "shared_inputs",
                 input_dir=inputs, task_inputs=["in_<id>.txt", "shared.txt"])


def test_output_template_without_id(tmp_path, inputs):
    expect_error(tmp_path, "output template", "'result.txt'", "no <id>", "add <id>",
                 input_dir=inputs, task_inputs=["in_<id>.txt"], outputs=["out_<id>.txt", "result.txt"])


@pytest.mark.parametrize("template", ["/abs/out_<id>.txt", "../out_<id>.txt", "sub/../../out_<id>.txt"])
def test_output_template_escaping_the_task_folder(tmp_path, inputs, template):
    expect_error(tmp_path, "output template", "escapes the task folder", "relative",
                 input_dir=inputs, task_inputs=["in_<id>.txt"], outputs=[template])


@pytest.mark.parametrize("template", ["/abs/in_<id>.txt", "../in_<id>.txt"])
def test_task_input_template_escaping_the_task_folder(tmp_path, inputs, template):
    expect_error(tmp_path, "task input template", "escapes", input_dir=inputs, task_inputs=[template])


def test_unknown_shared_name(tmp_path, inputs):
    expect_error(tmp_path, "<shared>sf2", "no 'sf2'", "known: sf1",
                 command="cat in_<id>.txt <shared>sf2 > out_<id>.txt",
                 input_dir=inputs, task_inputs=["in_<id>.txt"], shared_inputs={"sf1": "shared.txt"})


def test_shared_without_name(tmp_path, inputs):
    expect_error(tmp_path, "<shared> without a name",
                 command="cat <shared> > out_<id>.txt",
                 input_dir=inputs, task_inputs=["in_<id>.txt"], shared_inputs={"sf1": "shared.txt"})


def test_shared_input_that_does_not_exist(tmp_path, inputs):
    expect_error(tmp_path, "shared input 'sf1'", "does not exist", str(inputs / "nothere.txt"),
                 command="cat <shared>sf1", input_dir=inputs, task_inputs=["in_<id>.txt"], shared_inputs={"sf1": "nothere.txt"})


def test_shared_input_with_a_bad_name(tmp_path, inputs):
    expect_error(tmp_path, "shared input name", "'1bad'", "letters",
                 input_dir=inputs, task_inputs=["in_<id>.txt"], shared_inputs={"1bad": "shared.txt"})


@pytest.mark.parametrize("value", [0, -3, True, False, "4", 2.0, None])
def test_processes_must_be_a_positive_int(tmp_path, inputs, value):
    expect_error(tmp_path, "processes", "integer >= 1", repr(value),
                 input_dir=inputs, task_inputs=["in_<id>.txt"], processes=value)


@pytest.mark.parametrize("value", [0, -1, True, "10"])
def test_batch_size_must_be_a_positive_int(tmp_path, inputs, value):
    expect_error(tmp_path, "batch_size", "integer >= 1", input_dir=inputs, task_inputs=["in_<id>.txt"], batch_size=value)


def test_args_and_task_inputs_both_given(tmp_path, inputs):
    expect_error(tmp_path, "both given", "args", "task_inputs", "not both",
                 input_dir=inputs, task_inputs=["in_<id>.txt"], args=[["a"]])


def test_neither_args_nor_task_inputs(tmp_path, inputs):
    expect_error(tmp_path, "no tasks described", "task_inputs", "args", input_dir=inputs)


def test_empty_args(tmp_path):
    expect_error(tmp_path, "args is empty", command="echo <id>", args=[])


@pytest.mark.parametrize("args", ["abc", [["ok"], "not-a-list"]])
def test_args_must_be_lists_of_lists(tmp_path, args):
    expect_error(tmp_path, "list", command="echo <id>", args=args)


def test_args_with_nul_is_refused(tmp_path):
    expect_error(tmp_path, "args[1]", "NUL", command="echo <arg0>", args=[["a"], ["b\0c"]])


def test_ids_whose_folders_collide(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "in_a b.txt").write_text("1")
    (d / "in_a_b.txt").write_text("2")
    msg = expect_error(tmp_path, "'a b'", "'a_b'", "task folder", "task_a_b", "rename", input_dir=d, task_inputs=["in_<id>.txt"])
    assert "would share" in msg


def test_id_missing_its_second_input(tmp_path, inputs):
    (inputs / "second_2.txt").unlink()
    expect_error(tmp_path, "id '2'", "'in_2.txt'", "no 'second_2.txt'", "add the file",
                 input_dir=inputs, task_inputs=["in_<id>.txt", "second_<id>.txt"])


def test_arg_beyond_the_row_length(tmp_path):
    expect_error(tmp_path, "<arg2>", "args[1]", "only 2 value(s)",
                 command="echo <arg0> <arg2>", args=[["a", "b", "c"], ["a", "b"]])


def test_arg_handle_without_args(tmp_path, inputs):
    expect_error(tmp_path, "<arg0>", "no args were given", command="echo <arg0> > out_<id>.txt",
                 input_dir=inputs, task_inputs=["in_<id>.txt"])


@pytest.mark.parametrize("command", ["echo '<id>' > x", "echo 'a <shared>sf1 b'", "echo 'x' '<arg0>'"])
def test_handle_inside_single_quotes(tmp_path, inputs, command):
    expect_error(tmp_path, "inside single quotes", "double quotes", command=command, args=[["v"]],
                 shared_inputs={"sf1": str(inputs / "shared.txt")})


@pytest.mark.parametrize("command,kind", [("echo <id> 'abc", "single"), ('echo "abc <id>', "double"), ("echo \"it's <id>", "double")])
def test_unclosed_quote(tmp_path, command, kind):
    expect_error(tmp_path, f"unclosed {kind} quote", command=command, args=[["v"]])


@pytest.mark.parametrize("command", ["", "   \n"])
def test_empty_command(tmp_path, command):
    expect_error(tmp_path, "command is empty", command=command, args=[["v"]])


# --- discovery -----------------------------------------------------------------------------


def make_inputs(d: Path, names: list[str]) -> Path:
    d.mkdir(exist_ok=True)
    for n in names:
        (d / n).write_text(n)
    return d


def test_ids_found_by_matching_templates(tmp_path):
    d = make_inputs(tmp_path / "in", ["in_x.txt", "second_x.txt", "in_y.txt", "second_y.txt", "other.dat", "in_.txt_no", "shared.txt"])
    spec = build_spec(command="cat in_<id>.txt second_<id>.txt > out_<id>.txt", input_dir=d,
                      task_inputs=["in_<id>.txt", "second_<id>.txt"], outputs=["out_<id>.txt"], output_dir=tmp_path / "out")
    assert [t.task_id for t in spec.tasks] == ["x", "y"]
    x = spec.tasks[0]
    assert x.inputs == ((d / "in_x.txt", "in_x.txt"), (d / "second_x.txt", "second_x.txt"))
    assert x.outputs == ("out_x.txt",)
    assert x.args == ()
    assert spec.argument_mode is False
    assert spec.output_dir == tmp_path / "out"
    assert not (tmp_path / "out").exists()


def test_numeric_sort_when_all_ids_are_integers(tmp_path):
    d = make_inputs(tmp_path / "in", [f"in_{i}.txt" for i in (10, 2, 0, 1, 33, 100)])
    spec = build_spec(command="cat in_<id>.txt", input_dir=d, task_inputs=["in_<id>.txt"], output_dir=tmp_path / "out")
    assert [t.task_id for t in spec.tasks] == ["0", "1", "2", "10", "33", "100"]
    assert [t.index for t in spec.tasks] == [0, 1, 2, 3, 4, 5]


def test_text_sort_otherwise(tmp_path):
    d = make_inputs(tmp_path / "in", [f"in_{i}.txt" for i in ("10", "2", "b", "1", "a")])
    spec = build_spec(command="cat in_<id>.txt", input_dir=d, task_inputs=["in_<id>.txt"], output_dir=tmp_path / "out")
    assert [t.task_id for t in spec.tasks] == ["1", "10", "2", "a", "b"]


def test_template_with_id_twice(tmp_path):
    d = make_inputs(tmp_path / "in", ["p_a_a.txt", "p_a_b.txt", "p_x_y_x_y.txt", "p_k_k.txt"])
    spec = build_spec(command="cat p_<id>_<id>.txt", input_dir=d, task_inputs=["p_<id>_<id>.txt"], output_dir=tmp_path / "out")
    assert [t.task_id for t in spec.tasks] == ["a", "k", "x_y"]
    assert spec.tasks[2].inputs == ((d / "p_x_y_x_y.txt", "p_x_y_x_y.txt"),)


def test_template_in_a_subfolder(tmp_path):
    d = make_inputs(tmp_path / "in", [])
    make_inputs(d / "sub", ["in_1.txt", "in_2.txt"])
    (d / "in_9.txt").write_text("not in sub")
    spec = build_spec(command="cat sub/in_<id>.txt", input_dir=d, task_inputs=["sub/in_<id>.txt"], output_dir=tmp_path / "out")
    assert [t.task_id for t in spec.tasks] == ["1", "2"]
    assert spec.tasks[0].inputs == ((d / "sub" / "in_1.txt", "sub/in_1.txt"),)


def test_glob_characters_in_template_are_literal(tmp_path):
    d = make_inputs(tmp_path / "in", ["in[1]_a.txt", "in1_b.txt", "in*_c.txt"])
    spec = build_spec(command="cat <id>", input_dir=d, task_inputs=["in[1]_<id>.txt"], output_dir=tmp_path / "out")
    assert [t.task_id for t in spec.tasks] == ["a"]


def test_folders_by_batch_size(tmp_path):
    d = make_inputs(tmp_path / "in", [f"in_{i}.txt" for i in range(7)])
    spec = build_spec(command="cat in_<id>.txt", input_dir=d, task_inputs=["in_<id>.txt"], output_dir=tmp_path / "out", batch_size=3)
    assert [t.folder for t in spec.tasks] == [
        "batch_0/task_0", "batch_0/task_1", "batch_0/task_2",
        "batch_1/task_3", "batch_1/task_4", "batch_1/task_5",
        "batch_2/task_6",
    ]
    assert spec.batch_size == 3


def test_folder_names_replace_unsafe_characters(tmp_path):
    d = make_inputs(tmp_path / "in", ["in_a b.txt", "in_x$y.txt", "in_ok-1.2+3.txt"])
    spec = build_spec(command="cat in_<id>.txt", input_dir=d, task_inputs=["in_<id>.txt"], output_dir=tmp_path / "out")
    assert {t.task_id: t.folder for t in spec.tasks} == {
        "a b": "batch_0/task_a_b", "ok-1.2+3": "batch_0/task_ok-1.2+3", "x$y": "batch_0/task_x_y",
    }


def test_args_mode(tmp_path):
    spec = build_spec(command="echo <arg0> <arg1> > out_<id>.txt", args=[["a", 1], ["b", 2.5]], outputs=["out_<id>.txt"],
                      output_dir=tmp_path / "out", processes=3, batch_size=1)
    assert spec.argument_mode is True
    assert [(t.task_id, t.args, t.folder, t.outputs) for t in spec.tasks] == [
        ("0", ("a", "1"), "batch_0/task_0", ("out_0.txt",)),
        ("1", ("b", "2.5"), "batch_1/task_1", ("out_1.txt",)),
    ]
    assert spec.processes == 3
    assert spec.command.max_arg_index == 1


def test_shared_inputs_resolved(tmp_path, inputs):
    absolute = tmp_path / "abs_shared.txt"
    absolute.write_text("abs")
    spec = build_spec(command="cat in_<id>.txt <shared>sf1 <shared>sf2", input_dir=inputs, task_inputs=["in_<id>.txt"],
                      shared_inputs={"sf1": "shared.txt", "sf2": absolute}, output_dir=tmp_path / "out")
    assert spec.shared_inputs == {"sf1": inputs / "shared.txt", "sf2": absolute}
    assert spec.shared_runtime_name("sf1") == "sf1/shared.txt"
    assert spec.command.shared_names == frozenset({"sf1", "sf2"})


def test_relative_shared_input_without_input_dir(tmp_path):
    expect_error(tmp_path, "shared input 'sf1'", "relative path", "absolute path",
                 command="cat <shared>sf1", args=[["a"]], shared_inputs={"sf1": "shared.txt"})


def test_build_spec_does_not_change_cwd(tmp_path, inputs):
    cwd = os.getcwd()
    build_spec(command="cat in_<id>.txt", input_dir=inputs, task_inputs=["in_<id>.txt"], output_dir=tmp_path / "out")
    assert os.getcwd() == cwd


def test_args_with_lone_surrogate_is_refused(tmp_path):
    expect_error(tmp_path, "args[0]", "lone surrogate", command="echo <arg0>", args=[["a\ud800b"]])


def test_args_with_escaped_bytes_are_accepted(tmp_path):
    """A surrogate-escaped byte (as os.fsdecode makes from a non-UTF-8 name) is a valid argument."""
    spec = build_spec(command="echo <arg0>", args=[["caf\udce9"]], output_dir=tmp_path / "out")
    assert spec.tasks[0].args == ("caf\udce9",)
