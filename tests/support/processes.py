"""Processes for tests: inspect them through /proc, signal only the ones a test started (by
pid), wait with a deadline, and stop swarm managers left under a test's folders.

Nothing is ever signalled by name: a test records what it starts and stops exactly that.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgrp, session) of a process, None when it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1]), int(fields[2]), int(fields[3])


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


def live_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def session_members(sid: int) -> list[int]:
    """Live (non-zombie) processes of session `sid`. A process started with
    start_new_session=True leads its own session; its children stay in it even when they
    move to process groups of their own (the task supervisor and the trigger runner do)."""
    members = []
    for pid in live_pids():
        stat = proc_stat(pid)
        if stat is not None and stat[3] == sid and stat[0] != "Z":
            members.append(pid)
    return members


def namespace_of(pid: int, kind: str = "mnt") -> str | None:
    """The namespace id of a process (`mnt:[4026532177]`), None when it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def namespace_members(namespace: str, kind: str = "mnt") -> list[int]:
    """Live processes in that namespace: everything a "host" of the deployment runs,
    including processes that left the session they were started in (setsid)."""
    return [pid for pid in live_pids() if namespace_of(pid, kind) == namespace and alive(pid)]


def signal_pids(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_gone(pids: Callable[[], list[int]], timeout: float) -> list[int]:
    """Poll until `pids()` is empty or `timeout` passed; return what is left."""
    deadline = time.monotonic() + timeout
    left = pids()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = pids()
    return left


def terminate(pids: Callable[[], list[int]], timeout: float = 10.0) -> list[int]:
    """SIGTERM to `pids()`, a bounded wait, then SIGKILL to what is left; returns what
    survived even that (nothing, normally)."""
    signal_pids(pids(), signal.SIGTERM)
    if wait_gone(pids, timeout):
        signal_pids(pids(), signal.SIGKILL)
        return wait_gone(pids, 10)
    return []


def wait_until(predicate: Callable[[], Any], timeout: float, step: float = 0.2, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy (returned), at most `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def stop_swarm_managers(swarms: Path, timeout: float = 10.0) -> list[str]:
    """Stop every manager still running under `swarms` (exec/pid_<manager> files): its whole
    session (manager, heartbeat loop, tasks), only when a process of that session still runs
    that manager's script, so a recycled pid is never hit. Returns what was stopped."""
    stopped = []
    for pid_file in sorted(swarms.glob("**/exec/pid_*")):
        manager = pid_file.name[len("pid_"):]
        try:
            pid = int(pid_file.read_text().split()[0])
        except (ValueError, IndexError, OSError):
            continue
        # The manager was started with setsid: it leads a session holding its heartbeat
        # loop and its tasks. Some process of it still runs the manager's script (the
        # manager, or its task subshells if the manager itself was killed).
        if not any(f"manager_{manager}.sh" in cmdline(p) for p in session_members(pid)):
            continue
        signal_pids(session_members(pid), signal.SIGTERM)
        if wait_gone(lambda pid=pid: session_members(pid), timeout):
            signal_pids(session_members(pid), signal.SIGKILL)
            wait_gone(lambda pid=pid: session_members(pid), timeout)
        stopped.append(f"{pid_file.parent.parent.name}/{manager} (pid {pid})")
    return stopped


@dataclass
class Component:
    """One long-running process a test started, leading a session of its own."""

    name: str
    popen: subprocess.Popen
    log: Path
    started: float = field(default_factory=time.monotonic)
    stopped: bool = False  # stopped on purpose: its death is not a failure

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def members(self) -> list[int]:
        """Every live process of its session (it, its children, their children...)."""
        self.popen.poll()  # reap the leader if it exited
        return session_members(self.pid)

    def tail(self, lines: int = 40) -> str:
        return f"--- {self.name} (pid {self.pid}) log {self.log}, last {lines} lines:\n{tail(self.log, lines)}"
