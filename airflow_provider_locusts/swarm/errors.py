"""The core's exceptions: each message says what happened and what to fix."""

from __future__ import annotations


class SwarmSpecError(ValueError):
    """A swarm description that cannot run; the message says what to fix."""


class SwarmExecutionError(RuntimeError):
    """A step on the swarm's host failed; the message carries what the host said."""


class SwarmNotFoundError(SwarmExecutionError):
    """The swarm root is not there (or not visible from where the step ran)."""


class OutputCollisionError(FileExistsError):
    """output_dir already holds a file this swarm would write."""


class SwarmConnectionError(SwarmExecutionError):
    """The swarm's host could not be reached (worth retrying with a new connection)."""


class SwarmPreflightError(SwarmExecutionError):
    """The swarm's host is not ready for the swarm (permissions, commands, shared folder)."""


class SwarmStartError(SwarmExecutionError):
    """The managers of a round ended without starting any task; the message says why."""


class SwarmNoSpaceError(SwarmExecutionError):
    """Not enough space to stage the swarm; the message gives the folder and the figures."""
