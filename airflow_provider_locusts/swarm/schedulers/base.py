"""What every scheduler supplies to the engine: one seam, one module per scheduler.

A scheduler says
- which commands the swarm's account needs (checked by the preflight);
- how its options become job directives (validated before anything is staged), and the job
  script that runs one manager on one node;
- the bash functions the host scripts call (templates/scheduler_<name>.sh): submit a job
  script and print its id, print the states of jobs, classify a state (queued, active,
  ended), cancel a job, and describe a job that ended (state, reason, exit code).

The host scripts (submit.sh, poll.sh, cancel.sh, diagnose.sh) are the same for every
scheduler; they call these functions only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from airflow_provider_locusts.swarm.command import SwarmSpecError
from airflow_provider_locusts.swarm.render import host_script, render

# Job directives are read by the scheduler itself, without a shell: one plain word each.
PLAIN_VALUE = re.compile(r"^[^\s'\"\\`$;&|<>]+$")


class Scheduler:
    name = ""
    commands: tuple[str, ...] = ()
    options_name = ""  # the operator parameter holding this scheduler's options ("" = none)
    job_script_kind = ""  # layout.manager_file kind of the job script ("" = started directly)
    job_script_template = ""
    # Job states (as its commands name them) of a job not ended yet, and of a job ended early
    # (its manager's unfinished tasks were cut off, even when the manager wrote its done file).
    active_states: frozenset[str] = frozenset()
    ended_early_states: frozenset[str] = frozenset()

    def directives(self, options: Mapping[str, object] | None, processes: int) -> list[str]:
        """The job directives for one manager; SwarmSpecError for any bad option."""
        if options:
            raise SwarmSpecError(f"scheduler={self.name!r} takes no scheduler options.")
        return []

    def host_functions(self) -> str:
        """The bash functions of templates/scheduler_<name>.sh."""
        return host_script(f"scheduler_{self.name}.sh")

    def job_script(
        self,
        manager: str,
        swarm_id: str,
        root: str,
        log: str,
        manager_script: str,
        directives: Sequence[str],
        setup: Sequence[str],
        container: str,
    ) -> str:
        return render(
            self.job_script_template,
            manager=manager,
            swarm_id=swarm_id,
            root=check_plain_path("the swarm root", root, self.name),
            log=check_plain_path("the manager's log", log, self.name),
            manager_script=manager_script,
            directives=directives,
            setup=check_setup_lines(setup),
            container=container,
        )


class DirectScheduler(Scheduler):
    """Managers started detached on the host (setsid), no batch scheduler."""

    name = "direct"
    commands = ("setsid",)


def check_setup_lines(setup: Sequence[str] | None) -> list[str]:
    lines = list(setup or [])
    for line in lines:
        if not isinstance(line, str) or "\n" in line:
            raise SwarmSpecError(f"setup line {line!r} must be a single line of shell (one list entry per line).")
    return lines


def check_plain_path(what: str, path: str, scheduler: str = "slurm") -> str:
    """Paths written into job directives cannot be quoted: refuse whitespace and quotes."""
    if not PLAIN_VALUE.match(path):
        raise SwarmSpecError(
            f"{what} {path!r} cannot be used with scheduler={scheduler!r}: job directives need a path without "
            "spaces, quotes or shell characters."
        )
    return path


def check_plain(options_name: str, key: str, value: object) -> str:
    text = str(value)
    if not PLAIN_VALUE.match(text):
        raise SwarmSpecError(f"{options_name}[{key!r}] = {text!r} is not a plain value: no spaces, quotes or shell characters.")
    return text


def check_unknown(options_name: str, options: Mapping[str, object], known: Sequence[str]) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise SwarmSpecError(f"unknown {options_name} {', '.join(map(str, unknown))}: known keys are {', '.join(sorted(known))}.")


def check_extra(options_name: str, extra: object, example: str, tool: str) -> list[str]:
    """Free option lines: each one option starting with '-', on one line."""
    extra = extra or []
    if isinstance(extra, str) or not isinstance(extra, Sequence):
        raise SwarmSpecError(f"{options_name}['extra'] must be a list of {tool} options, e.g. [{example!r}].")
    lines = []
    for line in extra:
        text = str(line).strip()
        if not text.startswith("-") or "\n" in text or "\r" in text:
            raise SwarmSpecError(f"{options_name}['extra'] line {text!r} must be one {tool} option starting with '-', on one line.")
        lines.append(text)
    return lines
