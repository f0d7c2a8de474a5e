"""Gathering: event logs → succeeded / failed with reasons; outputs into output_dir; manifest.

Decisions are made from a local view of the swarm root (the root itself, or what was
fetched of a remote one); outputs are moved by a sink (sinks.py), on this machine or
on the swarm's host, never replacing a file already in output_dir.
"""

from __future__ import annotations

import glob
import json
import os
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from airflow_provider_locusts.swarm.errors import OutputCollisionError
from airflow_provider_locusts.swarm.layout import SwarmLayout
from airflow_provider_locusts.swarm.progress import EventFold, TaskOutcome
from airflow_provider_locusts.swarm.sinks import OutputSink, output_target
from airflow_provider_locusts.swarm.table import TaskRow

MANIFEST_PREFIX = "locusts_manifest."
REPORT_PREFIX = "locusts_report."
MISSING_OUTPUTS_FILE = ".locusts_missing"
# Failed ids (with their reasons) the XCom return value names at most; every id is in the
# "succeeded" and "failed" XComs and in the manifest.
FAILED_IDS_SHOWN = 100
REASON_CHARS_SHOWN = 200  # the manifest has every reason whole
# Where sharded outputs go, under output_dir.
SHARD_FOLDERS = "batch_<k>"

__all__ = [
    "MANIFEST_PREFIX",
    "OutputCollisionError",
    "SwarmResult",
    "TaskResult",
    "check_output_dir",
    "fold_event_files",
    "gather",
    "manifest_name",
    "report_name",
    "read_results",
    "succeeded_indexes",
]


@dataclass
class TaskResult:
    index: int
    id: str
    state: str  # succeeded | failed
    reason: str | None
    exit_code: int | None
    attempts: int
    duration: float | None
    host: str | None
    outputs: list[str]
    folder: str  # the task folder on the swarm's host (stdout.txt, stderr.txt)
    started_at: float | None = None  # epoch seconds on the swarm's host, last attempt
    ended_at: float | None = None
    manager: str | None = None  # e.g. "r0m1": round 0, manager 1
    changes: dict | None = None  # Custom Environment: what the task created, modified, deleted

    @classmethod
    def from_entry(cls, entry: dict) -> TaskResult:
        return cls(**{k: v for k, v in entry.items() if k in cls.__dataclass_fields__})


@dataclass
class SwarmResult:
    swarm_id: str
    results: list[TaskResult]
    output_dir: str
    manifest: str
    extra_files: dict[str, str] = field(default_factory=dict)  # name → path (the report)
    outputs_sharded: bool = False  # outputs are in output_dir/batch_<k>/

    @property
    def succeeded(self) -> list[str]:
        return [r.id for r in self.results if r.state == "succeeded"]

    @property
    def failed(self) -> list[str]:
        return [r.id for r in self.results if r.state == "failed"]

    @property
    def reasons(self) -> dict[str, str]:
        return {r.id: r.reason or "" for r in self.results if r.state == "failed"}

    def summary(self) -> dict:
        """The XCom return value: small at any size. The full id lists are pushed under their
        own keys ("succeeded", "failed") and every task is in the manifest."""
        failed = [r for r in self.results if r.state == "failed"]
        shown = failed[:FAILED_IDS_SHOWN]
        return {
            "swarm_id": self.swarm_id,
            "total": len(self.results),
            "succeeded_count": len(self.results) - len(failed),
            "failed_count": len(failed),
            "failed_first": [r.id for r in shown],
            "reasons": {r.id: _shortened(r.reason or "") for r in shown},
            "xcom_keys": ["succeeded", "failed"],
            "output_dir": self.output_dir,
            "outputs_sharded_by": SHARD_FOLDERS if self.outputs_sharded else None,
            "manifest": self.manifest,
            "report": self.extra_files.get("report"),
        }


def _shortened(text: str) -> str:
    return text if len(text) <= REASON_CHARS_SHOWN else text[: REASON_CHARS_SHOWN - 1] + "…"


class GatherExtension(Protocol):
    """How an environment other than the Default one judges and collects its tasks
    (replica_gather.ChangesCollector for the Custom Environment)."""

    def failure_reason(self, task: TaskRow, default: str) -> str:
        """The reason a task failed, given the default one."""

    def details(self, task: TaskRow) -> dict | None:
        """What the manifest entry of a task that ran holds besides the usual fields."""

    def collect(self, tasks: Sequence[TaskRow], overwrite: bool) -> tuple[dict[int, str], dict[int, list[str]]]:
        """Collect what these tasks (which ended well) produced: (index → reason, for a task that
        failed after all; index → its outputs' paths in output_dir)."""


def manifest_name(swarm_id: str) -> str:
    return f"{MANIFEST_PREFIX}{swarm_id}.jsonl"


def report_name(swarm_id: str) -> str:
    return f"{REPORT_PREFIX}{swarm_id}.html"


def read_results(layout: SwarmLayout) -> dict[int, dict]:
    """Results recorded by earlier gathers of this swarm (index → manifest entry)."""
    path = Path(layout.results)
    if not path.exists():
        return {}
    with open(path, encoding="utf-8") as f:
        return {entry["index"]: entry for entry in map(json.loads, f)}


def fold_event_files(layout: SwarmLayout) -> dict[int, TaskOutcome]:
    fold = EventFold()
    # Rounds in order: a later round's attempt of a task follows the earlier one.
    for path in sorted(glob.glob(os.path.join(layout.exec_dir, "events_*")), key=_round_key):
        with open(path, "rb") as f:
            fold.feed_bytes(f.read(), manager=os.path.basename(path)[len("events_") :])
    return fold.outcomes


def _round_key(path: str) -> tuple[int, int]:
    name = os.path.basename(path)[len("events_r") :]
    round_no, _, manager = name.partition("m")
    return int(round_no), int(manager)


def succeeded_indexes(layout: SwarmLayout) -> set[int]:
    """Tasks a new try must not run again: gathered as succeeded, or ended well since."""
    done = {i for i, entry in read_results(layout).items() if entry["state"] == "succeeded"}
    done.update(i for i, outcome in fold_event_files(layout).items() if outcome.ok)
    return done


def check_output_dir(tasks: Sequence[TaskRow], layout: SwarmLayout, sink: OutputSink, overwrite: bool) -> None:
    """Refuse to start when output_dir already holds files this swarm would write (unless ours)."""
    if overwrite:
        return
    ours = {i for i, entry in read_results(layout).items() if entry["state"] == "succeeded"}
    wanted = [(task, output_target(task, out, sink.sharded)) for task in tasks if task.index not in ours for out in task.outputs]
    clash = sink.existing([out for _, out in wanted])
    if clash:
        owner = {out: task for task, out in wanted}
        first = clash[0]
        raise OutputCollisionError(
            f"output_dir already holds {sink.describe(first)}, which task {owner[first].task_id!r} would write: "
            "move it away, choose another output_dir, or set overwrite_outputs=True."
        )


def _failure_reason(outcome: TaskOutcome | None, missing_names: list[str], lost: str | None, lost_managers: list[str]) -> str:
    if outcome is None or outcome.attempts == 0:
        return f"never started: {lost}" if lost else "never started"
    if not outcome.finished:
        return f"never finished: {lost}" if lost else "never finished"
    if lost and outcome.cut_off_by(lost_managers):
        return f"killed (exit code {outcome.exit_code}) as {lost}"
    if outcome.timed_out:
        return f"timed out after {outcome.timed_out} s"  # whatever it had not written yet
    parts = []
    if outcome.exit_code != 0:
        parts.append(f"exit code {outcome.exit_code}")
    if outcome.missing_outputs:
        parts.append("missing outputs: " + ", ".join(missing_names))
    return "; ".join(parts)


def _reported_missing(layout: SwarmLayout, task: TaskRow) -> list[str]:
    path = Path(layout.task_dir(task.folder)) / MISSING_OUTPUTS_FILE
    if not path.exists():
        return []
    return [n for n in path.read_text(errors="replace").split("\n") if n]


def gather(
    tasks: Sequence[TaskRow],
    layout: SwarmLayout,
    swarm_id: str,
    sink: OutputSink,
    overwrite: bool = False,
    lost_reason: str | None = None,
    lost_managers: list[str] | None = None,
    host_root: str | None = None,
    extension: GatherExtension | None = None,
) -> SwarmResult:
    """Decide every task's state, collect outputs of the succeeded ones and write the manifest.

    `layout` is the local view: events, earlier results and the failed tasks' files.
    `lost_reason` explains tasks that never ended, or were killed with `lost_managers`
    (e.g. "its manager was lost (r0m0: dead (job TIMEOUT))"). `host_root`: the root as
    the swarm's host sees it, for the folders named in the manifest.
    `extension`: judges and collects the tasks of another environment than the Default one.
    Idempotent: gathering again after an interruption finishes the job.
    """
    previous = read_results(layout)
    outcomes = fold_event_files(layout)
    # Plain strings: this loop runs once per task (SwarmLayout.task_dir, as a concatenation).
    host_work = SwarmLayout(host_root or layout.root).work_dir
    results: dict[int, TaskResult] = {}
    to_collect: list[TaskRow] = []
    for task in tasks:
        index = task.index
        before = previous.get(index)
        if before and before["state"] == "succeeded":
            results[index] = TaskResult.from_entry(before)
            continue
        outcome = outcomes.get(index)
        folder = _under(host_work, task.folder)
        if outcome is None:
            result = TaskResult(index, task.task_id, "failed", None, None, 0, None, None, [], folder)
        else:
            result = TaskResult(
                index, task.task_id, "failed", None, outcome.exit_code, outcome.attempts, outcome.duration,
                outcome.host, [], folder, outcome.started_at, outcome.ended_at, outcome.manager,
            )
        results[index] = result
        if outcome is not None and outcome.ok:
            to_collect.append(task)
        else:
            missing = _reported_missing(layout, task) if outcome and outcome.missing_outputs else []
            result.reason = _failure_reason(outcome, missing, lost_reason, lost_managers or [])
            if extension and outcome:
                result.reason = extension.failure_reason(task, result.reason)
        if extension and outcome:
            result.changes = extension.details(task)

    if extension is None:
        missing_by_index = sink.collect(to_collect, overwrite)
        failed = {i: "missing outputs: " + ", ".join(m) for i, m in missing_by_index.items() if m}
        # sink.describe(output_target(...)), as a concatenation: describe("") is output_dir and
        # its separator, and targets are relative.
        prefix, sharded = sink.describe(""), sink.sharded
        collected = {
            t.index: [prefix + t.batch + "/" + o for o in t.outputs] if sharded else [prefix + o for o in t.outputs]
            for t in to_collect
        }
    else:
        failed, collected = extension.collect(to_collect, overwrite)
    for task in to_collect:
        result = results[task.index]
        if task.index in failed:
            result.reason = failed[task.index]
        else:
            result.state = "succeeded"
            result.outputs = collected[task.index]

    ordered = [results[t.index] for t in tasks]
    lines = "".join(map(_manifest_line, ordered))
    _write_text(Path(layout.results), lines)
    manifest = sink.write_text(manifest_name(swarm_id), lines)
    return SwarmResult(
        swarm_id=swarm_id, results=ordered, output_dir=sink.output_dir, manifest=manifest, outputs_sharded=sink.sharded
    )


def _under(base: str, relative: str) -> str:
    """posixpath.join(base, relative) for a relative path, as a concatenation."""
    if relative.startswith("/") or base.endswith("/"):
        return posixpath.join(base, relative)
    return base + "/" + relative


_RESULT_FIELDS = tuple(TaskResult.__dataclass_fields__)


def manifest_entry(result: TaskResult) -> dict:
    """The manifest's entry of a task: what dataclasses.asdict gives (but `changes` when there
    are none), without its deep copies: far faster, once per task. Shares the result's lists."""
    entry = {name: getattr(result, name) for name in _RESULT_FIELDS}
    if entry["changes"] is None:
        del entry["changes"]  # the Default Environment's entries keep their fields
    return entry


def _manifest_line(result: TaskResult) -> str:
    return json.dumps(manifest_entry(result)) + "\n"


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
