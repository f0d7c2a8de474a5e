"""The OAR scheduler without a cluster: oar_options validation (every bad value refused with
one clear error, nothing reaching a job script unchecked) and the bash functions of
templates/scheduler_oar.sh reading what OAR 2.5.9's commands print (outputs recorded on the
OAR test cluster of tests/oar/; tests/oar_e2e runs them against the real OAR)."""

from __future__ import annotations

import subprocess

import pytest

from airflow_provider_locusts.swarm.errors import SwarmSpecError
from airflow_provider_locusts.swarm.render import host_script
from airflow_provider_locusts.swarm.schedulers import SCHEDULERS, get_scheduler
from airflow_provider_locusts.swarm.schedulers.oar import oar_directives


def test_defaults_ask_one_node_with_a_core_per_process():
    assert oar_directives(None, 4) == ["-l /nodes=1/core=4"]


def test_every_option_becomes_one_oar_line():
    options = {
        "cores": 2, "walltime": "1:30:00", "queue": "default", "project": "lab-1", "property": "cluster='a' AND mem > 4000",
        "types": ["besteffort", "idempotent"], "extra": ["--checkpoint 600"],
    }
    assert oar_directives(options, 8) == [
        "-l /nodes=1/core=2,walltime=1:30:00", "-q default", "--project lab-1", "-p cluster='a' AND mem > 4000",
        "-t besteffort", "-t idempotent", "--checkpoint 600",
    ]
    assert oar_directives({"resources": "/nodes=1/cpu=1/core=4", "walltime": "2"}, 4) == ["-l /nodes=1/cpu=1/core=4,walltime=2"]


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"partition": "x"}, "unknown oar_options partition"),
        ({"walltime": "1h"}, "is not a walltime"),
        ({"walltime": "1:00:00\n#OAR -q admin"}, "is not a walltime"),
        ({"cores": 0}, "'cores'] must be an integer >= 1"),
        ({"cores": "2"}, "'cores'] must be an integer >= 1"),
        ({"cores": True}, "'cores'] must be an integer >= 1"),
        ({"cores": 2, "resources": "/nodes=1/core=2"}, "either 'cores' or 'resources'"),
        ({"resources": "/nodes=1/core=2; rm -rf /"}, "is not an OAR resource hierarchy"),
        ({"resources": "nodes=1"}, "is not an OAR resource hierarchy"),
        ({"queue": "a b"}, "not a plain value"),
        ({"queue": "$(id)"}, "not a plain value"),
        ({"project": "x/y"}, "must be a name of letters"),
        ({"property": "a='1'; `id`"}, "is not a property filter"),
        ({"property": "a='1'\n#OAR -q admin"}, "is not a property filter"),
        ({"types": "besteffort"}, "must be a list of job types"),
        ({"types": ["best effort"]}, "must be a job type name"),
        ({"extra": "--checkpoint 600"}, "must be a list of oarsub options"),
        ({"extra": ["-q a\n#OAR -q b"]}, "one oarsub option starting with '-'"),
        ({"extra": ["checkpoint"]}, "one oarsub option starting with '-'"),
        ({"extra": ["--notify exec:$(id)"]}, "holds shell characters"),
    ],
)
def test_bad_oar_options_are_refused_clearly(options, words):
    with pytest.raises(SwarmSpecError, match=words.replace("(", r"\(").replace("[", r"\[")):
        oar_directives(options, 2)


def test_the_oar_scheduler_is_registered_with_the_commands_the_preflight_checks():
    assert SCHEDULERS == ("direct", "slurm", "oar")
    oar = get_scheduler("oar")
    assert oar.commands == ("oarsub", "oarstat", "oardel")
    assert oar.options_name == "oar_options"
    with pytest.raises(SwarmSpecError, match="scheduler must be one of direct, slurm, oar, got 'pbs'"):
        get_scheduler("pbs")


def test_job_script_has_the_oar_lines_and_quotes_the_manager():
    text = get_scheduler("oar").job_script(
        manager="r0m1", swarm_id="ex.1", root="/scratch/ex.1", log="/scratch/ex.1/exec/manager_r0m1.log",
        manager_script="/scratch/ex.1/exec/manager_r0m1.sh", directives=["-l /nodes=1/core=2"], setup=["module load x"], container="",
    )
    lines = text.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"  # oarsub -S skips the first line: its #OAR lines follow
    assert "#OAR -n locusts-r0m1-ex.1" in lines
    assert "#OAR -O /scratch/ex.1/exec/manager_r0m1.log" in lines and "#OAR -E /scratch/ex.1/exec/manager_r0m1.log" in lines
    assert "#OAR -l /nodes=1/core=2" in lines
    assert "module load x" in lines
    assert lines[-1] == "exec  bash /scratch/ex.1/exec/manager_r0m1.sh"
    with pytest.raises(SwarmSpecError, match="cannot be used with scheduler='oar'"):
        get_scheduler("oar").job_script(
            manager="r0m0", swarm_id="s", root="/scratch/with space", log="/x.log", manager_script="/x.sh",
            directives=[], setup=[], container="",
        )


# What OAR 2.5.9 printed on the test cluster.
OARSUB_OK = "[ADMISSION RULE] Modify resource description with type constraints\nOAR_JOB_ID=42\n"
OARSUB_REJECTED = "[ADMISSION RULE] root and oar users are not allowed to submit jobs.\n"
OARSTAT_S = "1: Terminated\n2: Running\n3: Waiting\n"
OARSTAT_F_DELETED = """Job_Id: 2
    name = locusts-m0-abc
    owner = locusts
    state = Error
    wanted_resources = -l "{type = 'default'}/network_address=1/core=1,walltime=0:5:0" 
    events = 
2026-11-26 00:33:47> FRAG_JOB_REQUEST:User locusts requested to frag the job 2
2026-11-26 00:33:48> SEND_KILL_JOB:[Leon] Send the kill signal to oarexec on localhost for job 2
2026-11-26 00:33:50> SWITCH_INTO_ERROR_STATE:[bipbip 2] Ask to change the job state
"""
OARSTAT_F_SETUP_FAILED = """Job_Id: 5
    state = Terminated
    exit_code = 24832 (97,0,0)
    events = 
2026-11-26 00:40:17> SWITCH_INTO_TERMINATE_STATE:[bipbip 5] Ask to change the job state
"""


def run_functions(body: str, stubs: dict[str, tuple[str, int]]) -> subprocess.CompletedProcess:
    """Run `body` after the OAR functions, with each OAR command replaced by a bash function
    printing its recorded output (and exit code)."""
    defined = "".join(
        f"{name}() {{ printf '%s' {_sq(out)}; return {rc}; }}\n" for name, (out, rc) in stubs.items()
    )
    script = host_script("scheduler_oar.sh") + "\n" + defined + body
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)


def _sq(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def test_submit_reads_the_job_id_from_oarsubs_output():
    ok = run_functions("scheduler_submit /x/manager_r0m0.oar.sh", {"oarsub": (OARSUB_OK, 0)})
    assert (ok.returncode, ok.stdout) == (0, "42\n")
    rejected = run_functions("scheduler_submit /x/manager_r0m0.oar.sh", {"oarsub": (OARSUB_REJECTED, 1)})
    assert rejected.returncode == 1 and "root and oar users are not allowed" in rejected.stderr
    no_id = run_functions("scheduler_submit /x/manager_r0m0.oar.sh", {"oarsub": ("something else\n", 0)})
    assert no_id.returncode == 2 and "oarsub named no OAR_JOB_ID" in no_id.stderr


def test_states_are_read_per_job_and_a_job_oarstat_does_not_list_is_unknown():
    result = run_functions("scheduler_states 1 2 3 9", {"oarstat": (OARSTAT_S, 0)})
    assert result.stdout.splitlines() == ["1 Terminated", "2 Running", "3 Waiting", "9 UNKNOWN"]


@pytest.mark.parametrize(
    ("state", "meaning"),
    [
        ("Waiting", "queued"), ("Hold", "queued"), ("toLaunch", "queued"), ("Launching", "queued"), ("toAckReservation", "queued"),
        ("Running", "active"), ("Finishing", "active"), ("Suspended", "active"), ("Resuming", "active"), ("UNKNOWN", "active"),
        ("Terminated", "ended"), ("Error", "ended"), ("toError", "ended"),
    ],
)
def test_each_oar_state_has_its_meaning_for_the_swarm(state, meaning):
    assert run_functions(f"scheduler_class {state}", {}).stdout == f"{meaning}\n"


def test_info_names_the_state_the_events_and_the_exit_code():
    deleted = run_functions("scheduler_info 2", {"oarstat": (OARSTAT_F_DELETED, 0)})
    assert deleted.stdout == "Error FRAG_JOB_REQUEST,SEND_KILL_JOB,SWITCH_INTO_ERROR_STATE -\n"
    failed = run_functions("scheduler_info 5", {"oarstat": (OARSTAT_F_SETUP_FAILED, 0)})
    assert failed.stdout == "Terminated SWITCH_INTO_TERMINATE_STATE 97:0\n"
    unknown = run_functions("scheduler_info 8", {"oarstat": ("", 1)})
    assert unknown.stdout == "- - -\n"


def test_cancel_takes_a_job_already_killed_or_ended_as_done_and_reports_other_failures():
    assert run_functions("scheduler_cancel 2", {"oardel": ("Deleting the job = 2 ...REGISTERED.\n", 0)}).returncode == 0
    already = run_functions("scheduler_cancel 10", {"oardel": ("Cannot frag 10 ; This job was already killed.\n", 1)})
    assert already.returncode == 0
    ended = run_functions("scheduler_cancel 1", {"oardel": ("Cannot frag 1\n", 1), "oarstat": ("1: Terminated\n", 0)})
    assert ended.returncode == 0
    refused = run_functions("scheduler_cancel 77", {"oardel": ("Cannot frag 77 ; You are not the right user.\n", 1), "oarstat": ("77: Running\n", 0)})
    assert refused.returncode == 1 and "You are not the right user" in refused.stderr


def test_the_python_state_tables_agree_with_the_bash_ones():
    oar = get_scheduler("oar")
    for state in oar.active_states:
        assert run_functions(f"scheduler_class {state}", {}).stdout in ("queued\n", "active\n"), state
    for state in oar.ended_early_states:
        assert run_functions(f"scheduler_class {state}", {}).stdout == "ended\n", state


def submit(tmp_path, oarsub_output: str, rc: int) -> subprocess.CompletedProcess:
    """templates/submit.sh with OAR's functions, for managers a and b, oarsub answering as given."""
    for manager in ("a", "b"):
        (tmp_path / f"manager_{manager}.oar.sh").write_text("#!/bin/bash\n")
    stubs = f"oarsub() {{ printf '%s' {_sq(oarsub_output)}; return {rc}; }}\noardel() {{ echo \"$1\" >> {_sq(str(tmp_path / 'deleted'))}; }}\n"
    script = host_script("scheduler_oar.sh") + "\n" + stubs + host_script("submit.sh")
    return subprocess.run(["bash", "-c", script, "submit", str(tmp_path), "oarsub", "a", "b"], capture_output=True, text=True, timeout=30)


def test_submit_records_each_job_id(tmp_path):
    result = submit(tmp_path, OARSUB_OK, 0)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "jobid_a").read_text() == "42\n" and (tmp_path / "jobid_b").read_text() == "42\n"


def test_a_rejected_submission_says_oars_reason_and_records_nothing(tmp_path):
    result = submit(tmp_path, OARSUB_REJECTED, 1)
    assert result.returncode == 1
    assert "oarsub rejected manager a: [ADMISSION RULE] root and oar users are not allowed to submit jobs." in result.stderr
    assert not list(tmp_path.glob("jobid_*"))


def test_an_accepted_submission_without_a_job_id_fails_saying_a_job_may_run(tmp_path):
    result = submit(tmp_path, "something else\n", 0)
    assert result.returncode == 1
    assert "oarsub accepted manager a but named no job id" in result.stderr
    assert "look for a job named locusts-a-*" in result.stderr
    assert not list(tmp_path.glob("jobid_*"))
