"""SLURM settings → `#SBATCH` directives, validated before anything is staged."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from airflow_provider_locusts.swarm.command import SwarmSpecError

# slurm_options key → sbatch long option. `exclusive` is a flag; `extra` holds free lines.
SBATCH_OPTIONS = {
    "partition": "--partition",
    "time": "--time",
    "cpus_per_task": "--cpus-per-task",
    "mem": "--mem",
    "mem_per_cpu": "--mem-per-cpu",
    "constraint": "--constraint",
    "gres": "--gres",
    "account": "--account",
    "qos": "--qos",
    "mail_user": "--mail-user",
    "mail_type": "--mail-type",
}
# sbatch reads #SBATCH lines itself, without a shell: a value must be one plain word.
_PLAIN_VALUE = re.compile(r"^[^\s'\"\\`$;&|<>]+$")


def sbatch_directives(options: Mapping[str, object] | None, processes: int) -> list[str]:
    """The `#SBATCH` option words for one manager job (one node, one task, `processes` CPUs by default)."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(SBATCH_OPTIONS) - {"exclusive", "extra"})
    if unknown:
        known = ", ".join(sorted([*SBATCH_OPTIONS, "exclusive", "extra"]))
        raise SwarmSpecError(f"unknown slurm_options {', '.join(unknown)}: known keys are {known}.")
    options.setdefault("cpus_per_task", processes)
    # --no-requeue: SLURM would otherwise requeue a job whose node failed and its manager
    # would run its whole task list again; a lost manager is rescheduled by the swarm
    # itself, which runs only the tasks that did not finish.
    directives = ["--nodes=1", "--ntasks=1", "--no-requeue"]
    for key, flag in SBATCH_OPTIONS.items():
        value = options.get(key)
        if value is None or value == "":
            continue
        text = str(value)
        if not _PLAIN_VALUE.match(text):
            raise SwarmSpecError(f"slurm_options[{key!r}] = {text!r} is not a plain value: no spaces, quotes or shell characters.")
        directives.append(f"{flag}={text}")
    if options.get("exclusive"):
        directives.append("--exclusive")
    extra = options.get("extra") or []
    if isinstance(extra, str) or not isinstance(extra, Sequence):
        raise SwarmSpecError("slurm_options['extra'] must be a list of sbatch options, e.g. ['--reservation=big'].")
    for line in extra:
        text = str(line).strip()
        if not text.startswith("-") or "\n" in text or "\r" in text:
            raise SwarmSpecError(f"slurm_options['extra'] line {text!r} must be one sbatch option starting with '-', on one line.")
        directives.append(text)
    return directives


def check_setup_lines(setup: Sequence[str] | None) -> list[str]:
    lines = list(setup or [])
    for line in lines:
        if not isinstance(line, str) or "\n" in line:
            raise SwarmSpecError(f"setup line {line!r} must be a single line of shell (one list entry per line).")
    return lines


def check_plain_path(what: str, path: str) -> str:
    """Paths written into #SBATCH lines cannot be quoted: refuse whitespace and quotes."""
    if not _PLAIN_VALUE.match(path):
        raise SwarmSpecError(f"{what} {path!r} cannot be used with SLURM: #SBATCH lines need a path without spaces, quotes or shell characters.")
    return path
