"""The preflight's report, as the host's script prints it, turned into one message that says
what to fix. (The host side is run for real by the cluster tests; an old bash cannot be had
here, so its line is given as the script prints it.)"""

from __future__ import annotations

import subprocess

import pytest

from airflow_provider_locusts.swarm.errors import SwarmPreflightError
from airflow_provider_locusts.swarm.preflight import (
    _message,
    parse_preflight,
    preflight,
)
from airflow_provider_locusts.swarm.shell import LocalShell


def test_an_old_bash_on_the_host_is_named_with_the_fix():
    report = parse_preflight("@account alice alice,users\n@host login1\n@fail bash 4.2.46(2)-release\n@ok commands sbatch\n")
    assert report.failed == {"bash": "4.2.46(2)-release"}
    message = _message(report, "/scratch/alice/swarms/s1", "slurm", None, "remote_root")
    assert "alice" in message and "login1" in message
    assert "bash 4.2.46(2)-release" in message and "4.4 or newer" in message


def test_this_machines_bash_passes_the_check(tmp_path):
    report = preflight(LocalShell(), str(tmp_path / "swarms" / "s1"), "direct")
    version = subprocess.run(["bash", "-c", "echo $BASH_VERSION"], capture_output=True, text=True, check=True).stdout.strip()
    assert report.ok["bash"] == version


def test_every_failed_check_is_in_the_one_error(tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a folder")
    with pytest.raises(SwarmPreflightError, match="cannot create the swarm's folders"):
        preflight(LocalShell(), str(blocked / "s1"), "direct")
