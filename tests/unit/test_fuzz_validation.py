"""Property-based: whatever the user writes as command, templates, ids and arguments,
build_spec either accepts it (and the staged scripts are valid bash that never runs a
value as code) or refuses it with a SwarmSpecError — never another exception."""

from __future__ import annotations

import subprocess

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_locusts.swarm.command import SwarmSpecError
from airflow_provider_locusts.swarm.layout import SwarmLayout
from airflow_provider_locusts.swarm.render import render_command_script, render_manager, render_poll
from airflow_provider_locusts.swarm.spec import build_spec

SHELLISH = st.sampled_from(list("abc_01 .;|&$`'\"\\(){}<>#*?[]!\n\t-=/~") + ["<id>", "<shared>sf", "<shared>", "<arg0>", "<arg7>", "$(", "<<EOF\n", "\nEOF\n"])
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def bash_syntax_ok(script: str) -> bool:
    return subprocess.run(["bash", "-n"], input=script.encode("utf-8", "surrogateescape"), capture_output=True, timeout=10).returncode == 0


@FUZZ
@given(command=st.lists(SHELLISH, max_size=30).map("".join), rows=st.lists(st.lists(st.text(max_size=8), max_size=3), min_size=1, max_size=3))
def test_any_command_and_arguments_are_accepted_or_refused_clearly(tmp_path, command, rows):
    shared = tmp_path / "shared.txt"
    shared.write_text("s")
    try:
        spec = build_spec(command=command, args=rows, shared_inputs={"sf": str(shared)}, outputs=["o_<id>"], output_dir=tmp_path / "out")
    except SwarmSpecError as error:
        assert str(error)
        return
    script = render_command_script(spec)
    # The shared paths' assignments are ours: they must parse whatever the paths; the
    # user's command is checked by itself (it may be invalid shell). Values are not in the
    # script at all: they reach the task through its environment.
    head = script[: script.rindex(spec.command.script)]
    assert bash_syntax_ok(head), head


@FUZZ
@given(names=st.lists(st.text(alphabet=st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1, max_size=12), min_size=1, max_size=4, unique=True),
       template=st.sampled_from(["in_<id>.txt", "<id>", "<id>.<id>", "x<id>y", "in_<id>"]))
def test_any_file_names_are_discovered_or_refused_clearly(tmp_path_factory, names, template):
    folder = tmp_path_factory.mktemp("in")
    for name in names:
        try:
            (folder / name).write_text("x")
        except OSError:
            return  # a name this filesystem refuses ("." or ".." and the like)
    try:
        spec = build_spec(command="cat " + template + " > o_<id>", input_dir=folder,
                          task_inputs=[template], outputs=["o_<id>"], output_dir=folder.parent / "out")
    except SwarmSpecError as error:
        assert str(error)
        return
    for task in spec.tasks:
        assert all(source.parent == folder for source, _ in task.inputs)
        assert "/" not in task.task_id


@FUZZ
@given(root=st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1, max_size=30))
def test_manager_and_poll_scripts_parse_for_any_root(root):
    layout = SwarmLayout("/" + root)
    assert bash_syntax_ok(render_manager(layout, "r0m0", 2, 5, 1))
    assert bash_syntax_ok(render_manager(layout, "r0m0", 2, 5, 1, task_timeout=3))
    assert bash_syntax_ok(render_manager(layout, "r0m0", 2, 5, 1, own_shell_reason="reads $$"))
    assert bash_syntax_ok(render_poll(layout, "slurm"))
