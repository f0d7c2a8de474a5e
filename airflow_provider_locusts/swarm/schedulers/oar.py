"""OAR (2.5): one `oarsub -S` job per manager; `#OAR` directives from `oar_options`.

oarsub reads the `#OAR` lines of the job script itself (no shell), one option each; the
resources ask for one node and `processes` cores unless told otherwise. Submitting, job
states and their meaning, deleting and describing jobs: templates/scheduler_oar.sh.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from airflow_provider_locusts.swarm.command import SwarmSpecError
from airflow_provider_locusts.swarm.schedulers.base import Scheduler, check_extra, check_plain, check_unknown

OAR_OPTIONS = ("walltime", "cores", "resources", "queue", "project", "property", "types", "extra")
_WALLTIME = re.compile(r"^[0-9]{1,5}(:[0-5]?[0-9]){0,2}$")
# A resource hierarchy such as /nodes=1/core=4 or /nodes=1/cpu=1/core=2.
_RESOURCES = re.compile(r"^(/[A-Za-z_][A-Za-z0-9_]*=([0-9]+|ALL|BEST|MAX))+$")
# An SQL-like property filter (oarsub -p), e.g. "cluster='a' AND mem > 4000": OAR checks it
# itself; no shell or line characters.
_PROPERTY = re.compile(r"^[A-Za-z0-9_.,:=<>!'()% +-]+$")
_WORD = re.compile(r"^[A-Za-z0-9_.-]+$")

def oar_directives(options: Mapping[str, object] | None, processes: int) -> list[str]:
    """The `#OAR` option lines (without `#OAR `) for one manager job."""
    options = dict(options or {})
    check_unknown("oar_options", options, OAR_OPTIONS)
    if options.get("resources") and options.get("cores") is not None:
        raise SwarmSpecError("oar_options: give either 'cores' or 'resources' (a whole resource request), not both.")
    if options.get("resources"):
        resources = str(options["resources"])
        if not _RESOURCES.match(resources):
            raise SwarmSpecError(
                f"oar_options['resources'] = {resources!r} is not an OAR resource hierarchy such as '/nodes=1/core=4'."
            )
    else:
        cores = options.get("cores", processes)
        if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
            raise SwarmSpecError(f"oar_options['cores'] must be an integer >= 1, got {cores!r}.")
        resources = f"/nodes=1/core={cores}"
    walltime = options.get("walltime")
    if walltime not in (None, ""):
        walltime = str(walltime)
        if not _WALLTIME.match(walltime):
            raise SwarmSpecError(f"oar_options['walltime'] = {walltime!r} is not a walltime: hours[:minutes[:seconds]], e.g. '2:00:00'.")
        resources += f",walltime={walltime}"
    directives = [f"-l {resources}"]
    for key, flag in (("queue", "-q"), ("project", "--project")):
        value = options.get(key)
        if value not in (None, ""):
            text = check_plain("oar_options", key, value)
            if not _WORD.match(text):
                raise SwarmSpecError(f"oar_options[{key!r}] = {text!r} must be a name of letters, digits, '.', '_' or '-'.")
            directives.append(f"{flag} {text}")
    prop = options.get("property")
    if prop not in (None, ""):
        text = str(prop)
        if not _PROPERTY.match(text):
            raise SwarmSpecError(
                f"oar_options['property'] = {text!r} is not a property filter OAR takes here: letters, digits, "
                "spaces, quotes ', comparisons and parentheses only, on one line."
            )
        directives.append(f"-p {text}")
    types = options.get("types") or []
    if isinstance(types, str) or not isinstance(types, Sequence):
        raise SwarmSpecError("oar_options['types'] must be a list of job types, e.g. ['besteffort'].")
    for job_type in types:
        text = str(job_type)
        if not _WORD.match(text):
            raise SwarmSpecError(f"oar_options['types'] entry {text!r} must be a job type name such as 'besteffort'.")
        directives.append(f"-t {text}")
    for line in check_extra("oar_options", options.get("extra"), "--checkpoint 600", "oarsub"):
        if any(c in line for c in "`$;&|<>\\\""):
            raise SwarmSpecError(f"oar_options['extra'] line {line!r} holds shell characters.")
        directives.append(line)
    return directives


class OarScheduler(Scheduler):
    name = "oar"
    commands = ("oarsub", "oarstat", "oardel")
    options_name = "oar_options"
    job_script_kind = "oar"
    job_script_template = "oar.sh.j2"
    # The same tables as scheduler_class in templates/scheduler_oar.sh: OAR ends a job that was
    # deleted, hit its walltime or lost its node in Error.
    active_states = frozenset({"Waiting", "Hold", "toLaunch", "Launching", "toAckReservation", "Running", "Finishing", "Suspended", "Resuming"})
    ended_early_states = frozenset({"Error", "toError"})

    def directives(self, options: Mapping[str, object] | None, processes: int) -> list[str]:
        return oar_directives(options, processes)
