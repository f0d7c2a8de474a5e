"""Running a swarm's scripts on a host reached with an Airflow SSH connection.

Blocking callers (operator, api-server) use the SSH provider's SSHHook (paramiko); the
trigger uses SSHHookAsync (asyncssh). Both read the same connection (`ssh_conn_id`).
Files travel as one tar stream over one channel, packed and unpacked while they flow.
"""

from __future__ import annotations

import asyncio
import io
import shlex
import socket
import subprocess
import tarfile
import threading
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path

import paramiko
from airflow.providers.ssh.hooks.ssh import SSHHook, SSHHookAsync

from airflow_provider_locusts.hooks.poll_batcher import PollBatcher
from airflow_provider_locusts.swarm.errors import SwarmConnectionError, SwarmExecutionError, SwarmNoSpaceError
from airflow_provider_locusts.swarm.host_commands import PollRequest, WaitedPoll
from airflow_provider_locusts.swarm.shell import CommandResult, bash_command

try:
    import asyncssh

    _ASYNCSSH_ERRORS: tuple[type[BaseException], ...] = (asyncssh.Error,)
except ImportError:  # pragma: no cover - asyncssh comes with the SSH provider
    _ASYNCSSH_ERRORS = ()

# Errors of the connection, not of the swarm: sshd restarting, a dropped link, a timeout.
# A watch retries them with backoff and a new connection; anything else ends the watch.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    TimeoutError,
    asyncio.TimeoutError,
    socket.timeout,
    paramiko.SSHException,
    SwarmConnectionError,
    *_ASYNCSSH_ERRORS,
)

CHUNK = 1 << 20  # bytes per write when streaming a tar archive


def script_command(script: str, args: list[str] | None) -> str:
    """`bash -c SCRIPT` with arguments: for scripts whose stdin carries data."""
    return shlex.join(["bash", "-c", script, "locusts", *(args or [])])


def _result(returncode: int, out: bytes, err: bytes, feed_failure: list[BaseException]) -> CommandResult:
    """The exit status decides. A command may stop reading its input early and succeed (it
    had what it needed); when it failed, a broken input pipe is added to what it said. No
    exit status at all (-1): the channel closed before the command ended."""
    if returncode == -1:
        raise SwarmConnectionError("the SSH channel closed before the command ended")
    if feed_failure and returncode != 0:
        err += f"\n(sending its input failed: {feed_failure[0]})".encode()
    return CommandResult(returncode, out, err)


class SSHShell:
    """Runs scripts on the SSH host: `bash -s -- ARGS` with the script on stdin (paramiko)."""

    def __init__(self, ssh_hook: SSHHook, timeout: float = 600):
        self.ssh_hook = ssh_hook
        self.timeout = timeout

    @cached_property
    def client(self):
        hook = self.ssh_hook
        try:
            return hook.get_conn()
        except Exception as error:
            # One clear message whatever paramiko raised (refused, timeout, auth, host key).
            raise SwarmConnectionError(
                f"cannot open SSH connection {hook.ssh_conn_id!r} to {hook.username}@{hook.remote_host}:{hook.port}: "
                f"{type(error).__name__}: {error}. Check the connection's host, port, login and key."
            ) from error

    def _open(self, command: str, payload: bytes | Iterable[bytes], timeout: float | None):
        """Start `command`; a thread feeds `payload` to its stdin meanwhile, so a command that
        writes much output while still reading its input can never deadlock on flow control."""
        stdin, stdout, stderr = self.client.exec_command(command, timeout=timeout or self.timeout)
        chunks = [payload] if isinstance(payload, bytes) else payload
        failure: list[BaseException] = []

        # The thread owns `stdin`: paramiko sends EOF when that file object is closed or
        # garbage-collected, so it must live until every chunk is written.
        def feed() -> None:
            try:
                for chunk in chunks:
                    stdin.write(chunk)
                stdin.flush()
            except BaseException as error:  # reported by the caller
                failure.append(error)
            finally:
                stdin.close()

        writer = threading.Thread(target=feed, name="locusts-ssh-stdin", daemon=True)
        writer.start()
        return stdout, stderr, writer, failure

    def _exec(self, command: str, payload: bytes | Iterable[bytes], timeout: float | None) -> CommandResult:
        stdout, stderr, writer, failure = self._open(command, payload, timeout)
        out = stdout.read()
        err = stderr.read()
        writer.join()
        return _result(stdout.channel.recv_exit_status(), out, err, failure)

    def run_script(
        self,
        script: str,
        args: list[str] | None = None,
        stdin_data: bytes | Iterable[bytes] | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        if stdin_data is not None:
            return self._exec(script_command(script, args), stdin_data, timeout)
        return self._exec(shlex.join(bash_command(args)), script.encode(), timeout)

    def stream_script(self, script: str, args: list[str], stdin_data: bytes, timeout: float | None = None):
        """Run a script whose (large) stdout is read as a stream: returns (stdout file, finish()),
        finish() giving the CommandResult (without stdout) once the stream is consumed."""
        stdout, stderr, writer, failure = self._open(script_command(script, args), stdin_data, timeout)

        def finish() -> CommandResult:
            err = stderr.read()
            writer.join()
            return _result(stdout.channel.recv_exit_status(), b"", err, failure)

        return stdout, finish

    def reset(self) -> None:
        client = self.__dict__.pop("client", None)
        if client is not None:
            client.close()

    close = reset


class SSHTarTransfer:
    """Copies between the local staging view and the remote root as one tar stream over one channel."""

    def __init__(self, shell: SSHShell):
        self.shell = shell

    def push(self, local_root: Path, remote_root: str, relative_paths: list[str]) -> None:
        # tar runs while its output is sent: packing and the transfer overlap.
        tar = subprocess.Popen(
            ["tar", "-c", "-C", str(local_root), "--", *relative_paths], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        chunks = iter(lambda: tar.stdout.read(CHUNK), b"")
        # -i: read the stream to its very end (past the end-of-archive blocks), so the
        # sender never writes into a closed channel.
        result = self.shell.run_script('mkdir -p -- "$1" && tar -x -i -m -C "$1"', [remote_root], stdin_data=chunks)
        tar.stdout.close()
        packing_error = tar.stderr.read().decode(errors="replace")
        packed = tar.wait()
        if result.returncode != 0 and b"No space left on device" in result.stderr:
            raise SwarmNoSpaceError(
                f"no space left on the SSH host in {remote_root} while unpacking the swarm "
                f"({result.stderr.decode(errors='replace').strip()[:300]}): free space there or choose another "
                "remote_root; nothing was started."
            )
        result.check(f"unpacking the swarm environment into {remote_root} on the SSH host")
        if packed != 0:
            raise SwarmExecutionError(f"packing the swarm environment in {local_root} failed: {packing_error}")

    def pull(self, remote_root: str, local_root: Path, relative_paths: list[str]) -> None:
        listing = b"".join(p.encode() + b"\0" for p in relative_paths)
        # Files that do not exist (a task that wrote nothing) are skipped, not fatal.
        script = '[ -d "$1" ] || exit 0; cd -- "$1" && xargs -0 -r sh -c \'for f; do [ -e "$f" ] && printf "%s\\0" "$f"; done\' sh | tar -c --null -T -'
        local_root.mkdir(parents=True, exist_ok=True)
        stream, finish = self.shell.stream_script(script, [remote_root], listing)
        first = stream.read(1)
        if first:  # empty when there is no swarm root there yet
            # Extracted as it arrives ("r|"): the results never sit whole in memory.
            with tarfile.open(fileobj=_Prepended(first, stream), mode="r|") as archive:
                archive.extractall(local_root, filter=_data_or_skip)
        finish().check(f"fetching results from {remote_root} on the SSH host")


def _data_or_skip(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
    """tarfile's "data" filter, skipping what it refuses (a link a task made to an absolute
    path or out of its folder) instead of failing the whole transfer: never followed here."""
    try:
        return tarfile.data_filter(member, path)
    except tarfile.FilterError:
        return None


class _Prepended(io.RawIOBase):
    """A stream with some bytes already read put back in front."""

    def __init__(self, head: bytes, rest):
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._head:
            head, self._head = self._head, b""
            return head if n < 0 else head + self._rest.read(max(n - len(head), 0))
        return self._rest.read() if n < 0 else self._rest.read(n)


class _SharedConnection:
    """One asyncssh connection to a host, shared by every trigger of this event loop."""

    def __init__(self, ssh_conn_id: str):
        self.ssh_conn_id = ssh_conn_id
        self.users = 0
        self.conn = None
        self.lock = asyncio.Lock()
        # sshd caps the channels open at once on one connection (MaxSessions, 10 by default).
        self.channels = asyncio.Semaphore(MAX_CHANNELS_PER_CONNECTION)

    async def get(self):
        async with self.lock:
            if self.conn is None:
                self.conn = await SSHHookAsync(ssh_conn_id=self.ssh_conn_id).get_conn()
            return self.conn

    async def drop(self, broken) -> None:
        """Forget a broken connection so the next call opens a new one."""
        async with self.lock:
            if self.conn is broken and broken is not None:
                self.conn = None
                broken.close()

    async def run(self, script: str, args: list[str] | None = None, timeout: float | None = None) -> CommandResult:
        conn = await self.get()
        try:
            async with self.channels:
                result = await conn.run(
                    shlex.join(bash_command(args)), input=script.encode(), timeout=timeout, check=False, encoding=None
                )
        except Exception:
            await self.drop(conn)
            raise
        if result.exit_status is None and result.exit_signal is None:
            # The channel closed before the command ended (sshd stopped, link dropped): what
            # came back is cut short, and the connection is no good any more.
            await self.drop(conn)
            raise SwarmConnectionError(f"the SSH channel to {self.ssh_conn_id!r} closed before the command ended")
        return CommandResult(result.exit_status or 0, result.stdout or b"", result.stderr or b"")

    @cached_property
    def polls(self) -> PollBatcher:
        return PollBatcher(self.run)


MAX_CHANNELS_PER_CONNECTION = 8
# (event loop, ssh_conn_id) → shared connection: a triggerer runs all its triggers in one loop.
_shared_connections: dict[tuple[int, str], _SharedConnection] = {}


class AsyncSSHShell:
    """Runs scripts on the SSH host from the triggerer's event loop (asyncssh).

    Shells of the same connection share one SSH connection per event loop, so fifty
    deferred swarms on one cluster open one connection, not fifty.
    """

    def __init__(self, ssh_conn_id: str):
        self.ssh_conn_id = ssh_conn_id
        self._shared: _SharedConnection | None = None

    def _acquire(self) -> _SharedConnection:
        if self._shared is None:
            key = (id(asyncio.get_running_loop()), self.ssh_conn_id)
            shared = _shared_connections.get(key)
            if shared is None:
                shared = _shared_connections[key] = _SharedConnection(self.ssh_conn_id)
            shared.users += 1
            self._shared = shared
        return self._shared

    async def run_script(self, script: str, args: list[str] | None = None, timeout: float | None = None) -> CommandResult:
        return await self._acquire().run(script, args, timeout)

    async def poll_wait(self, request: PollRequest, wait: float, timeout: float) -> WaitedPoll:
        """A swarm's waiting poll, sent with those of the connection's other triggers."""
        return await self._acquire().polls.poll(request, wait, timeout)

    async def close(self) -> None:
        shared, self._shared = self._shared, None
        if shared is None:
            return
        shared.users -= 1
        if shared.users <= 0:
            _shared_connections.pop((id(asyncio.get_running_loop()), self.ssh_conn_id), None)
            if shared.conn is not None:
                shared.conn.close()
                await shared.conn.wait_closed()
