"""The provider's exceptions. The core's (swarm/errors.py) are re-exported, so DAG code can
catch everything the provider raises from one module."""

from __future__ import annotations

from airflow.exceptions import AirflowException

from airflow_provider_locusts.swarm.errors import (
    OutputCollisionError,
    SwarmConnectionError,
    SwarmExecutionError,
    SwarmNoSpaceError,
    SwarmNotFoundError,
    SwarmPreflightError,
    SwarmSpecError,
    SwarmStartError,
)

__all__ = [
    "LocalModeRefusedError",
    "OutputCollisionError",
    "SwarmConnectionError",
    "SwarmExecutionError",
    "SwarmLostTrackError",
    "SwarmNoSpaceError",
    "SwarmNotFoundError",
    "SwarmPreflightError",
    "SwarmSpecError",
    "SwarmStartError",
    "SwarmTasksFailedError",
]


class SwarmLostTrackError(AirflowException):
    """Airflow could not watch the swarm to its end; the message says whether it may still run."""


class SwarmTasksFailedError(AirflowException):
    """More tasks failed than max_failed_fraction allows; the message lists the first ones."""


class LocalModeRefusedError(SwarmSpecError):
    """Local mode on a deployment whose other machines could not see the swarm."""
