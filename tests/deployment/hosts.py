"""Worker "hosts" on one machine: each Celery worker runs in a mount + UTS namespace of its
own (enter_host.sh), with its own hostname, a private /tmp and a private local disk, so
what one host writes locally the others cannot see. They share the network (loopback),
the process table and the rest of the filesystem (the deployment's shared folder).

Paths inside a host: /tmp/locusts-host is its local disk (AIRFLOW_HOME, the swarm work
root); the harness reaches the same files at `WorkerHost.disk`, a folder hidden from
every host.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import Component, alive, cmdline, namespace_members, namespace_of, proc_stat

ENTER_HOST = Path(__file__).resolve().parent / "enter_host.sh"
HOST_DISK = "/tmp/locusts-host"  # the host's local disk, as its processes see it
WORK_ROOT = f"{HOST_DISK}/work"  # the swarm work root of a worker host (LOCUSTS_WORK_ROOT)
HOME = f"{HOST_DISK}/home"  # the worker's private AIRFLOW_HOME
ID_FILE = ".locusts-host-id"  # on the disk: tells our namespaces from any other


@dataclass
class WorkerHost:
    """One worker host: its name, its disk (harness path), and the namespaces it lived in
    (a restart is a new namespace on the same disk, like a reboot: /tmp is lost)."""

    name: str
    disk: Path
    hosts_file: Path
    hide_dir: Path
    shared_tmp_paths: tuple[Path, ...] = ()
    namespaces: list[tuple[str, str]] = field(default_factory=list)  # (mnt, uts) of each start
    component: Component | None = None

    def __post_init__(self):
        (self.disk / "work").mkdir(parents=True, exist_ok=True)
        (self.disk / "home").mkdir(parents=True, exist_ok=True)
        self.token = secrets.token_hex(8)
        (self.disk / ID_FILE).write_text(self.token)
        original = Path("/etc/hosts").read_text()
        self.hosts_file.write_text(f"{original.rstrip()}\n127.0.1.1 {self.name}\n")

    def argv(self, command: list[str]) -> list[str]:
        """`command`, run inside a fresh namespace that enter_host.sh turns into this host."""
        shares = [arg for path in self.shared_tmp_paths for arg in ("--share", str(path))]
        return [
            "unshare", "--mount", "--uts", "--fork", "--propagation", "private", "--",
            "bash", str(ENTER_HOST), self.name, str(self.disk), str(self.hosts_file), str(self.hide_dir),
            *shares, "--", *command,
        ]

    def path(self, inside: str) -> Path:
        """The harness path of a file on this host's disk (a path under /tmp/locusts-host)."""
        relative = Path(inside).relative_to(HOST_DISK)
        return self.disk / relative

    # --- the process running in the namespace -------------------------------------------
    def main_pid(self) -> int | None:
        """The command's pid: unshare's child (unshare itself blocks SIGTERM and SIGINT,
        so a graceful stop must reach the child)."""
        if self.component is None or not self.component.running():
            return None
        for pid in self.component.members():
            stat = proc_stat(pid)
            if stat is not None and stat[1] == self.component.pid:
                return pid
        return None

    def record_namespace(self) -> tuple[str, str] | None:
        """Note the namespaces of the host's current start, once its command runs in them."""
        pid = self.main_pid()
        if pid is None:
            return None
        ns = (namespace_of(pid, "mnt"), namespace_of(pid, "uts"))
        main_host_mnt = namespace_of(os.getpid(), "mnt")  # the harness runs on the main host
        if None in ns or ns[0] == main_host_mnt:
            return None  # not inside yet: unshare has not forked its child
        if ns not in self.namespaces:
            self.namespaces.append(ns)
        return ns

    def _ours(self, pid: int) -> bool:
        """The process sees this host's disk at /tmp/locusts-host: a namespace id reused by
        someone else's namespace after ours died would fail this."""
        try:
            return Path(f"/proc/{pid}/root{HOST_DISK}/{ID_FILE}").read_text() == self.token
        except OSError:
            return False

    def processes(self) -> list[int]:
        """Every live process on this host, over all its starts: the worker, the task
        supervisors and runners, and what they left behind (local swarm managers, setsid)."""
        pids = []
        for mnt, uts in self.namespaces:
            pids += [p for p in namespace_members(mnt) if namespace_of(p, "uts") == uts and self._ours(p)]
        return pids

    def exec(self, command: list[str], timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        """Run a command on this host (nsenter into its current namespaces)."""
        pid = self.main_pid()
        if pid is None or not alive(pid):
            raise AssertionError(f"host {self.name} is not running: cannot run {command}")
        result = subprocess.run(["nsenter", "--target", str(pid), "--mount", "--uts", "--", *command],
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"on {self.name}: {command} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def describe(self) -> str:
        pid = self.main_pid()
        return f"{self.name}: main pid {pid} ({cmdline(pid)[:80] if pid else 'not running'}), namespaces {self.namespaces}"


def graceful_signal(host: WorkerHost, sig: int = signal.SIGTERM) -> bool:
    """Send `sig` to the host's command (not to unshare, which ignores it)."""
    pid = host.main_pid()
    if pid is None:
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True
