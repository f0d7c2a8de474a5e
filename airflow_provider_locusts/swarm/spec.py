"""The swarm description, validated: every bad input becomes one SwarmSpecError saying what to fix.

Nothing here touches the swarm root: validation finishes before anything is staged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from airflow_provider_locusts.swarm.command import CommandTemplate, SwarmSpecError

if TYPE_CHECKING:
    from airflow_provider_locusts.swarm.environment import EnvironmentSpec

ID_HANDLE = "<id>"
# Characters kept as they are in a task folder name; anything else becomes "_".
_FOLDER_SAFE = re.compile(r"[^A-Za-z0-9._+-]")
_SHARED_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

__all__ = ["SwarmSpec", "SwarmSpecError", "TaskSpec", "build_spec", "ID_HANDLE"]


@dataclass(frozen=True)
class TaskSpec:
    """One task of the swarm, fully resolved."""

    index: int
    task_id: str
    folder: str  # "batch_<k>/task_<safe id>", relative to work/
    inputs: tuple[tuple[Path, str], ...]  # (source file, path inside the task folder)
    args: tuple[str, ...]
    outputs: tuple[str, ...]  # compulsory outputs, relative to the task folder


@dataclass(frozen=True)
class SwarmSpec:
    """A validated swarm: the tasks, the command, the shared inputs and where results go."""

    command: CommandTemplate
    tasks: tuple[TaskSpec, ...]
    shared_inputs: Mapping[str, Path]
    output_templates: tuple[str, ...]
    output_dir: Path
    processes: int
    batch_size: int
    argument_mode: bool = False
    extra: Mapping[str, object] = field(default_factory=dict)
    # A Custom Environment (environment.py): every task runs in a replica of a whole tree.
    environment: EnvironmentSpec | None = None

    @property
    def total(self) -> int:
        return len(self.tasks)

    def shared_runtime_name(self, name: str) -> str:
        """Where shared input NAME lives, relative to the swarm's shared/ folder."""
        return f"{name}/{self.shared_inputs[name].name}"


def build_spec(
    *,
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
    """Validate the user's description of a swarm and resolve its tasks."""
    if not isinstance(command, str) or not command.strip():
        raise SwarmSpecError("command is empty: give the shell command each task runs, e.g. 'wc -l in_<id>.txt > n_<id>.txt'.")
    _check_positive_int("processes", processes)
    _check_positive_int("batch_size", batch_size)
    if not output_dir or not str(output_dir).strip():
        raise SwarmSpecError("output_dir is empty: give the folder where outputs and the manifest are collected.")
    output_dir = Path(output_dir).expanduser().absolute()
    input_path = Path(input_dir).expanduser().absolute() if input_dir else None

    if args is not None and task_inputs:
        raise SwarmSpecError("args and task_inputs are both given: use task_inputs (one task per id found in input_dir) or args (one task per argument list), not both.")
    if args is None and not task_inputs:
        raise SwarmSpecError("no tasks described: give task_inputs (file templates with <id>, matched in input_dir) or args (a list of argument lists).")

    shared = _resolve_shared_inputs(shared_inputs or {}, input_path)
    output_templates = tuple(_check_output_template(t) for t in (outputs or ()))
    template = CommandTemplate.parse(command, shared_names=set(shared))

    if args is not None:
        tasks = _tasks_from_args(args, template, output_templates, batch_size)
        argument_mode = True
    else:
        if template.max_arg_index is not None:
            raise SwarmSpecError(f"command uses <arg{template.max_arg_index}> but no args were given: <argK> handles need args=[[...], ...].")
        tasks = _tasks_from_inputs(input_path, tuple(task_inputs), output_templates, batch_size)
        argument_mode = False

    return SwarmSpec(
        command=template,
        tasks=tasks,
        shared_inputs=shared,
        output_templates=output_templates,
        output_dir=output_dir,
        processes=processes,
        batch_size=batch_size,
        argument_mode=argument_mode,
    )


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SwarmSpecError(f"{name} must be an integer >= 1, got {value!r}.")


def _resolve_shared_inputs(shared_inputs: Mapping[str, str | Path], input_dir: Path | None) -> dict[str, Path]:
    if not isinstance(shared_inputs, Mapping):
        raise SwarmSpecError(f"shared_inputs must be a mapping {{NAME: path}}, got {type(shared_inputs).__name__}.")
    resolved: dict[str, Path] = {}
    for name, path in shared_inputs.items():
        if not isinstance(name, str) or not _SHARED_NAME.match(name):
            raise SwarmSpecError(f"shared input name {name!r} is not valid: use letters, digits and '_' (not starting with a digit), e.g. 'sf1'.")
        p = Path(path).expanduser()
        if not p.is_absolute():
            if input_dir is None:
                raise SwarmSpecError(f"shared input {name!r} has the relative path {str(path)!r} but no input_dir is set: give an absolute path.")
            p = input_dir / p
        if not p.is_file():
            raise SwarmSpecError(f"shared input {name!r} does not exist or is not a file: {p}.")
        resolved[name] = p.absolute()
    return resolved


def _check_relative_template(kind: str, template: str) -> PurePosixPath:
    if not isinstance(template, str) or not template.strip():
        raise SwarmSpecError(f"{kind} template {template!r} is empty: give a file name such as 'out_<id>.txt'.")
    if "\0" in template or "\n" in template:
        raise SwarmSpecError(f"{kind} template {template!r} contains a NUL or newline: file name templates must be one line.")
    pure = PurePosixPath(template)
    if pure.is_absolute() or ".." in pure.parts:
        raise SwarmSpecError(f"{kind} template {template!r} escapes the task folder: give a path relative to it, without '..'.")
    return pure


def _check_output_template(template: str) -> str:
    _check_relative_template("output", template)
    if ID_HANDLE not in template:
        raise SwarmSpecError(f"output template {template!r} has no <id>: every task would write the same file in output_dir; add <id>, e.g. 'result_<id>.txt'.")
    return template


def _folder_name(task_id: str) -> str:
    return "task_" + _FOLDER_SAFE.sub("_", task_id)


def _assemble(
    resolved: Sequence[tuple[str, tuple[tuple[Path, str], ...], tuple[str, ...]]],
    output_templates: tuple[str, ...],
    batch_size: int,
) -> tuple[TaskSpec, ...]:
    """Give each task its index, batch and folder; refuse ids whose folders would collide."""
    owner_of_folder: dict[str, str] = {}
    tasks = []
    for index, (task_id, inputs, args) in enumerate(resolved):
        name = _folder_name(task_id)
        if name in owner_of_folder:
            raise SwarmSpecError(
                f"ids {owner_of_folder[name]!r} and {task_id!r} would share the task folder {name!r} "
                "(characters other than letters, digits and '._+-' become '_'): rename one of the inputs."
            )
        owner_of_folder[name] = task_id
        outputs = tuple(t.replace(ID_HANDLE, task_id) for t in output_templates)
        tasks.append(
            TaskSpec(
                index=index,
                task_id=task_id,
                folder=f"batch_{index // batch_size}/{name}",
                inputs=inputs,
                args=args,
                outputs=outputs,
            )
        )
    return tuple(tasks)


def _tasks_from_args(
    args: Sequence[Sequence[object]],
    template: CommandTemplate,
    output_templates: tuple[str, ...],
    batch_size: int,
) -> tuple[TaskSpec, ...]:
    if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
        raise SwarmSpecError("args must be a list of argument lists, e.g. [['a', 1], ['b', 2]].")
    if not args:
        raise SwarmSpecError("args is empty: give at least one argument list.")
    resolved = []
    for i, row in enumerate(args):
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence):
            raise SwarmSpecError(f"args[{i}] is {row!r}: each entry must itself be a list of arguments.")
        values = tuple(str(v) for v in row)
        if template.max_arg_index is not None and template.max_arg_index >= len(values):
            raise SwarmSpecError(
                f"command uses <arg{template.max_arg_index}> but args[{i}] has only {len(values)} value(s): give every argument list enough values."
            )
        if any("\0" in v for v in values):
            raise SwarmSpecError(f"args[{i}] contains a NUL character, which no shell argument can hold.")
        try:
            for v in values:
                v.encode("utf-8", "surrogateescape")  # how the task list is written
        except UnicodeEncodeError:
            raise SwarmSpecError(f"args[{i}] contains a lone surrogate, which is not text: pass valid Unicode strings.") from None
        resolved.append((str(i), (), values))
    return _assemble(resolved, output_templates, batch_size)


def _tasks_from_inputs(
    input_dir: Path | None,
    task_inputs: tuple[str, ...],
    output_templates: tuple[str, ...],
    batch_size: int,
) -> tuple[TaskSpec, ...]:
    if input_dir is None:
        raise SwarmSpecError("task_inputs is given but input_dir is not: give the folder holding the input files.")
    if not input_dir.is_dir():
        raise SwarmSpecError(f"input_dir does not exist or is not a folder: {input_dir}.")
    if not any(input_dir.iterdir()):
        raise SwarmSpecError(f"input_dir is empty: {input_dir}; put the task input files there first.")
    for t in task_inputs:
        _check_relative_template("task input", t)
        if ID_HANDLE not in t:
            raise SwarmSpecError(f"task input template {t!r} has no <id>: it would be the same file for every task; use shared_inputs for that, or add <id>.")

    found: dict[str, dict[str, Path]] = {}  # id -> template -> file
    for t in task_inputs:
        for task_id, path in _match_template(input_dir, t):
            found.setdefault(task_id, {})[t] = path
    if not found:
        raise SwarmSpecError(
            f"no task id found in {input_dir}: no file matches {', '.join(repr(t) for t in task_inputs)} (<id> stands for the variable part of the name)."
        )
    for task_id, by_template in found.items():
        missing = [t.replace(ID_HANDLE, task_id) for t in task_inputs if t not in by_template]
        if missing:
            have = next(iter(by_template.values()))
            raise SwarmSpecError(f"id {task_id!r} has {have.name!r} but no {missing[0]!r} in {input_dir}: add the file or remove the id's other inputs.")

    resolved = []
    for task_id in _sort_ids(found):
        inputs = tuple((found[task_id][t], t.replace(ID_HANDLE, task_id)) for t in task_inputs)
        resolved.append((task_id, inputs, ()))
    return _assemble(resolved, output_templates, batch_size)


def _match_template(input_dir: Path, template: str):
    """Yield (id, file) for every file in input_dir matching the template; <id> matches within one path component."""
    pieces = template.split(ID_HANDLE)
    glob_pattern = "*".join(_glob_escape(p) for p in pieces)
    # The first <id> captures, later ones must repeat the same text.
    regex_parts = [re.escape(pieces[0])]
    for i, piece in enumerate(pieces[1:]):
        regex_parts.append("(?P<id>[^/]+)" if i == 0 else "(?P=id)")
        regex_parts.append(re.escape(piece))
    regex = re.compile("".join(regex_parts) + r"\Z", re.DOTALL)
    for path in input_dir.glob(glob_pattern):
        if not path.is_file():
            continue
        m = regex.match(path.relative_to(input_dir).as_posix())
        if m:
            yield m.group("id"), path


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _sort_ids(ids) -> list[str]:
    """Numeric order when every id is an integer, text order otherwise."""
    ids = list(ids)
    if all(re.fullmatch(r"-?\d+", i) for i in ids):
        return sorted(ids, key=lambda i: (int(i), i))
    return sorted(ids)
