"""The SSH + SLURM test cluster of tests/cluster/ as the tests see it: its cluster.env
values, an OpenSSH client for it (not the code under test) and SLURM job look-ups.
No Airflow import here."""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ENV_LINE = re.compile(r"^([A-Z_][A-Z0-9_]*)='([^']*)'$")
CONN_ID = "locusts_test_ssh"
LIVE_JOB_STATES = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED")
REQUIRED_KEYS = {"AIRFLOW_CONN_LOCUSTS_TEST_SSH", "LOCUSTS_SHARED_DIR", "LOCUSTS_SSH_KEY", "LOCUSTS_SSH_PORT"}


def cluster_state_dir() -> Path:
    return Path(os.environ.get("LOCUSTS_CLUSTER_DIR") or "/tmp/locusts-cluster")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def skip_or_fail(message: str, fail_as_root: bool = False) -> None:
    """Skip on a developer's machine; fail in CI, which must never pass by skipping, and with
    `fail_as_root` also as root, who can start what is missing (as tests/run.sh does)."""
    if in_ci():
        pytest.fail(f"CI must not skip these tests: {message}", pytrace=False)
    if fail_as_root and os.geteuid() == 0:
        pytest.fail(f"running as root, these tests must not be skipped: {message}", pytrace=False)
    pytest.skip(message)


@dataclass(frozen=True)
class Cluster:
    env: dict[str, str]

    @property
    def shared_dir(self) -> Path:
        return Path(self.env["LOCUSTS_SHARED_DIR"])

    @property
    def state_dir(self) -> Path:
        return Path(self.env.get("LOCUSTS_CLUSTER_DIR") or cluster_state_dir())

    def ssh(self, command: str, timeout: float = 30, check: bool = True, retry_for: float = 0) -> subprocess.CompletedProcess:
        """Run a shell command on the SSH host as `locusts` with the OpenSSH client (not the code under test).
        `retry_for`: seconds during which a failure of ssh itself (exit 255: connection
        refused while another suite stops sshd on purpose, say) is retried."""
        env = self.env
        argv = [
            "ssh", "-p", env["LOCUSTS_SSH_PORT"], "-i", env["LOCUSTS_SSH_KEY"],
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={env['LOCUSTS_SSH_KNOWN_HOSTS']}", "-o", "ConnectTimeout=10",
            f"{env['LOCUSTS_SSH_USER']}@{env['LOCUSTS_SSH_HOST']}", command,
        ]
        deadline = time.monotonic() + retry_for
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        while result.returncode == 255 and time.monotonic() < deadline:
            time.sleep(2)
            result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"ssh {command!r} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def job_state(self, job_id: str) -> str | None:
        """JobState from `scontrol show job ID` (None once SLURM forgot the job)."""
        out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30).stdout
        match = re.search(r"JobState=([A-Z_]+)", out)
        return match.group(1) if match else None

    def jobs_named(self, fragment: str) -> list[tuple[str, str]]:
        """(job id, state) of the jobs squeue lists whose name contains `fragment`."""
        out = subprocess.run(
            ["squeue", "-h", "-t", "all", "-o", "%i|%j|%T"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        jobs = []
        for line in out.splitlines():
            job_id, name, state = line.split("|", 2)
            if fragment in name:
                jobs.append((job_id, state))
        return jobs

    def live_jobs_named(self, fragment: str) -> list[tuple[str, str]]:
        return [(j, s) for j, s in self.jobs_named(fragment) if s in LIVE_JOB_STATES]

    def cancel_jobs_named(self, fragment: str) -> list[str]:
        """scancel every queued or running job whose name contains `fragment`."""
        leftovers = [job for job, _ in self.live_jobs_named(fragment)]
        if leftovers:
            subprocess.run(["scancel", *leftovers], check=False, timeout=30)
        return leftovers


def read_cluster_env() -> tuple[Path, dict[str, str] | None]:
    """(cluster.env path, its values) — values None when the file does not exist."""
    env_file = cluster_state_dir() / "cluster.env"
    if not env_file.is_file():
        return env_file, None
    values = {}
    for line in env_file.read_text().splitlines():
        match = ENV_LINE.match(line.strip())
        if match:
            values[match.group(1)] = match.group(2)
    return env_file, values


def running_cluster() -> Cluster:
    """The running test cluster. Skips when not root; when it is not started, skips only as
    another user outside CI (as root, or in CI, the cluster tests must never be skipped)."""
    env_file, values = read_cluster_env()
    if values is None:
        skip_or_fail(
            f"the SSH + SLURM test cluster is not running ({env_file} is missing): run tests/cluster/start.sh",
            fail_as_root=True,
        )
    if os.geteuid() != 0:
        skip_or_fail("the cluster tests run as root (the Airflow side), as CI does")
    missing = REQUIRED_KEYS - set(values)
    if missing:
        pytest.fail(f"{env_file} lacks {', '.join(sorted(missing))}: rerun tests/cluster/start.sh", pytrace=False)
    return Cluster(values)
