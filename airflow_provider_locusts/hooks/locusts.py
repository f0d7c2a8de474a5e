"""LocustsHook and LocustsAsyncHook: a swarm's verbs — stage, start, poll, cancel, reschedule,
gather — on this machine or on a host reached with an Airflow SSH connection.

The blocking hook (operator, api-server) runs over the SSH provider's SSHHook (paramiko);
the async one (trigger) over SSHHookAsync (asyncssh), sharing one connection per host in
an event loop. Both run the same host commands (swarm/host_commands.py), so what a
worker and the triggerer do to a swarm is defined once.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.providers.ssh.hooks.ssh import SSHHook
from airflow.sdk import BaseHook

from airflow_provider_locusts.hooks.ssh_shell import (
    TRANSIENT_ERRORS,
    AsyncSSHShell,
    SSHShell,
    SSHTarTransfer,
)
from airflow_provider_locusts.swarm.engine import EngineOptions, SwarmEngine
from airflow_provider_locusts.swarm.handle import SwarmHandle
from airflow_provider_locusts.swarm.host_commands import (
    CancelReport,
    PollRequest,
    WaitedPoll,
    cancel_command,
    parse_cancel_output,
    parse_poll_wait,
    poll_command,
    poll_wait_command,
)
from airflow_provider_locusts.swarm.layout import SwarmLayout
from airflow_provider_locusts.swarm.progress import PollResult, parse_poll_output
from airflow_provider_locusts.swarm.shell import AsyncLocalShell, AsyncShell, CommandResult, LocalShell, Shell
from airflow_provider_locusts.swarm.spec import SwarmSpec

__all__ = ["TRANSIENT_ERRORS", "LocustsAsyncHook", "LocustsHook"]


class LocustsHook(BaseHook):
    """Act on swarms, locally or over an SSH connection (blocking).

    :param ssh_conn_id: Airflow SSH connection of the host that runs the swarm; None: this machine
    :param work_root: local folder for the scratch copies SSH copy mode stages and gathers through
    """

    conn_name_attr = "ssh_conn_id"
    default_conn_name = "ssh_default"
    conn_type = "ssh"
    hook_name = "Locusts"

    def __init__(self, ssh_conn_id: str | None = None, work_root: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ssh_conn_id = ssh_conn_id
        self.work_root = work_root

    @cached_property
    def shell(self) -> Shell:
        if self.ssh_conn_id is None:
            return LocalShell()
        return SSHShell(SSHHook(ssh_conn_id=self.ssh_conn_id))

    def close(self) -> None:
        """Close the SSH connection, if one was opened (a later verb opens a new one)."""
        shell = self.__dict__.get("shell")
        if shell is not None:
            shell.reset()

    # --- engines: the verbs that need the swarm's files --------------------------------------
    @contextmanager
    def engine(self, handle: SwarmHandle, spec: SwarmSpec | None = None, options: EngineOptions | None = None) -> Iterator[SwarmEngine]:
        """The engine of the swarm `handle` names. With `spec` (and `options`), it can stage a
        new try's round; without, it works from the root alone. In SSH copy mode it works
        through a scratch folder of its own, removed on exit: no copy outlives the step."""
        local_root, scratch, transfer = None, False, None
        if handle.copy_mode:
            base = Path(self.work_root or tempfile.gettempdir())
            base.mkdir(parents=True, exist_ok=True)
            local_root = Path(tempfile.mkdtemp(prefix=f"{handle.swarm_id[:60]}.", dir=base))
            os.chmod(local_root, 0o755)
            scratch, transfer = True, SSHTarTransfer(self.shell)
        elif handle.view is not None:
            local_root = Path(handle.view)
        if spec is not None:
            engine = SwarmEngine(
                spec, handle.swarm_id, handle.root, self.shell, options or EngineOptions(), local_root=local_root,
                transfer=transfer, output_dir=handle.output_dir, output_dir_on_host=handle.output_dir_on_host,
                scratch=scratch,
            )
        else:
            engine = SwarmEngine.attach(
                handle.root, self.shell, local_root=local_root, transfer=transfer,
                output_dir=handle.output_dir or None, output_dir_on_host=handle.output_dir_on_host, scratch=scratch,
            )
        try:
            yield engine
        finally:
            engine.close()

    # --- verbs that need no files: one command each -------------------------------------------
    def poll(self, handle: SwarmHandle, offsets: dict[str, int | None], timeout: float = 120) -> PollResult:
        script, args = poll_command(SwarmLayout(handle.root), offsets)
        return parse_poll_output(self.run(script, args, timeout).check("polling the swarm").stdout)

    def cancel(self, handle: SwarmHandle, managers: list[str] | None = None) -> CancelReport:
        """Stop `managers` (default: those of every round) and their tasks; raises when some
        could not be stopped."""
        if managers is None:
            with self.engine(handle) as engine:
                return engine.cancel()
        script, args = cancel_command(SwarmLayout(handle.root), managers)
        result = self.run(script, args, timeout=120)
        return parse_cancel_output(result.returncode, result.stdout, result.stderr, handle.root)

    def run(self, script: str, args: list[str], timeout: float | None = None) -> CommandResult:
        return self.shell.run_script(script, args, timeout=timeout)

    def reset(self) -> None:
        """Drop a connection that may be broken; the next command opens a new one."""
        self.shell.reset()


class LocustsAsyncHook(BaseHook):
    """The verbs a trigger needs (poll, cancel), without blocking the triggerer's event loop.

    :param ssh_conn_id: Airflow SSH connection of the host that runs the swarm; None: this machine
    """

    conn_name_attr = "ssh_conn_id"
    default_conn_name = "ssh_default"
    conn_type = "ssh"
    hook_name = "Locusts (async)"

    def __init__(self, ssh_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ssh_conn_id = ssh_conn_id
        self.shell: AsyncShell = AsyncLocalShell() if ssh_conn_id is None else AsyncSSHShell(ssh_conn_id)

    async def run(self, script: str, args: list[str], timeout: float | None = None) -> CommandResult:
        return await self.shell.run_script(script, args, timeout=timeout)

    async def poll_wait(self, request: PollRequest, wait: float, timeout: float = 120) -> WaitedPoll:
        """One swarm's waiting poll (up to `wait` s on the host, see templates/poll_wait.sh).
        Over SSH it travels with the polls of the connection's other triggers, as one command."""
        batched = getattr(self.shell, "poll_wait", None)
        if batched is not None:
            return await batched(request, wait, timeout)
        result = await self.run(*poll_wait_command([request], wait), timeout=timeout + wait)
        (polled,) = parse_poll_wait(result, 1)
        return polled

    async def poll(self, handle: SwarmHandle, offsets: dict[str, int | None], timeout: float = 120) -> PollResult:
        script, args = poll_command(SwarmLayout(handle.root), offsets)
        return parse_poll_output((await self.run(script, args, timeout)).check("polling the swarm").stdout)

    async def cancel(self, handle: SwarmHandle, managers: list[str], timeout: float = 60) -> CancelReport:
        script, args = cancel_command(SwarmLayout(handle.root), managers)
        result = await self.run(script, args, timeout)
        return parse_cancel_output(result.returncode, result.stdout, result.stderr, handle.root)

    async def close(self) -> None:
        await self.shell.close()
