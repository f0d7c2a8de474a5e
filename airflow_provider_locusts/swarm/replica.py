"""The Custom Environment on disk: the swarm's own copy of the tree, staged once per swarm, and
the steps on the swarm's host around it (probe, seal, removing replicas).

```
<root>/environment/
  incoming/{shared,writable}/  the tree as the Airflow side staged it, split in read-only and
                               writable parts (gone once sealed on the host)
  shared/ writable/ pool/      the sealed copy, its writable parts, clean replicas (replica_seal.sh)
  reference, shared.reference, readonly_dirs[.MODE], sealed
  task.sh                      what each task runs (templates/replica_task.sh)
  command.sh                   the user's command, run in the replica's work folder
  writable_parts places input_templates output_templates   settings task.sh reads (NUL-separated)
<root>/work/batch_<k>/task_<id>/
  replica/                     the task's replica while it runs (and after a change to its read-only part)
  changes/                     the created and modified files of its writable parts, collected at gather
  changes.nul                  what changed (records of replica_task.sh)
```
The user's tree is only ever read: it is copied (reflinks where the filesystem has them), never
linked, so nothing a task or the sealing does (write permission removed) reaches it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from airflow_provider_locusts.swarm.environment import EnvironmentSpec
from airflow_provider_locusts.swarm.errors import (
    SwarmExecutionError,
    SwarmNoSpaceError,
    SwarmSpecError,
)
from airflow_provider_locusts.swarm.layout import SwarmLayout
from airflow_provider_locusts.swarm.render import host_script, render
from airflow_provider_locusts.swarm.shell import Shell
from airflow_provider_locusts.swarm.spec import SwarmSpec
from airflow_provider_locusts.swarm.stage import free_space, make_dirs, write_file
from airflow_provider_locusts.swarm.table import TaskRow

ENVIRONMENT = "environment"
REPLICA = "replica"
CHANGES = "changes"
CHANGES_FILE = "changes.nul"

MB = 1 << 20


def _nul(values: Sequence[str]) -> bytes:
    return b"".join(os.fsencode(v) + b"\0" for v in values)


@dataclass(frozen=True)
class Probe:
    """What the swarm's host offers before staging (replica_probe.sh)."""

    free_bytes: int
    free_inodes: int
    state: str  # absent | sealed | changed | partial
    digest: str | None = None


def parse_probe(data: bytes) -> Probe:
    free_bytes = free_inodes = 0
    state, digest = "absent", None
    for line in data.decode(errors="replace").splitlines():
        fields = line.split()
        if fields[:1] == ["@free"]:
            free_bytes, free_inodes = int(fields[1]), int(fields[2])
        elif fields[:1] == ["@environment"]:
            state = fields[1]
            digest = fields[2] if len(fields) > 2 else None
    return Probe(free_bytes, free_inodes, state, digest)


class EnvironmentStaging:
    """Stages a new try's Custom Environment: checks the host, copies the tree (only when the
    host holds no intact copy of it), writes the settings and scripts, seals it on the host.

    :param spec: the swarm's description, with its environment
    :param shell: runs scripts where the swarm root lives
    :param local_root: the local view of the root (the root itself, or copy mode's scratch folder)
    :param root: the root as the swarm's host sees it
    :param dir_mode: mode of the folders made here (group-writable on a shared filesystem)
    :param other_account: the host's account may not be this side's (a shared filesystem): it
        then makes a copy of its own of the tree when sealing
    """

    def __init__(
        self,
        spec: SwarmSpec,
        shell: Shell,
        local_root: Path,
        root: str,
        dir_mode: int = 0o755,
        other_account: bool = False,
    ):
        self.spec = spec
        self.environment: EnvironmentSpec = spec.environment
        self.shell = shell
        self.local = SwarmLayout(str(local_root))
        self.host = SwarmLayout(root)
        self.local_dir = Path(local_root) / ENVIRONMENT
        self.dir_mode = dir_mode
        self.other_account = other_account
        self.stage_tree = True

    # --- before anything is staged ----------------------------------------------------------
    def prepare(self, todo: Sequence[TaskRow], concurrency: int, recorded_digest: str | None) -> None:
        """One round trip to the host: refuse a tree that changed since the swarm started, find
        out whether the host's copy can serve again, check the space; then remove what earlier
        attempts of these tasks left (replicas whose folders may be read-only)."""
        env = self.environment
        if recorded_digest and recorded_digest != env.digest:
            raise SwarmSpecError(
                f"environment_dir {env.tree} (or environment_writable, environment_workdir, environment_inputs_dir, "
                "outputs) changed since this swarm started: its tasks would not all run on the same tree. Restore it, or "
                "give a new swarm_id to start afresh."
            )
        probe = self.probe()
        if probe.state == "sealed" and probe.digest == env.digest:
            self.stage_tree = False
        elif probe.state != "absent":
            # A try that did not finish staging it, or a task that changed its read-only part
            # (as root, where permissions stop nothing): staged again from the user's tree.
            self.remove([ENVIRONMENT])
        self.check_space(probe, concurrency)
        remove_replicas(self.shell, self.host.root, todo)

    def probe(self) -> Probe:
        result = self.shell.run_script(host_script("replica_probe.sh"), [self.host.root])
        result.check(f"looking at the space and at the environment of {self.host.root} on the swarm's host")
        return parse_probe(result.stdout)

    def check_space(self, probe: Probe, concurrency: int) -> None:
        """Refuse, with the figures, a tree whose copy and replicas would not fit."""
        size = self.environment.size
        copies = (2 if self.other_account else 1) if self.stage_tree else 0
        need_bytes = copies * size.bytes + concurrency * size.replica_bytes
        need_inodes = copies * size.entries + concurrency * size.replica_inodes
        if need_bytes > probe.free_bytes or need_inodes > probe.free_inodes:
            raise SwarmNoSpaceError(
                f"not enough space for the environment's replicas in {self.host.root} on the swarm's host: about "
                f"{need_bytes / MB:.1f} MB and {need_inodes} inodes needed ({copies} cop{'y' if copies == 1 else 'ies'} of the "
                f"tree, {size.bytes / MB:.1f} MB and {size.entries} entries, and {concurrency} replica(s) at once of "
                f"{size.replica_bytes / MB:.1f} MB and {size.replica_inodes} inodes each: their writable parts "
                f"{size.writable_bytes / MB:.1f} MB, and their folders), {probe.free_bytes / MB:.1f} MB and "
                f"{probe.free_inodes} inodes free. Free some space, make fewer parts writable, or run fewer tasks at "
                "once; nothing was started."
            )
        if self.stage_tree and self.local.root != self.host.root:
            # Copy mode: the tree passes through the local scratch folder.
            free_bytes, free_inodes = free_space(Path(self.local.root))
            if size.bytes > free_bytes or size.entries > free_inodes:
                raise SwarmNoSpaceError(
                    f"not enough space to stage the environment's tree in {self.local.root}: {size.bytes / MB:.1f} MB and "
                    f"{size.entries} inodes needed, {free_bytes / MB:.1f} MB and {free_inodes} inodes free. Choose a "
                    "work_root with room; nothing was started."
                )

    # --- staging (on the local view) ---------------------------------------------------------
    def stage(self) -> None:
        """The settings and scripts (every try), and the tree when the host needs it."""
        make_dirs(self.local_dir, self.dir_mode)
        if self.stage_tree:
            self._stage_tree()
        env = self.environment
        write_file(self.local_dir / "task.sh", host_script("replica_task.sh"), 0o755)
        write_file(self.local_dir / "command.sh", self._command_script())
        for name, values in (
            ("writable_parts", env.writable),
            ("places", (env.workdir, env.inputs_dir)),
            ("input_templates", env.input_templates),
            ("output_templates", env.output_templates),
        ):
            tmp = self.local_dir / f".{name}.tmp"
            tmp.write_bytes(_nul(values))
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.local_dir / name)

    def _command_script(self) -> str:
        command = self.environment.command
        names = sorted(command.shared_names)
        return render(
            "replica_command.sh.j2",
            command=command.script,
            shared_names=names,
            shared_paths={name: self.spec.shared_runtime_name(name) for name in names},
        )

    def _stage_tree(self) -> None:
        """The user's tree into incoming/: one copy (cp keeps modes, times and links as they are;
        reflinks where the filesystem has them), then the writable parts moved beside it."""
        incoming = self.local_dir / "incoming"
        if incoming.exists():
            _remove_local(incoming)
        make_dirs(incoming, self.dir_mode)
        shared, writable = incoming / "shared", incoming / "writable"
        _run(
            ["cp", "-dR", "--preserve=mode,timestamps", "--reflink=auto", "--", str(self.environment.tree), str(shared)],
            f"copying the environment's tree {self.environment.tree}",
        )
        os.mkdir(writable)
        os.chmod(writable, os.stat(shared).st_mode & 0o7777)
        for part in self.environment.writable:
            if part == ".":
                os.rmdir(writable)
                os.rename(shared, writable)
                os.mkdir(shared)
                os.chmod(shared, os.stat(writable).st_mode & 0o7777)
                continue
            source, target = shared / part, writable / part
            _make_parents_like(target.parent, writable, shared)
            with _writable_folder(source.parent):
                os.rename(source, target)

    # --- on the host, after the tree was pushed -------------------------------------------------
    def seal(self) -> None:
        """Seal the staged tree on the host (replica_seal.sh), then drop the staged copy here when
        it is still here (copy mode's scratch; a shared filesystem where the host copied it)."""
        if not self.stage_tree:
            return
        result = self.shell.run_script(
            host_script("replica_seal.sh"), [f"{self.host.root}/{ENVIRONMENT}", self.environment.digest], timeout=3600
        )
        if result.returncode != 0 and b"No space left on device" in result.stderr:
            raise SwarmNoSpaceError(
                f"no space left in {self.host.root} on the swarm's host while sealing the environment: "
                f"{result.stderr.decode(errors='replace').strip()[:300]}; nothing was started."
            )
        result.check(f"sealing the environment's tree in {self.host.root} on the swarm's host")
        incoming = self.local_dir / "incoming"
        if incoming.exists():
            _remove_local(incoming)

    def remove(self, paths: Sequence[str]) -> None:
        """Remove these paths (relative to the root) on the host, read-only folders included."""
        self.shell.run_script(host_script("replica_remove.sh"), [self.host.root], stdin_data=_nul(paths)).check(
            f"removing {', '.join(paths)} in {self.host.root} on the swarm's host"
        )


def remove_replicas(shell: Shell, root: str, tasks: Sequence[TaskRow]) -> None:
    """Remove the replicas these tasks left (a task cut off with its manager, or one whose
    read-only part changed), so that each runs again in a fresh one."""
    if tasks:
        listing = _nul([f"work/{t.folder}/{REPLICA}" for t in tasks])
        shell.run_script(host_script("replica_remove.sh"), [root], stdin_data=listing).check(
            "removing the replicas of the tasks to run again"
        )


class _writable_folder:
    """Lets this account move entries out of a folder copied without write permission."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.mode: int | None = None

    def __enter__(self):
        mode = os.stat(self.folder).st_mode & 0o7777
        if not mode & 0o200:
            self.mode = mode
            os.chmod(self.folder, mode | 0o200)

    def __exit__(self, *exc):
        if self.mode is not None:
            os.chmod(self.folder, self.mode)


def _make_parents_like(folder: Path, top: Path, like_top: Path) -> None:
    """Make `folder` (below `top`) and its missing parents with the modes of their twins below `like_top`."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        os.mkdir(path)
        os.chmod(path, os.stat(like_top / path.relative_to(top)).st_mode & 0o7777)


def _remove_local(path: Path) -> None:
    """Remove a folder of ours here, read-only folders in it included."""

    def retry_writable(function, failed_path, _exc):
        parent = os.path.dirname(failed_path)
        os.chmod(parent, os.stat(parent).st_mode | 0o700)
        function(failed_path)

    shutil.rmtree(path, onerror=retry_writable)


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, check=False)
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip()
        if "No space left on device" in message:
            raise SwarmNoSpaceError(f"{what} failed: {message[:300]}; nothing was started.")
        raise SwarmExecutionError(f"{what} failed: {message[:500]}")


def concurrency(tasks: int, nodes: int, processes: int) -> int:
    """Replicas in use at once, at most."""
    return max(1, min(tasks, nodes * processes))


__all__ = [
    "CHANGES",
    "CHANGES_FILE",
    "ENVIRONMENT",
    "REPLICA",
    "EnvironmentStaging",
    "Probe",
    "concurrency",
    "parse_probe",
    "remove_replicas",
]
