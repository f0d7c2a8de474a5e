"""The task table (exec/tasks.jsonl) and the swarm's settings (exec/swarm.json).

Both are written into the root when a swarm is staged, so that everything after the
start (watch, reschedule, gather, the Swarm view) works from the root alone, on any
machine: no rescan of input_dir, no staging copy of an earlier worker.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from airflow_provider_locusts.swarm.spec import TaskSpec

# What staging put into a task folder besides its inputs, in roots staged before the command
# moved to exec/command.sh (rows without a "staged" field).
TASK_SCRIPT = "task.sh"


@dataclass(frozen=True)
class TaskRow:
    """One task as the root records it: enough to run it again, judge it and collect it."""

    index: int
    task_id: str
    folder: str  # relative to work/
    outputs: tuple[str, ...]  # compulsory outputs, relative to the folder
    staged: tuple[str, ...]  # what staging put into the folder (its inputs)
    args: tuple[str, ...] = ()  # argument mode: the task's values of <arg0>, <arg1>, ...

    @property
    def batch(self) -> str:
        """The batch folder it lives in (batch_<k>): also its outputs' shard when sharded."""
        return self.folder.split("/", 1)[0]


def task_row_line(task: TaskSpec) -> str:
    staged = [relative for _, relative in task.inputs]
    row = {"index": task.index, "id": task.task_id, "folder": task.folder, "outputs": list(task.outputs), "staged": staged}
    if task.args:
        row["args"] = list(task.args)
    return json.dumps(row) + "\n"


def parse_task_table(lines: Iterable[str]) -> list[TaskRow]:
    rows = []
    for line in lines:
        if not line.strip():
            continue
        entry = json.loads(line)
        rows.append(
            TaskRow(
                index=entry["index"],
                task_id=entry["id"],
                folder=entry["folder"],
                outputs=tuple(entry["outputs"]),
                staged=tuple(entry.get("staged", (TASK_SCRIPT,))),
                args=tuple(entry.get("args", ())),
            )
        )
    return rows


def as_rows(tasks: Sequence[TaskSpec]) -> list[TaskRow]:
    return parse_task_table(task_row_line(t) for t in tasks)
