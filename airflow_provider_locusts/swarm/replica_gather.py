"""Gathering a Custom Environment's tasks: what each task changed in its replica (its
changes.nul), why a task failed, and its created and modified files collected into
`output_dir/<task folder name>/<path>` (the task folder's name: `task_` and the id with
every character but letters, digits and `._+-` made `_`, the rule of spec.py, so it is a
safe and unique folder name).

changes.nul is written in the task's folder, where the task itself could write too: every
path read from it is checked (check_relative_path) before it reaches a path operation, and
no symbolic link is ever followed, in the task's folder or in output_dir. Here, files are
opened one path component at a time with O_NOFOLLOW, relative to folders opened the same
way; on the host (output_dir_on_host), replica_collect.sh checks every component. Symbolic
links a task made are never collected: they are listed, with their target, in the manifest.
"""

from __future__ import annotations

import errno
import os
import stat
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from airflow_provider_locusts.swarm.environment import check_relative_path, is_in_parts
from airflow_provider_locusts.swarm.errors import (
    OutputCollisionError,
    SwarmExecutionError,
    SwarmSpecError,
)
from airflow_provider_locusts.swarm.layout import SwarmLayout
from airflow_provider_locusts.swarm.render import host_script
from airflow_provider_locusts.swarm.replica import CHANGES, CHANGES_FILE
from airflow_provider_locusts.swarm.sinks import HostSink, LocalSink, OutputSink
from airflow_provider_locusts.swarm.table import TaskRow

TYPE_NAMES = {"f": "file", "d": "folder", "l": "symbolic link", "p": "FIFO", "s": "socket", "c": "device", "b": "device"}
SHOWN = 5  # changes named in a reason


@dataclass
class TaskChanges:
    """What one task's changes.nul says."""

    created: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)  # path → type letter (find's %y)
    targets: dict[str, str] = field(default_factory=dict)  # link → its target
    readonly: dict[str, str] = field(default_factory=dict)  # read-only path → created|modified|deleted
    before: dict[str, str] = field(default_factory=dict)  # the swarm's copy, changed before the task ran
    missing: list[str] = field(default_factory=list)  # compulsory outputs not there
    errors: list[str] = field(default_factory=list)
    exit_code: str | None = None  # the command's own; "" when it did not run; None: the script did not finish
    refused: list[str] = field(default_factory=list)  # entries not readable as safe relative paths
    seconds: dict[str, float] = field(default_factory=dict)  # replica (ready to run), command, after (changes, reset)

    def collectable(self, writable: Sequence[str]) -> list[str]:
        """The created and modified regular files of the writable parts."""
        return [p for p in self.created + self.modified if self.types.get(p) == "f" and is_in_parts(p, writable)]

    def not_collected(self) -> dict[str, str]:
        out = {}
        for path in self.created + self.modified:
            kind = self.types.get(path)
            if kind == "l":
                out[path] = f"symbolic link to {self.targets.get(path, '?')}"
            elif kind != "f":
                out[path] = TYPE_NAMES.get(kind, "special file")
        return out

    def manifest(self) -> dict:
        entry: dict = {"created": self.created, "modified": self.modified, "deleted": self.deleted}
        skipped = self.not_collected()
        if skipped:
            entry["not_collected"] = skipped
        if self.readonly:
            entry["read_only_changed"] = self.readonly
        if self.before:
            entry["read_only_changed_before"] = self.before
        if self.refused:
            entry["refused"] = self.refused
        if self.seconds:
            entry["seconds"] = self.seconds
        return entry

    def reason(self, default: str) -> str:
        """Why the task failed, from what its script recorded (the default when it recorded nothing)."""
        parts = []
        if self.before:
            parts.append(
                "ran on a changed tree: the shared read-only part had changed before it started (another task of "
                f"the swarm changed it): {_listing(self.before)}"
            )
        if self.exit_code not in (None, "", "0"):
            parts.append(f"exit code {self.exit_code}")
        if self.readonly:
            in_place = any(k == "modified" and self.types.get(p) == "f" for p, k in self.readonly.items())
            parts.append(
                f"changed the read-only part of the tree: {_listing(self.readonly)}"
                + (" (a file every task shares: this task, or one running at the same time, changed it)" if in_place else "")
            )
        if self.missing:
            parts.append("missing outputs: " + ", ".join(self.missing))
        if self.errors:
            parts.append("; ".join(self.errors))
        if self.exit_code is None and not parts:
            return default
        return "; ".join(parts) or default


def _listing(changes: dict[str, str]) -> str:
    items = [f"{kind} {path}" for path, kind in sorted(changes.items())]
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def _phases(times: str) -> dict[str, float]:
    """"BEGAN READY RAN DONE" (epoch seconds on the host) → how long each phase took."""
    try:
        began, ready, ran, done = (float(t.replace(",", ".")) for t in times.split())
    except ValueError:
        return {}
    return {"replica": round(ready - began, 4), "command": round(ran - ready, 4), "after": round(done - ran, 4)}


def parse_changes(data: bytes) -> TaskChanges:
    """changes.nul: records of four NUL-terminated fields, TAG TYPE PATH EXTRA."""
    fields = data.split(b"\0")
    changes = TaskChanges()
    for i in range(0, len(fields) - 3, 4):
        tag, kind, raw_path, extra = (f.decode("utf-8", "surrogateescape") for f in fields[i : i + 4])
        if tag == "exit":
            changes.exit_code = extra
            continue
        if tag == "times":
            changes.seconds = _phases(extra)
            continue
        if tag == "error":
            changes.errors.append(extra + (f" ({raw_path})" if raw_path not in ("", "-") else ""))
            continue
        try:
            path = check_relative_path("a path recorded by the task", raw_path)
        except SwarmSpecError:
            changes.refused.append(raw_path)
            continue
        if tag in ("created", "modified", "deleted"):
            getattr(changes, tag).append(path)
            changes.types[path] = kind
            if kind == "l":
                changes.targets[path] = extra
        elif tag == "readonly":
            changes.readonly[path] = extra
            changes.types[path] = kind
        elif tag == "before":
            changes.before[path] = extra
            changes.types.setdefault(path, kind)
        elif tag == "missing":
            changes.missing.append(path)
    for name in ("created", "modified", "deleted", "missing"):
        getattr(changes, name).sort()
    return changes


class ChangesCollector:
    """collect.gather's extension for a Custom Environment (see collect.GatherExtension)."""

    def __init__(self, local: SwarmLayout, sink: OutputSink, writable: Sequence[str]):
        self.local = local
        self.sink = sink
        self.writable = tuple(writable)
        # A sink that shards outputs by batch (output_dir/batch_<k>/) gets the batch folder too.
        self.sharded = bool(getattr(sink, "sharded", False))
        self._read: dict[int, TaskChanges | None] = {}

    def output_folder(self, task: TaskRow) -> str:
        """`task_<safe id>`, the task folder's own name (spec.py's rule): safe and unique; under
        its batch's folder when the sink shards outputs."""
        return task.folder if self.sharded else task.folder.rsplit("/", 1)[-1]

    def changes(self, task: TaskRow) -> TaskChanges | None:
        if task.index not in self._read:
            path = Path(self.local.task_dir(task.folder)) / CHANGES_FILE
            self._read[task.index] = parse_changes(path.read_bytes()) if path.is_file() and not path.is_symlink() else None
        return self._read[task.index]

    def failure_reason(self, task: TaskRow, default: str) -> str:
        changes = self.changes(task)
        return changes.reason(default) if changes else default

    def details(self, task: TaskRow) -> dict | None:
        changes = self.changes(task)
        return changes.manifest() if changes else None

    def pull_paths(self, folder: str, collect: bool) -> list[str]:
        """What copy mode fetches of a task folder for gathering (relative to the root)."""
        base = f"work/{folder}"
        return [f"{base}/{CHANGES_FILE}", f"{base}/{CHANGES}"] if collect else [f"{base}/{CHANGES_FILE}"]

    def existing(self, tasks: Sequence[TaskRow]) -> list[str]:
        """The tasks' folders in output_dir that exist already."""
        return self.sink.existing([self.output_folder(t) for t in tasks])

    def collect(self, tasks: Sequence[TaskRow], overwrite: bool) -> tuple[dict[int, str], dict[int, list[str]]]:
        """Collect the changes of these tasks (they ended well): (failed: index → reason, for a
        task whose changes could not all be collected; collected: index → its paths in output_dir)."""
        failed: dict[int, str] = {}
        wanted: dict[int, list[str]] = {}
        for task in tasks:
            changes = self.changes(task)
            if changes is None or changes.exit_code is None:
                failed[task.index] = f"no complete record of what it changed ({CHANGES_FILE}): its script did not finish"
            else:
                wanted[task.index] = changes.collectable(self.writable)
        todo = [t for t in tasks if wanted.get(t.index)]
        if isinstance(self.sink, HostSink):
            problems = _collect_on_host(self.sink, todo, wanted, overwrite, self.output_folder)
        else:
            problems = _collect_here(self.sink, Path(self.local.work_dir), todo, wanted, overwrite, self.output_folder)
        for index, reasons in problems.items():
            failed[index] = "; ".join(reasons[:SHOWN]) + (f" and {len(reasons) - SHOWN} more" if len(reasons) > SHOWN else "")
        by_index = {t.index: t for t in tasks}
        collected = {
            i: [self.sink.describe(f"{self.output_folder(by_index[i])}/{p}") for p in paths]
            for i, paths in wanted.items()
            if i not in failed
        }
        return failed, collected


# --- here: component by component, never through a link ------------------------------------
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _LinkInPath(Exception):
    """A component of a path is a symbolic link (or not a folder): not followed."""


def _open_dir(parent_fd: int, name: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _LinkInPath(name) from error
        raise


def _open_dirs(base_fd: int, parts: Sequence[str], create: bool = False) -> int:
    """The folder at `parts` below base_fd, each component opened without following a link
    (made when missing, with `create`)."""
    fd = os.dup(base_fd)
    try:
        for part in parts:
            try:
                next_fd = _open_dir(fd, part)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                next_fd = _open_dir(fd, part)
            os.close(fd)
            fd = next_fd
        return fd
    except BaseException:
        os.close(fd)
        raise


def _collect_here(sink: LocalSink, work_dir: Path, tasks: Sequence[TaskRow], wanted: dict[int, list[str]], overwrite: bool, output_folder):
    """Move each task's changes/<path> to output_dir/<task folder name>/<path>, never through a
    link and never over a file already there (unless `overwrite`). Returns, per index, why
    some of its files could not be collected."""
    problems: dict[int, list[str]] = {}
    if not tasks:
        return problems
    sink.path.mkdir(parents=True, exist_ok=True)
    out_fd = os.open(sink.path, _DIR_FLAGS & ~os.O_NOFOLLOW)
    work_fd = os.open(work_dir, _DIR_FLAGS & ~os.O_NOFOLLOW)
    try:
        for task in tasks:
            for path in wanted[task.index]:
                *dirs, name = path.split("/")
                shown = sink.describe(f"{output_folder(task)}/{path}")
                try:
                    src_fd = _open_dirs(work_fd, [*task.folder.split("/"), CHANGES, *dirs])
                except FileNotFoundError:
                    src_fd = None
                except _LinkInPath:
                    problems.setdefault(task.index, []).append(f"{path} not collected: it leads through a symbolic link in the task's folder")
                    continue
                try:
                    dst_fd = _open_dirs(out_fd, [*output_folder(task).split("/"), *dirs], create=True)
                except _LinkInPath:
                    raise OutputCollisionError(
                        f"{shown}: a symbolic link or a file is in the way in output_dir; nothing was written through it."
                    ) from None
                try:
                    outcome = _move_file(src_fd, dst_fd, name, overwrite, shown)
                finally:
                    os.close(dst_fd)
                    if src_fd is not None:
                        os.close(src_fd)
                if outcome == "absent":
                    problems.setdefault(task.index, []).append(f"{path} not collected: neither in its changes/ nor in output_dir")
                elif outcome == "not-regular":
                    problems.setdefault(task.index, []).append(f"{path} not collected: no longer a regular file")
    finally:
        os.close(out_fd)
        os.close(work_fd)
    return problems


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _move_file(src_fd: int | None, dst_fd: int, name: str, overwrite: bool, shown: str) -> str:
    """Move `name` from the folder src_fd to the folder dst_fd: "moved", "absent" (in neither),
    or "not-regular" (the source is not a regular file: left alone)."""
    source = _lstat(name, src_fd) if src_fd is not None else None
    target = _lstat(name, dst_fd)
    if source is None:
        # Collected by an interrupted gather, or gone.
        return "moved" if target is not None and stat.S_ISREG(target.st_mode) else "absent"
    if not stat.S_ISREG(source.st_mode):
        return "not-regular"
    if target is not None:
        if target.st_ino == source.st_ino and target.st_dev == source.st_dev:
            os.unlink(name, dir_fd=src_fd)  # linked by a gather interrupted before the unlink
            return "moved"
        if stat.S_ISDIR(target.st_mode):
            raise OutputCollisionError(f"{shown} is a folder in output_dir; the file was not collected.")
        if not overwrite:
            if stat.S_ISREG(target.st_mode) and (target.st_size, target.st_mtime_ns) == (source.st_size, source.st_mtime_ns):
                _unlink_quietly(name, src_fd)  # copied by a gather interrupted before the unlink
                return "moved"
            raise OutputCollisionError(f"{shown} appeared in output_dir while collecting; it was left untouched.")
    try:
        if overwrite:
            os.rename(name, name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            return "moved"
        os.link(name, name, src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
    except FileExistsError:
        raise OutputCollisionError(f"{shown} appeared in output_dir while collecting; it was left untouched.") from None
    except OSError:
        if not _copy_no_clobber(src_fd, dst_fd, name, overwrite, shown):  # another filesystem, or links refused
            return "not-regular"
    _unlink_quietly(name, src_fd)
    return "moved"


def _copy_no_clobber(src_fd: int, dst_fd: int, name: str, overwrite: bool, shown: str) -> bool:
    tmp = f".{name[:100]}.{uuid.uuid4().hex}.tmp"
    fd_in = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
    try:
        st = os.fstat(fd_in)
        if not stat.S_ISREG(st.st_mode):
            return False
        fd_out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, stat.S_IMODE(st.st_mode), dir_fd=dst_fd)
        try:
            while chunk := os.read(fd_in, 1 << 20):
                os.write(fd_out, chunk)
            os.utime(fd_out, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)
    try:
        if overwrite:
            os.rename(tmp, name, src_dir_fd=dst_fd, dst_dir_fd=dst_fd)
        else:
            os.link(tmp, name, src_dir_fd=dst_fd, dst_dir_fd=dst_fd, follow_symlinks=False)
    except FileExistsError:
        raise OutputCollisionError(f"{shown} appeared in output_dir while collecting; it was left untouched.") from None
    finally:
        _unlink_quietly(tmp, dst_fd)
    return True


def _unlink_quietly(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass  # gone already, or not ours to remove (another account's folder): the copy is made


# --- on the host (output_dir_on_host) -------------------------------------------------------------
def _nul(text: str) -> bytes:
    return os.fsencode(text) + b"\0"


def _collect_on_host(sink: HostSink, tasks: Sequence[TaskRow], wanted: dict[int, list[str]], overwrite: bool, output_folder):
    records = b"".join(
        _nul(str(t.index)) + _nul(t.folder) + _nul(output_folder(t)) + _nul(str(len(wanted[t.index])))
        + b"".join(_nul(p) for p in wanted[t.index])
        for t in tasks
        if wanted[t.index]
    )
    problems: dict[int, list[str]] = {}
    if not records:
        return problems
    result = sink.shell.run_script(
        host_script("replica_collect.sh"), [sink.work_dir, sink.output_dir, "1" if overwrite else "0"], stdin_data=records
    )
    result.check(f"collecting the tasks' changes into {sink.output_dir} on the swarm's host")
    fields = [os.fsdecode(f) for f in result.stdout.split(b"\0")]
    clashes, stuck = [], []
    for i in range(0, len(fields) - 2, 3):
        kind, index, path = fields[i : i + 3]
        if kind == "missing":
            problems.setdefault(int(index), []).append(f"{path} not collected: neither in its changes/ nor in output_dir")
        elif kind == "refused":
            problems.setdefault(int(index), []).append(f"{path} not collected: it leads through a symbolic link")
        elif kind == "clash":
            clashes.append(path)
        elif kind == "stuck":
            stuck.append(path)
    if clashes:
        raise OutputCollisionError(
            f"{sink.describe(clashes[0])} appeared in output_dir while collecting (or a link is in the way); it was left untouched"
            + (f" ({len(clashes)} such files)." if len(clashes) > 1 else ".")
        )
    if stuck:
        detail = result.stderr.decode(errors="replace").strip()[:300]
        raise SwarmExecutionError(f"could not move {len(stuck)} changed file(s) into {sink.output_dir}, e.g. {stuck[0]}: {detail}")
    return problems
