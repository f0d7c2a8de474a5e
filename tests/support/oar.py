"""The OAR test cluster of tests/oar/ as the tests see it: its oar.env values and OAR job
look-ups with OAR's own commands (oarstat, oardel), run as root. No Airflow import here."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.cluster import ENV_LINE, skip_or_fail

# OAR job states in which a job still holds (or waits for) resources.
LIVE_OAR_STATES = ("Waiting", "Hold", "toLaunch", "Launching", "Running", "Finishing", "Suspended", "Resuming", "toAckReservation")


def oar_state_dir() -> Path:
    return Path(os.environ.get("LOCUSTS_OAR_DIR") or "/tmp/locusts-oar")


@dataclass(frozen=True)
class OarCluster:
    env: dict[str, str]

    def job(self, job_id: str) -> dict:
        """`oarstat -f -j ID -J` of one job ({} when OAR does not know it)."""
        out = subprocess.run(["oarstat", "-f", "-j", job_id, "-J"], capture_output=True, text=True, timeout=60).stdout
        try:
            return json.loads(out).get(str(job_id), {})
        except ValueError:
            return {}

    def job_state(self, job_id: str) -> str | None:
        return self.job(job_id).get("state")

    def jobs_named(self, fragment: str) -> list[tuple[str, str]]:
        """(job id, state) of the jobs OAR has not finished whose name contains `fragment`."""
        out = subprocess.run(["oarstat", "-J"], capture_output=True, text=True, timeout=60).stdout
        try:
            jobs = json.loads(out) if out.strip() else {}
        except ValueError:
            return []
        return [(job_id, job["state"]) for job_id, job in jobs.items() if fragment in (job.get("name") or "")]

    def live_jobs_named(self, fragment: str) -> list[tuple[str, str]]:
        return [(j, s) for j, s in self.jobs_named(fragment) if s in LIVE_OAR_STATES]

    def delete(self, job_id: str) -> None:
        """oardel as root: someone else (an administrator) deleting the job."""
        subprocess.run(["oardel", job_id], check=True, capture_output=True, timeout=60)

    def delete_jobs_named(self, fragment: str) -> list[str]:
        leftovers = [job for job, _ in self.live_jobs_named(fragment)]
        for job in leftovers:
            subprocess.run(["oardel", job], check=False, capture_output=True, timeout=60)
        return leftovers


def read_oar_env() -> tuple[Path, dict[str, str] | None]:
    env_file = oar_state_dir() / "oar.env"
    if not env_file.is_file():
        return env_file, None
    values = {}
    for line in env_file.read_text().splitlines():
        match = ENV_LINE.match(line.strip())
        if match:
            values[match.group(1)] = match.group(2)
    return env_file, values


def _almighty_running(state_dir: Path) -> bool:
    pidfile = state_dir / "pids" / "almighty.pid"
    try:
        pid = int(pidfile.read_text().split()[0])
        return Path(f"/proc/{pid}/comm").read_text().strip() == "Almighty"
    except (OSError, ValueError, IndexError):
        return False


def running_oar() -> OarCluster:
    """The running OAR test cluster. Skips when not root; when it is not started, skips only
    as another user outside CI (as root, or in CI, these tests must never be skipped)."""
    env_file, values = read_oar_env()
    if values is None or not _almighty_running(oar_state_dir()):
        skip_or_fail(
            f"the OAR test cluster is not running ({env_file} missing or its Almighty not running): "
            "run tests/oar/install.sh and tests/oar/start.sh as root",
            fail_as_root=True,
        )
    if os.geteuid() != 0:
        skip_or_fail("the OAR tests run as root (the Airflow side), as CI does")
    if not re.fullmatch(r"[0-9]+", values.get("LOCUSTS_OAR_CPUS", "")):
        skip_or_fail(f"{env_file} lacks LOCUSTS_OAR_CPUS: rerun tests/oar/start.sh", fail_as_root=True)
    return OarCluster(values)
