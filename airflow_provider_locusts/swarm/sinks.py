"""Where collected outputs, the manifest and the report go: output_dir on this machine, or on
the swarm's host (then nothing but the manifest and the failed tasks' logs crosses the network).

Both sinks move outputs without ever replacing a file already in output_dir (unless told to).
"""

from __future__ import annotations

import os
import posixpath
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from airflow_provider_locusts.swarm.errors import OutputCollisionError, SwarmExecutionError
from airflow_provider_locusts.swarm.render import host_script
from airflow_provider_locusts.swarm.shell import Shell
from airflow_provider_locusts.swarm.table import TaskRow


def output_target(task: TaskRow, output: str, sharded: bool) -> str:
    """Where an output goes, relative to output_dir: as it is, or under its batch's shard
    (output_dir/batch_<k>/...) when the swarm's outputs are sharded."""
    return f"{task.batch}/{output}" if sharded else output


class OutputSink(Protocol):
    output_dir: str
    sharded: bool  # outputs go to output_dir/batch_<k>/ (see output_target)

    def describe(self, relative: str) -> str:
        """The full path of an output (or any file) in output_dir."""

    def existing(self, relatives: Sequence[str]) -> list[str]:
        """Which of these paths already exist in output_dir."""

    def collect(self, tasks: Sequence[TaskRow], overwrite: bool) -> dict[int, list[str]]:
        """Move the outputs of these (succeeded) tasks into output_dir; return, per task index,
        the outputs found neither in its folder nor in output_dir (those tasks are not moved)."""

    def write_text(self, name: str, text: str) -> str:
        """Write a file into output_dir atomically; return its path."""


def move_no_clobber(source: Path | str, target: Path | str, overwrite: bool, make_parent: bool = True) -> None:
    """Move source to target atomically; without `overwrite`, never replace an existing target."""
    if make_parent:
        os.makedirs(os.path.dirname(target), exist_ok=True)
    if overwrite:
        try:
            os.replace(source, target)
            return
        except OSError:
            tmp = _temporary_name(target)
            shutil.copy2(source, tmp)
            os.replace(tmp, target)
            os.unlink(source)
            return
    try:
        os.link(source, target)  # fails if target exists: the atomic no-clobber step
    except FileExistsError:
        if os.path.samefile(source, target):  # linked by a gather interrupted before the unlink
            os.unlink(source)
            return
        raise OutputCollisionError(f"{target} appeared in output_dir while collecting; it was left untouched.") from None
    except OSError:
        tmp = _temporary_name(target)
        shutil.copy2(source, tmp)
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise OutputCollisionError(f"{target} appeared in output_dir while collecting; it was left untouched.") from None
        finally:
            os.unlink(tmp)
    os.unlink(source)


def _temporary_name(target: Path | str) -> str:
    folder, name = os.path.split(target)
    return os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")


class LocalSink:
    """output_dir on this machine; the task folders are read from a local view of the root."""

    def __init__(self, output_dir: str | Path, work_dir: str | Path, sharded: bool = False):
        self.path = Path(output_dir)
        self.output_dir = str(self.path)
        self.work_dir = Path(work_dir)
        self.sharded = sharded

    def describe(self, relative: str) -> str:
        return os.path.join(self.output_dir, relative)

    def existing(self, relatives: Sequence[str]) -> list[str]:
        if not self.path.exists():
            return []
        exists, base = os.path.exists, self.output_dir
        return [r for r in relatives if exists(os.path.join(base, r))]

    def collect(self, tasks: Sequence[TaskRow], overwrite: bool) -> dict[int, list[str]]:
        # This runs once per output: plain string paths (os.path.join's, as concatenations of
        # relative names), a target folder made when a link first finds it missing, and for the
        # usual task of one output, no look before the move (link() sees a missing source).
        self.path.mkdir(parents=True, exist_ok=True)
        exists, link, unlink = os.path.exists, os.link, os.unlink
        work, out = os.path.join(str(self.work_dir), ""), os.path.join(self.output_dir, "")
        sharded = self.sharded
        missing_by_index = {}
        folders_made = set()

        def move(source: str, target: str) -> None:
            """move_no_clobber(source, target, overwrite): FileNotFoundError when source is missing."""
            if overwrite:
                parent = os.path.dirname(target)
                if parent not in folders_made:
                    os.makedirs(parent, exist_ok=True)
                    folders_made.add(parent)
                move_no_clobber(source, target, True, make_parent=False)
                return
            try:
                link(source, target)  # fails if target exists: the atomic no-clobber step
            except FileNotFoundError:
                if not exists(source):
                    raise
                os.makedirs(os.path.dirname(target), exist_ok=True)  # the first output into this folder
                move_no_clobber(source, target, False, make_parent=False)
                return
            except OSError:  # the target exists, or no links here: the careful way
                move_no_clobber(source, target, False, make_parent=False)
                return
            unlink(source)

        for task in tasks:
            folder = work + task.folder + "/"
            outputs = task.outputs
            shard = out + task.batch + "/" if sharded else out
            if len(outputs) == 1:
                name = outputs[0]
                source, target = folder + name, shard + name
                try:
                    move(source, target)
                except FileNotFoundError:
                    if exists(source):  # something else is missing
                        raise
                    if not exists(target):  # moved by an earlier, interrupted gather otherwise
                        missing_by_index[task.index] = [name]
                continue
            moves = [(folder + o, shard + o) for o in outputs]
            missing = [o for o, (source, target) in zip(outputs, moves) if not exists(source) and not exists(target)]
            if missing:  # none of its outputs is moved
                missing_by_index[task.index] = missing
                continue
            for source, target in moves:
                try:
                    move(source, target)
                except FileNotFoundError:
                    if not exists(target):  # moved by an earlier, interrupted gather otherwise
                        raise
        return missing_by_index

    def write_text(self, name: str, text: str) -> str:
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.path / name
        tmp = target.with_name(f".{name}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
        return str(target)


class HostSink:
    """output_dir on the swarm's host: outputs move there, on the host, from the task folders."""

    def __init__(self, shell: Shell, output_dir: str, work_dir: str, sharded: bool = False):
        self.shell = shell
        self.output_dir = output_dir
        self.work_dir = work_dir
        self.sharded = sharded

    def describe(self, relative: str) -> str:
        return posixpath.join(self.output_dir, relative)

    def existing(self, relatives: Sequence[str]) -> list[str]:
        listing = b"".join(_nul(r) for r in relatives)
        # LC_ALL=C: names are read as bytes (see move_outputs.sh).
        script = 'export LC_ALL=C; cd -- "$1" 2>/dev/null || exit 0; while IFS= read -r -d "" f; do [ -e "$f" ] && printf "%s\\0" "$f"; done; exit 0'
        result = self.shell.run_script(script, [self.output_dir], stdin_data=listing)
        result.check(f"looking for existing files in {self.output_dir} on the swarm's host")
        return [p.decode("utf-8", "surrogateescape") for p in result.stdout.split(b"\0") if p]

    def collect(self, tasks: Sequence[TaskRow], overwrite: bool) -> dict[int, list[str]]:
        if not tasks:
            return {}
        records = b"".join(
            _nul(str(t.index))
            + _nul(t.folder)
            + _nul(str(len(t.outputs)))
            + b"".join(_nul(o) + _nul(output_target(t, o, self.sharded)) for o in t.outputs)
            for t in tasks
        )
        result = self.shell.run_script(
            host_script("move_outputs.sh"), [self.work_dir, self.output_dir, "1" if overwrite else "0"], stdin_data=records
        )
        result.check(f"collecting outputs into {self.output_dir} on the swarm's host")
        fields = [f.decode("utf-8", "surrogateescape") for f in result.stdout.split(b"\0")]
        missing_by_index: dict[int, list[str]] = {}
        clashes, stuck = [], []
        i = 0
        while i < len(fields) and fields[i]:
            kind = fields[i]
            if kind == "missing":
                missing_by_index.setdefault(int(fields[i + 1]), []).append(fields[i + 2])
                i += 3
            else:
                (clashes if kind == "clash" else stuck).append(fields[i + 1])
                i += 2
        if clashes:
            raise OutputCollisionError(
                f"{self.describe(clashes[0])} appeared in output_dir while collecting; it was left untouched"
                + (f" ({len(clashes)} such files)." if len(clashes) > 1 else ".")
            )
        if stuck:
            detail = result.stderr.decode(errors="replace").strip()
            raise SwarmExecutionError(f"could not move {len(stuck)} output(s) into {self.output_dir}, e.g. {stuck[0]}: {detail}")
        return missing_by_index

    def write_text(self, name: str, text: str) -> str:
        target = self.describe(name)
        script = 'mkdir -p -- "$1" && cat > "$1/.$2.tmp" && mv -f -- "$1/.$2.tmp" "$1/$2"'
        self.shell.run_script(script, [self.output_dir, name], stdin_data=text.encode("utf-8")).check(
            f"writing {target} on the swarm's host"
        )
        return target


def _nul(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape") + b"\0"
