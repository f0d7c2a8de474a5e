"""Where shell snippets run: the machine that holds the swarm root and starts its managers.

The engine speaks to the swarm only through a Shell: a local one here, SSH ones in the
hook. Scripts go to `bash -s` on stdin, so nothing but a fixed command line crosses a shell.
"""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import dataclass
from typing import Protocol

from airflow_provider_locusts.swarm.errors import SwarmExecutionError, SwarmNotFoundError

# Exit code of a script that found no swarm root where it looked (see scripts.py).
EXIT_NO_SWARM_ROOT = 66


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: bytes
    stderr: bytes

    def check(self, what: str) -> CommandResult:
        if self.returncode != 0:
            detail = self.stderr.decode(errors="replace").strip() or self.stdout.decode(errors="replace").strip()
            error = SwarmNotFoundError if self.returncode == EXIT_NO_SWARM_ROOT else SwarmExecutionError
            raise error(f"{what} failed (exit code {self.returncode}): {detail or 'no output'}")
        return self


class Shell(Protocol):
    """Runs bash scripts where the swarm root lives (blocking)."""

    def run_script(self, script: str, args: list[str] | None = None, stdin_data: bytes | None = None, timeout: float | None = None) -> CommandResult: ...

    def reset(self) -> None:
        """Forget a connection that may be broken; the next call opens a new one."""


class AsyncShell(Protocol):
    """Runs bash scripts where the swarm root lives, without blocking an event loop."""

    async def run_script(self, script: str, args: list[str] | None = None, timeout: float | None = None) -> CommandResult: ...

    async def close(self) -> None: ...


def bash_command(args: list[str] | None) -> list[str]:
    """argv that runs a script read from stdin with positional arguments."""
    return ["bash", "-s", "--", *(args or [])]


class LocalShell:
    """Runs scripts on this machine."""

    def reset(self) -> None:
        return None

    def run_script(self, script: str, args: list[str] | None = None, stdin_data: bytes | None = None, timeout: float | None = None) -> CommandResult:
        if stdin_data is not None:
            # The script itself must travel another way when stdin carries data.
            argv = ["bash", "-c", script, "locusts", *(args or [])]
            payload = stdin_data
        else:
            argv = bash_command(args)
            payload = script.encode()
        proc = subprocess.run(argv, input=payload, capture_output=True, timeout=timeout, check=False)
        return CommandResult(proc.returncode, proc.stdout, proc.stderr)


class AsyncLocalShell:
    """Runs scripts on this machine from an asyncio event loop (a subprocess, never blocking the loop)."""

    async def run_script(self, script: str, args: list[str] | None = None, timeout: float | None = None) -> CommandResult:
        proc = await asyncio.create_subprocess_exec(
            *bash_command(args),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(script.encode()), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        return CommandResult(proc.returncode or 0, out, err)

    async def close(self) -> None:
        return None


__all__ = [
    "EXIT_NO_SWARM_ROOT",
    "AsyncLocalShell",
    "AsyncShell",
    "CommandResult",
    "LocalShell",
    "Shell",
    "SwarmExecutionError",
    "bash_command",
]
