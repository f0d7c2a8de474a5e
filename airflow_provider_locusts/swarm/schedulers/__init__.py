"""The schedulers a swarm's managers can be started by: one module each, behind base.Scheduler."""

from __future__ import annotations

from airflow_provider_locusts.swarm.command import SwarmSpecError
from airflow_provider_locusts.swarm.schedulers.base import DirectScheduler, Scheduler
from airflow_provider_locusts.swarm.schedulers.oar import OarScheduler
from airflow_provider_locusts.swarm.schedulers.slurm import SlurmScheduler

_ALL: dict[str, Scheduler] = {s.name: s for s in (DirectScheduler(), SlurmScheduler(), OarScheduler())}
SCHEDULERS = tuple(_ALL)


def get_scheduler(name: str) -> Scheduler:
    try:
        return _ALL[name]
    except (KeyError, TypeError):
        raise SwarmSpecError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {name!r}.") from None


# Every scheduler's names for a job not ended yet / ended early (the names do not clash).
ACTIVE_JOB_STATES = frozenset().union(*(s.active_states for s in _ALL.values()))
ENDED_EARLY_JOB_STATES = frozenset().union(*(s.ended_early_states for s in _ALL.values()))


def job_schedulers() -> list[Scheduler]:
    """The schedulers that submit jobs (all but "direct")."""
    return [s for s in _ALL.values() if s.job_script_kind]
