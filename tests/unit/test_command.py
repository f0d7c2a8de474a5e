"""CommandTemplate: handles become variable references that fit their quoting context,
and the value never enters the command text."""

from __future__ import annotations

import subprocess

import pytest

from airflow_provider_locusts.swarm.command import CommandTemplate, SwarmSpecError, arg_var, shared_var


def parse(command: str, shared=("sf1", "ref")) -> CommandTemplate:
    return CommandTemplate.parse(command, shared_names=set(shared))


@pytest.mark.parametrize(
    "command,script",
    [
        ("cat in_<id>.txt", 'cat in_"${LOCUSTS_ID}".txt'),
        ('echo "id is <id>!"', 'echo "id is ${LOCUSTS_ID}!"'),
        ("echo <id> \"<id>\" '<x>'", 'echo "${LOCUSTS_ID}" "${LOCUSTS_ID}" \'<x>\''),
        ("cat <shared>sf1 > o", 'cat "${LOCUSTS_SHARED_sf1}" > o'),
        ('cat "<shared>ref"', 'cat "${LOCUSTS_SHARED_ref}"'),
        ("echo <arg0> <arg12>", 'echo "${LOCUSTS_ARG_0}" "${LOCUSTS_ARG_12}"'),
        ('echo "<arg3>-<id>"', 'echo "${LOCUSTS_ARG_3}-${LOCUSTS_ID}"'),
        # backslash-escaped quotes do not open a quoted region
        ("echo \\'<id>", "echo \\'\"${LOCUSTS_ID}\""),
        ('echo "a\\"<id>"', 'echo "a\\"${LOCUSTS_ID}"'),
        # after a single-quoted part closes, handles are expanded again
        ("echo 'x' <id>", "echo 'x' \"${LOCUSTS_ID}\""),
        # a '<' that starts no handle stays as it is
        ("sort < in_<id>.txt <idx> <arg> <sharedx", 'sort < in_"${LOCUSTS_ID}".txt <idx> <arg> <sharedx'),
    ],
)
def test_handle_substitution(command, script):
    assert parse(command).script == script


def test_parse_records_what_is_used():
    t = parse("cat <shared>sf1 <arg2> <arg0> > out_<id>")
    assert t.uses_id is True
    assert t.shared_names == frozenset({"sf1"})
    assert t.max_arg_index == 2
    assert t.source == "cat <shared>sf1 <arg2> <arg0> > out_<id>"
    plain = parse("true")
    assert (plain.uses_id, plain.shared_names, plain.max_arg_index, plain.script) == (False, frozenset(), None, "true")


def test_variable_names():
    assert shared_var("sf1") == "LOCUSTS_SHARED_sf1"
    assert arg_var(7) == "LOCUSTS_ARG_7"


@pytest.mark.parametrize("command", ["echo '<id>'", "echo 'a'b'<arg0>'", "echo '<shared>sf1'"])
def test_handle_in_single_quotes_is_refused(command):
    with pytest.raises(SwarmSpecError, match="inside single quotes"):
        parse(command)


def test_unknown_shared_lists_the_known_ones():
    with pytest.raises(SwarmSpecError, match=r"<shared>nope but shared_inputs has no 'nope' \(known: ref, sf1\)"):
        parse("cat <shared>nope")
    with pytest.raises(SwarmSpecError, match=r"known: none"):
        CommandTemplate.parse("cat <shared>nope", shared_names=set())


def run_bash(script: str, cwd, **variables: str) -> str:
    """Run a substituted command with bash, the handle variables set; return its stdout."""
    env = {"PATH": "/usr/bin:/bin", **variables}
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, timeout=10, check=True).stdout.decode()


HOSTILE = ["a b", "*", "$(touch x)", "`touch x`", "it's", 'say "hi"', "-n", "a\nb", "x;y", "${HOME}", "\\", ""]


@pytest.mark.parametrize("value", HOSTILE)
def test_rendered_reference_expands_to_exactly_the_value(value, tmp_path):
    """The substituted script, run by bash with the variable set, prints the value unchanged
    (no word splitting, no globbing, no evaluation), in and out of double quotes."""
    script = parse("printf '[%s]' <id> \"<id>\" \"pre <id> post\"").script
    (tmp_path / "decoy1").write_text("")  # something '*' could glob to
    out = run_bash(script, tmp_path, LOCUSTS_ID=value)
    assert out == f"[{value}][{value}][pre {value} post]"
    assert not (tmp_path / "x").exists()


# A command substitution inside double quotes is shell code again: the handle is quoted there.
@pytest.mark.parametrize("command", ['echo "$(printf %s <id>)"', 'echo "$(printf %s "<id>")"', 'echo "`printf %s <id>`"'])
def test_handle_inside_command_substitution_in_double_quotes(command, tmp_path):
    script = parse(command).script
    out = run_bash(script, tmp_path, LOCUSTS_ID="a  b")
    assert out == "a  b\n"


def test_handle_in_here_document(tmp_path):
    script = parse("cat <<EOF\n<id>\nEOF").script
    out = run_bash(script, tmp_path, LOCUSTS_ID="abc")
    assert out == "abc\n"


def test_handle_in_quoted_here_document_is_refused():
    with pytest.raises(SwarmSpecError, match="single quotes"):
        parse("cat <<'EOF'\n<id>\nEOF")


def test_here_document_ends_at_its_delimiter(tmp_path):
    script = parse("cat <<-END\n\t<id> in\n\tEND\necho <id> out").script
    out = run_bash(script, tmp_path, LOCUSTS_ID="a  b")
    assert out == "a  b in\na  b out\n"


def test_apostrophe_in_a_comment_is_not_a_quote(tmp_path):
    script = parse("echo <id> # don't split\necho '<x>' <id>").script
    out = run_bash(script, tmp_path, LOCUSTS_ID="a  b")
    assert out == "a  b\n<x> a  b\n"


def test_arithmetic_substitution_closes_properly(tmp_path):
    script = parse('echo "$((1 + 2))" <arg0>').script
    out = run_bash(script, tmp_path, LOCUSTS_ARG_0="x y")
    assert out == "3 x y\n"
