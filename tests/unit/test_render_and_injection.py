"""Hostile ids, file names, argument values and root paths: the swarm runs for real through
the bash manager, every output holds exactly the expected bytes, and nothing is injected."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_locusts.swarm.engine import EngineOptions, SwarmEngine
from airflow_provider_locusts.swarm.shell import LocalShell
from airflow_provider_locusts.swarm.layout import SwarmLayout
from airflow_provider_locusts.swarm.render import render_command_script, render_manager, render_poll
from airflow_provider_locusts.swarm.spec import build_spec
from airflow_provider_locusts.swarm.stage import EnvironmentBuilder, task_list_record

CANARY = "CANARY"

# Each holds something a shell would act on if the value reached it unquoted.
HOSTILE_IDS = [
    "a b",
    "  two  spaces ",
    "it's",
    'say "hi"',
    f"$(touch {CANARY})",
    f"`touch {CANARY}`",
    f"x;touch {CANARY};",
    f"a|touch {CANARY}",
    f"b&&touch {CANARY}",
    f"new\ntouch {CANARY}",
    "tab\there",
    "*",
    "[ab]?",
    "-rf",
    "--help",
    "${PATH}",
    "back\\slash",
    "'; touch CANARY; 'q",
    "\"; touch CANARY; \"",
    "ünï cødé",
    "#hash",
    "~tilde",
    "<id>",
]


def no_canary_anywhere(*roots: Path) -> None:
    for root in roots:
        found = [p for p in root.rglob(CANARY)]
        assert found == [], f"injected command ran: {found}"
    assert not Path(CANARY).exists()


def hostile_root(tmp_path: Path) -> Path:
    """A swarm root whose own path needs quoting too."""
    return tmp_path / f"root dir 'q' \"dq\" $(touch {CANARY}) ;x"


def test_hostile_ids_and_file_names_run_exactly(tmp_path, run_swarm_round):
    inp = tmp_path / "in"
    inp.mkdir()
    contents = {}
    for n, task_id in enumerate(HOSTILE_IDS):
        data = f"line {n} of {task_id!r}\n".encode() + bytes([n, 255, 0, 10])
        (inp / f"in_{task_id}.txt").write_bytes(data)
        contents[task_id] = data
    shared_name = f"shared 'x' $(touch {CANARY}) \"y\".txt"
    (inp / shared_name).write_bytes(b"SHARED\n")
    # one id from a file name that is not UTF-8 (Latin-1 e-acute): it must round-trip to the same bytes
    os.makedirs(inp, exist_ok=True)
    with open(os.path.join(os.fsencode(inp), b"in_caf\xe9.txt"), "wb") as f:
        f.write(b"latin-1 named\n")
    latin_id = os.fsdecode(b"caf\xe9")
    contents[latin_id] = b"latin-1 named\n"

    spec = build_spec(
        command="printf '%s' <id> > out_<id>.txt; cat in_<id>.txt >> out_<id>.txt; cat <shared>s1 >> \"out_<id>.txt\"",
        input_dir=inp,
        task_inputs=["in_<id>.txt"],
        shared_inputs={"s1": shared_name},
        outputs=["out_<id>.txt"],
        output_dir=tmp_path / "out",
        processes=3,
    )
    assert sorted(t.task_id for t in spec.tasks) == sorted(contents)
    assert len({t.folder for t in spec.tasks}) == len(spec.tasks)

    root = hostile_root(tmp_path)
    engine = SwarmEngine(spec, "hostile", str(root), LocalShell(), EngineOptions(heartbeat_interval=1))
    round_ = engine.prepare_round()
    run = run_swarm_round(engine, round_)
    assert run.verdict.lost == []
    assert (run.progress.finished, run.progress.failed) == (len(contents), 0)
    result = engine.gather()

    assert result.failed == [], result.reasons
    assert sorted(result.succeeded) == sorted(contents)
    out = tmp_path / "out"
    for task_id, data in contents.items():
        produced = (out / f"out_{task_id}.txt").read_bytes()
        assert produced == os.fsencode(task_id) + data + b"SHARED\n", task_id
    names = {os.fsdecode(n) for n in os.listdir(os.fsencode(out))}
    assert names == {f"out_{i}.txt" for i in contents} | {"locusts_manifest.hostile.jsonl"}
    no_canary_anywhere(tmp_path)


ARG_VALUES = [
    "$(touch {canary})",
    "`touch {canary}`",
    "'; touch {canary}; '",
    "\"; touch {canary}; \"",
    "a;touch {canary}",
    "x\ntouch {canary}\n",
    "  lead and trail  ",
    "*",
    "/*",
    "-e",
    "--",
    "",
    "\\n not a newline",
    "%s %d %%",
    "${HOME} $HOME",
    "ünicode ✓",
    "\t\r\x01\x7f",
    "!!",
    "{a,b}",
]


def test_hostile_argument_values_run_exactly(tmp_path, run_swarm_round):
    canary = tmp_path / CANARY
    values = [v.replace("{canary}", str(canary)) for v in ARG_VALUES]
    spec = build_spec(
        command="printf '%s' <arg0> > val_<id>.txt; printf '%s' \"<arg1>\" > second_<id>.txt",
        args=[[v, v[::-1]] for v in values],
        outputs=["val_<id>.txt", "second_<id>.txt"],
        output_dir=tmp_path / "out",
        processes=4,
    )
    engine = SwarmEngine(spec, "hostile-args", str(hostile_root(tmp_path)), LocalShell(), EngineOptions(heartbeat_interval=1))
    run = run_swarm_round(engine, engine.prepare_round())
    assert run.verdict.lost == []
    result = engine.gather()
    assert result.failed == [], result.reasons
    for i, v in enumerate(values):
        assert (tmp_path / "out" / f"val_{i}.txt").read_bytes() == v.encode(), repr(v)
        assert (tmp_path / "out" / f"second_{i}.txt").read_bytes() == v[::-1].encode(), repr(v)
    assert not canary.exists()
    no_canary_anywhere(tmp_path)


# --- the rendered scripts themselves ------------------------------------------------------


def read_task_list_with_the_managers_own_reader(manager_script: str, task_list: bytes) -> list[list[bytes]]:
    """Run the rendered manager's own _lm_read_task over a task list, in bash: the fields it
    ends up holding, per task (index, folder, id, args..., outputs...)."""
    reader = manager_script[manager_script.index("_lm_read_task() {") :]
    reader = reader[: reader.index("\n}\n") + 3]
    # Into slot 1 every time, as the manager reuses a slot: nothing of the task before may stay.
    script = "declare -A _lm_arg=() _lm_output=()\n" + reader + (
        'while _lm_read_task 1; do printf "%s\\0" "${_lm_index[1]}" "${_lm_folder[1]}" "${_lm_id[1]}" "${_lm_nargs[1]}"; '
        'for ((k = 0; k < _lm_nargs[1]; k++)); do printf "%s\\0" "${_lm_arg[1,$k]}"; done; '
        'printf "%s\\0" "${_lm_noutputs[1]}"; '
        'for ((k = 0; k < _lm_noutputs[1]; k++)); do printf "%s\\0" "${_lm_output[1,$k]}"; done; '
        'printf "\\n\\0"; done'
    )
    out = subprocess.run(["bash", "-c", script], input=task_list, capture_output=True, timeout=10, check=True).stdout
    return [record.split(b"\0")[:-1] for record in out.split(b"\n\0")[:-1]]


def test_values_reach_the_manager_as_data_never_as_script_text(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "sh'ared.txt").write_text("s")
    args = [["x", "$(touch Y)"], ["a\nb", "it's"], ["", "\t-e \\ %s"]]
    spec = build_spec(command="cat <shared>sf <arg1> > o_<id>", args=args,
                      shared_inputs={"sf": inp / "sh'ared.txt"}, outputs=["o_<id>", "sub dir/p_<id>"], output_dir=tmp_path / "out")
    command = render_command_script(spec)
    # The command script: the shared path as a quoted literal, the command referencing variables.
    assert "LOCUSTS_SHARED_sf=\"${LOCUSTS_SWARM_ROOT}/shared/\"" + shlex.quote("sf/sh'ared.txt") + "\n" in command
    assert "export LOCUSTS_SHARED_sf\n" in command
    assert 'cat "${LOCUSTS_SHARED_sf}" "${LOCUSTS_ARG_1}" > o_"${LOCUSTS_ID}"' in command
    assert "touch Y" not in command and "it's" not in command
    assert subprocess.run(["bash", "-n"], input=command.encode(), capture_output=True, timeout=10).returncode == 0
    # The task list: every value, byte for byte, read back by the manager's own reader.
    task_list = b"".join(task_list_record(t) for t in spec.tasks)
    manager = render_manager(SwarmLayout(str(tmp_path / "root")), "r0m0", 2, 5)
    records = read_task_list_with_the_managers_own_reader(manager, task_list)
    expected = [
        [str(t.index).encode(), t.folder.encode(), t.task_id.encode(), str(len(t.args)).encode(), *(a.encode() for a in t.args),
         str(len(t.outputs)).encode(), *(o.encode() for o in t.outputs)]
        for t in spec.tasks
    ]
    assert records == expected


def test_hostile_ids_are_never_in_a_script(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "in_x\nrm -rf y.txt").write_text("s")
    spec = build_spec(command="cat in_<id>.txt", input_dir=inp, task_inputs=["in_<id>.txt"], output_dir=tmp_path / "out")
    root = tmp_path / "root"
    engine = SwarmEngine(spec, "ids", str(root), LocalShell())
    round_ = engine.prepare_round()
    for script in (root / "exec" / "command.sh", Path(engine.layout.manager_file(round_.managers[0], "sh"))):
        assert "rm -rf y" not in script.read_text()
    assert b"x\nrm -rf y\0" in (root / "exec" / "tasks_r0m0").read_bytes()


def test_manager_and_poll_scripts_quote_a_hostile_root():
    layout = SwarmLayout("/tmp/a b/'q'/$(touch Z)")
    manager = render_manager(layout, "r0m0", 3, 2)
    assert "export LOCUSTS_SWARM_ROOT=" + shlex.quote(layout.root) + "\n" in manager
    assert "_lm_max_running=3\n" in manager
    assert "EPOCHSECONDS - _lm_beat >= 2))" in manager  # the heartbeat interval
    poll = render_poll(layout, "direct")
    assert "exec_dir=" + shlex.quote(layout.exec_dir) + "\n" in poll
    for script in (manager, poll):
        assert subprocess.run(["bash", "-n"], input=script.encode(), capture_output=True, timeout=10).returncode == 0


def test_environment_builder_stages_clean_folders(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    for i in range(3):
        (inp / f"in_{i}.txt").write_text(f"{i}")
    (inp / "sh.txt").write_text("shared")
    spec = build_spec(command="cat in_<id>.txt <shared>s", input_dir=inp, task_inputs=["in_<id>.txt"],
                      shared_inputs={"s": "sh.txt"}, output_dir=tmp_path / "out", batch_size=2)
    root = tmp_path / "root"
    b = EnvironmentBuilder(spec, root, str(root), input_staging="copy")
    b.create_root()
    b.stage_shared()
    b.write_task_table()
    b.stage_tasks(spec.tasks)
    assert (root / "shared/s/sh.txt").read_text() == "shared"
    assert (root / "work/batch_1/task_2/in_2.txt").read_text() == "2"
    # a leftover from an earlier attempt is gone when the task is staged again
    (root / "work/batch_0/task_0/old_output.txt").write_text("stale")
    b.stage_tasks(spec.tasks[:1])
    assert sorted(p.name for p in (root / "work/batch_0/task_0").iterdir()) == ["in_0.txt"]
    assert len((root / "exec/tasks.jsonl").read_text().splitlines()) == 3


# --- property: any argument value reaches the task unchanged -------------------------------

VALUE = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=40),
    st.sampled_from([v.replace("{canary}", "/nonexistent-dir/" + CANARY) for v in ARG_VALUES]),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(VALUE, min_size=1, max_size=8))
def test_any_argument_value_reaches_the_task_unchanged(values, run_swarm_round):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        spec = build_spec(
            command="printf '%s' <arg0> > a_<id>.txt; printf '%s' \"<arg0>\" > b_<id>.txt",
            args=[[v] for v in values],
            outputs=["a_<id>.txt", "b_<id>.txt"],
            output_dir=tmp / "out",
            processes=4,
        )
        engine = SwarmEngine(spec, "prop", str(tmp / "root"), LocalShell(), EngineOptions(heartbeat_interval=1))
        run = run_swarm_round(engine, engine.prepare_round(), timeout=30)
        assert run.verdict.lost == []
        result = engine.gather()
        assert result.failed == []
        for i, v in enumerate(values):
            assert (tmp / "out" / f"a_{i}.txt").read_bytes() == v.encode()
            assert (tmp / "out" / f"b_{i}.txt").read_bytes() == v.encode()
        no_canary_anywhere(tmp)
