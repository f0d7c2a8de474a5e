"""The Custom Environment: a whole tree every task runs in, each task in a replica of its own.

This module holds the description (EnvironmentSpec) and its validation: every bad input
becomes one SwarmSpecError before anything is staged. What the description becomes on the
swarm's host (the swarm's copy of the tree, replicas, the per-task script) is in replica.py;
how the changes are gathered is in replica_gather.py.

Words used throughout:
- the *tree*: the user's folder (`environment_dir`); never written to.
- *writable parts*: the paths of the tree (folders or files) every task gets its own copy of;
  everything else is *read-only*, shared by every task.
- the *work folder*: where the command runs, relative to the tree.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from airflow_provider_locusts.swarm.command import CommandTemplate
from airflow_provider_locusts.swarm.errors import SwarmSpecError
from airflow_provider_locusts.swarm.spec import (
    ID_HANDLE,
    SwarmSpec,
    TaskSpec,
    _check_output_template,
    build_spec,
)

# What a task runs, in its folder, instead of the user's command (which replica_task.sh runs in
# the replica's work folder): the same line whichever way the manager runs a task's command
# (sourced in a subshell, in a bash of its own, under `timeout`); `exec` spares a process.
TASK_COMMAND = 'exec bash "${LOCUSTS_SWARM_ROOT}/environment/task.sh"'

BLOCK = 4096  # bytes a file or folder takes at least, for the space estimates

_SPECIAL = {
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFIFO: "FIFO",
    stat.S_IFSOCK: "socket",
}


@dataclass(frozen=True)
class Entry:
    """One entry of the tree, as lstat sees it."""

    kind: str  # "d" folder, "f" regular file, "l" symbolic link
    size: int
    mode: int
    mtime_ns: int
    target: str = ""  # a link's target


@dataclass(frozen=True)
class TreeSize:
    """What the tree and one replica of it take (bytes rounded up to whole blocks)."""

    bytes: int  # the whole tree: the swarm's own copy
    entries: int
    writable_bytes: int  # the writable parts: copied into every replica
    writable_entries: int
    readonly_dirs: int  # folders of the read-only part: made anew in every replica (its files are links)

    @property
    def replica_bytes(self) -> int:
        return self.writable_bytes + self.readonly_dirs * BLOCK

    @property
    def replica_inodes(self) -> int:
        return self.writable_entries + self.readonly_dirs


@dataclass(frozen=True)
class EnvironmentSpec:
    """A validated Custom Environment."""

    tree: Path
    patterns: tuple[str, ...]  # as the user gave them
    writable: tuple[str, ...]  # what they matched: paths relative to the tree ("." the whole tree), none inside another
    workdir: str  # relative to the tree ("." its top)
    inputs_dir: str  # where task inputs are placed, relative to the tree
    input_templates: tuple[str, ...]
    output_templates: tuple[str, ...]  # compulsory outputs, relative to the tree
    command: CommandTemplate  # the user's command
    size: TreeSize
    digest: str  # of the tree's entries and of these settings: a retry must meet the same

    def is_writable(self, path: str) -> bool:
        return is_in_parts(path, self.writable)

    def settings(self) -> dict:
        """What the swarm root records: enough to reschedule and gather from the root alone."""
        return {
            "tree": str(self.tree),
            "writable": list(self.writable),
            "workdir": self.workdir,
            "inputs_dir": self.inputs_dir,
            "digest": self.digest,
        }


def is_in_parts(path: str, parts: Sequence[str]) -> bool:
    """Is `path` (relative to the tree) one of `parts`, or inside one?"""
    return any(p == "." or path == p or path.startswith(p + "/") for p in parts)


def check_relative_path(what: str, path: str) -> str:
    """A path from a tree or from a task: relative, normalized, no '..', no empty or '.' parts,
    no NUL. Checked before it reaches any path operation."""
    if not isinstance(path, str) or not path or "\0" in path or path.startswith("/"):
        raise SwarmSpecError(f"{what} {path!r} is not a relative path.")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise SwarmSpecError(f"{what} {path!r} is not a plain relative path (empty, '.' or '..' parts).")
    return path


def build_environment_spec(
    *,
    environment_dir: str | Path,
    writable: Sequence[str] | None,
    workdir: str | None,
    inputs_dir: str | None,
    command: str,
    output_dir: str | Path,
    input_dir: str | Path | None = None,
    task_inputs: Sequence[str] | None = None,
    shared_inputs: Mapping[str, str | Path] | None = None,
    outputs: Sequence[str] | None = None,
    args: Sequence[Sequence[object]] | None = None,
    processes: int = 1,
    batch_size: int = 10000,
) -> SwarmSpec:
    """A swarm whose tasks run in replicas of `environment_dir`: the Default Environment's
    description (tasks from task_inputs or args, handles, shared inputs), plus the tree.

    Compulsory `outputs` are paths relative to the tree here (e.g. 'results/out_<id>.txt'):
    the per-task script checks them in the replica, so the tasks themselves list none."""
    base = build_spec(
        command=command,
        output_dir=output_dir,
        input_dir=input_dir,
        task_inputs=task_inputs,
        shared_inputs=shared_inputs,
        outputs=None,
        args=args,
        processes=processes,
        batch_size=batch_size,
    )
    environment = build_environment(
        tree=environment_dir,
        patterns=writable,
        workdir=workdir,
        inputs_dir=inputs_dir,
        user_command=base.command,
        tasks=base.tasks,
        input_templates=tuple(task_inputs or ()),
        output_templates=tuple(outputs or ()),
    )
    task_command = CommandTemplate(
        source=base.command.source,
        script=TASK_COMMAND,
        shared_names=frozenset(),  # environment/command.sh sets the shared inputs' paths
        max_arg_index=base.command.max_arg_index,
        uses_id=base.command.uses_id,
    )
    return replace(base, command=task_command, environment=environment)


def build_environment(
    *,
    tree: str | Path,
    patterns: Sequence[str] | None,
    workdir: str | None,
    inputs_dir: str | None,
    user_command: CommandTemplate,
    tasks: Sequence[TaskSpec],
    input_templates: tuple[str, ...] = (),
    output_templates: tuple[str, ...] = (),
) -> EnvironmentSpec:
    """Validate the tree and the settings against it; one SwarmSpecError for the first problem."""
    if not tree or not str(tree).strip():
        raise SwarmSpecError("environment_dir is empty: give the folder (the tree) every task runs in.")
    root = Path(tree).expanduser().absolute()
    if not root.is_dir():
        raise SwarmSpecError(f"environment_dir does not exist or is not a folder: {root}.")
    if root.is_symlink():
        root = root.resolve()
    entries = scan_tree(root)

    if isinstance(patterns, str):
        patterns = [patterns]
    patterns = tuple(patterns or ())
    writable = match_writable(root, entries, patterns)

    workdir_rel = _inside_tree("environment_workdir", workdir, root, entries)
    if input_templates:
        inputs_rel = _inside_tree("environment_inputs_dir", inputs_dir if inputs_dir is not None else workdir, root, entries)
        writable_folders = [p for p in writable if p == "." or entries[p].kind == "d"]
        if not is_in_parts(inputs_rel, writable_folders):
            raise SwarmSpecError(
                f"task inputs are placed in {inputs_rel!r} of the tree, which is read-only: add it (or a folder above it) "
                "to environment_writable, or set environment_inputs_dir to a writable folder (a task may move or change its inputs)."
            )
        _check_input_collisions(tasks, inputs_rel, entries, root)
    else:
        inputs_rel = workdir_rel if inputs_dir is None else _inside_tree("environment_inputs_dir", inputs_dir, root, entries)

    output_templates = tuple(posixpath.normpath(_check_output_template(t)) for t in output_templates)
    for template in output_templates:
        if not is_in_parts(template.replace(ID_HANDLE, "x"), writable):
            raise SwarmSpecError(
                f"compulsory output {template!r} is in the read-only part of the tree: a task writing it would fail. "
                "Add its folder to environment_writable."
            )

    return EnvironmentSpec(
        tree=root,
        patterns=patterns,
        writable=writable,
        workdir=workdir_rel,
        inputs_dir=inputs_rel,
        input_templates=tuple(input_templates),
        output_templates=tuple(output_templates),
        command=user_command,
        size=_size(entries, writable),
        digest=_digest(entries, writable, workdir_rel, inputs_rel, input_templates, output_templates),
    )


def scan_tree(root: Path) -> dict[str, Entry]:
    """Every entry below `root` (relative POSIX path → Entry), without following links.
    Refuses special files, unreadable entries and relative links that leave the tree."""
    entries: dict[str, Entry] = {}
    special: list[str] = []
    stack = [("", root)]
    while stack:
        prefix, folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                found = list(it)
        except OSError as error:
            raise SwarmSpecError(f"cannot read the folder {folder} of environment_dir: {error.strerror}.") from None
        for item in found:
            rel = prefix + item.name
            st = item.stat(follow_symlinks=False)
            fmt = stat.S_IFMT(st.st_mode)
            if fmt in _SPECIAL:
                special.append(f"{rel} ({_SPECIAL[fmt]})")
                continue
            if stat.S_ISDIR(st.st_mode):
                if not os.access(item.path, os.R_OK | os.X_OK):
                    raise SwarmSpecError(f"environment_dir holds a folder this account cannot read: {item.path}.")
                entries[rel] = Entry("d", 0, stat.S_IMODE(st.st_mode), st.st_mtime_ns)
                stack.append((rel + "/", Path(item.path)))
            elif stat.S_ISLNK(st.st_mode):
                target = os.readlink(item.path)
                if not target.startswith("/"):
                    landing = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
                    if landing == ".." or landing.startswith("../"):
                        raise SwarmSpecError(
                            f"environment_dir holds the link {rel} -> {target}, which leaves the tree: in a replica it "
                            "would point into the swarm's own folders. Make it absolute, or point it inside the tree."
                        )
                entries[rel] = Entry("l", len(os.fsencode(target)), 0, st.st_mtime_ns, target)
            else:
                if not os.access(item.path, os.R_OK):
                    raise SwarmSpecError(f"environment_dir holds a file this account cannot read: {item.path}.")
                entries[rel] = Entry("f", st.st_size, stat.S_IMODE(st.st_mode), st.st_mtime_ns)
    if special:
        more = f" and {len(special) - 3} more" if len(special) > 3 else ""
        raise SwarmSpecError(
            f"environment_dir holds special files, which cannot be copied into replicas: {', '.join(sorted(special)[:3])}{more} "
            f"(in {root}). Remove them from the tree."
        )
    return entries


def match_writable(root: Path, entries: Mapping[str, Entry], patterns: Sequence[str]) -> tuple[str, ...]:
    """The entries the patterns name (none inside another). A pattern naming a folder makes the
    folder and everything in it writable; one naming files makes those files writable."""
    matched: set[str] = set()
    for pattern in patterns:
        normalized = _normalize_pattern(pattern)
        if normalized == ".":
            matched.add(".")
            continue
        regex = pattern_regex(normalized)
        hits = [path for path in entries if regex.fullmatch(path)]
        if not hits:
            raise SwarmSpecError(
                f"environment_writable pattern {pattern!r} matches nothing in {root}: a writable part must exist in the tree "
                "(create an empty folder for what tasks write, e.g. results/)."
            )
        matched.update(hits)
    if "." in matched:
        return (".",)
    top = tuple(p for p in sorted(matched) if not any(p.startswith(q + "/") for q in matched))
    for path in top:
        if entries[path].kind == "l":
            raise SwarmSpecError(
                f"environment_writable names {path!r}, a symbolic link (to {entries[path].target}): a copy of the link would "
                "lead every task to the same place. Name the folder it points to inside the tree instead."
            )
    return top


def _normalize_pattern(pattern: str) -> str:
    if not isinstance(pattern, str) or not pattern.strip():
        raise SwarmSpecError(f"environment_writable pattern {pattern!r} is empty: give a path of the tree such as 'results'.")
    if "\0" in pattern or pattern.startswith("/"):
        raise SwarmSpecError(f"environment_writable pattern {pattern!r} must be a path relative to the tree.")
    parts = [p for p in pattern.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise SwarmSpecError(f"environment_writable pattern {pattern!r} leaves the tree ('..').")
    return "/".join(parts) or "."


def pattern_regex(pattern: str) -> re.Pattern:
    """A path pattern as a regular expression over relative paths: `*`, `?` and `[...]` match
    within one path component, a `**` component any number of components."""
    parts = pattern.split("/")
    out = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out.append(".*" if last else "(?:[^/]+/)*")
        else:
            out.append(_component_regex(part) + ("" if last else "/"))
    return re.compile("".join(out), re.DOTALL)


def _component_regex(part: str) -> str:
    out, i = [], 0
    while i < len(part):
        c = part[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + 1
            if part[j : j + 1] in ("!", "^"):
                j += 1
            if part[j : j + 1] == "]":
                j += 1  # a "]" right after "[" (or "[!") is part of the set
            end = part.find("]", j)
            if end < 0:
                out.append(re.escape(c))  # no closing bracket: a plain "["
            else:
                body = part[i + 1 : end]
                negate = body[:1] in ("!", "^")
                body = body[1:] if negate else body
                out.append("[" + ("^/" if negate else "") + body.replace("\\", "\\\\").replace("[", "\\[") + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _inside_tree(what: str, path: str | None, root: Path, entries: Mapping[str, Entry]) -> str:
    """A folder of the tree named relative to its top ('.' the top itself)."""
    if path is None or path == "":
        return "."
    if not isinstance(path, str) or "\0" in path:
        raise SwarmSpecError(f"{what} must be a folder relative to environment_dir, got {path!r}.")
    normalized = posixpath.normpath(path)
    if posixpath.isabs(normalized) or normalized == ".." or normalized.startswith("../"):
        raise SwarmSpecError(f"{what} {path!r} is outside the tree {root}: give a folder inside it, relative to it.")
    if normalized == ".":
        return "."
    entry = entries.get(normalized)
    if entry is None or entry.kind != "d":
        what_it_is = "a link" if entry and entry.kind == "l" else "a file" if entry else "missing"
        raise SwarmSpecError(f"{what} {path!r} is not a folder of the tree {root} ({what_it_is}).")
    return normalized


def _check_input_collisions(tasks: Sequence[TaskSpec], inputs_dir: str, entries: Mapping[str, Entry], root: Path) -> None:
    for task in tasks:
        for _, relative in task.inputs:
            target = relative if inputs_dir == "." else f"{inputs_dir}/{relative}"
            parts = target.split("/")
            for depth in range(1, len(parts) + 1):
                prefix = "/".join(parts[:depth])
                entry = entries.get(prefix)
                if entry is not None and (depth == len(parts) or entry.kind != "d"):
                    raise SwarmSpecError(
                        f"input {relative!r} of task {task.task_id!r} would replace {root / prefix} in its replica: "
                        "rename the input, or place inputs elsewhere with environment_inputs_dir."
                    )


def _blocks(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _size(entries: Mapping[str, Entry], writable: Sequence[str]) -> TreeSize:
    total = sum(_blocks(e.size) if e.kind == "f" else BLOCK if e.kind == "d" else 0 for e in entries.values())
    writable_bytes = writable_entries = readonly_dirs = 0
    for path, entry in entries.items():
        if is_in_parts(path, writable):
            writable_entries += 1
            writable_bytes += _blocks(entry.size) if entry.kind == "f" else BLOCK if entry.kind == "d" else 0
        elif entry.kind == "d":
            readonly_dirs += 1
    return TreeSize(
        bytes=total + BLOCK,
        entries=len(entries) + 1,
        writable_bytes=writable_bytes,
        writable_entries=writable_entries,
        readonly_dirs=readonly_dirs + (0 if writable == (".",) else 1),
    )


def _digest(entries: Mapping[str, Entry], writable, workdir, inputs_dir, input_templates, output_templates) -> str:
    h = hashlib.sha256()
    for path in sorted(entries):
        e = entries[path]
        h.update(os.fsencode(f"{path}\0{e.kind}\0{e.size}\0{e.mode}\0{e.mtime_ns}\0{e.target}\0"))
    for group in (writable, (workdir, inputs_dir), input_templates, output_templates):
        h.update(os.fsencode("\0".join(group) + "\1"))
    return h.hexdigest()[:32]
