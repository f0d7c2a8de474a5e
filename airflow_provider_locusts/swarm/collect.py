"""Gathering: event logs → succeeded / failed with reasons; outputs moved into output_dir; manifest.

Works on a local view of the swarm root (the root itself, or what was fetched of a
remote root). Outputs are moved without ever replacing a file already in output_dir.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from airflow_provider_locusts.swarm.layout import SwarmLayout
from airflow_provider_locusts.swarm.progress import EventFold, TaskOutcome
from airflow_provider_locusts.swarm.spec import SwarmSpec

MANIFEST_PREFIX = "locusts_manifest."


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
    folder: str


@dataclass
class SwarmResult:
    swarm_id: str
    results: list[TaskResult]
    output_dir: str
    manifest: str

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
        """The JSON-able XCom return value."""
        return {
            "swarm_id": self.swarm_id,
            "total": len(self.results),
            "succeeded_count": len(self.succeeded),
            "failed_count": len(self.failed),
            "succeeded": self.succeeded,
            "failed": self.failed,
            "reasons": self.reasons,
            "output_dir": self.output_dir,
            "manifest": self.manifest,
        }


class OutputCollisionError(FileExistsError):
    """output_dir already holds a file this swarm would write."""


def manifest_path(output_dir: Path, swarm_id: str) -> Path:
    return output_dir / f"{MANIFEST_PREFIX}{swarm_id}.jsonl"


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


def check_output_dir(spec: SwarmSpec, layout: SwarmLayout, overwrite: bool) -> None:
    """Refuse to start when output_dir already holds files this swarm would write (unless ours)."""
    if overwrite or not spec.output_dir.exists():
        return
    ours = {i for i, entry in read_results(layout).items() if entry["state"] == "succeeded"}
    for task in spec.tasks:
        if task.index in ours:
            continue
        for out in task.outputs:
            if (spec.output_dir / out).exists():
                raise OutputCollisionError(
                    f"output_dir already holds {spec.output_dir / out}, which task {task.task_id!r} would write: "
                    "move it away, choose another output_dir, or set overwrite_outputs=True."
                )


def move_no_clobber(source: Path, target: Path, overwrite: bool) -> None:
    """Move source to target atomically; without `overwrite`, never replace an existing target."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if overwrite:
        try:
            os.replace(source, target)
            return
        except OSError:
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
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
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        shutil.copy2(source, tmp)
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise OutputCollisionError(f"{target} appeared in output_dir while collecting; it was left untouched.") from None
        finally:
            os.unlink(tmp)
    os.unlink(source)


def _failure_reason(outcome: TaskOutcome | None, task_dir: Path, lost: str | None, lost_managers: list[str]) -> str:
    if outcome is None or outcome.attempts == 0:
        return f"never started: {lost}" if lost else "never started"
    if not outcome.finished:
        return f"never finished: {lost}" if lost else "never finished"
    if lost and outcome.cut_off_by(lost_managers):
        return f"killed (exit code {outcome.exit_code}) as {lost}"
    parts = []
    if outcome.exit_code != 0:
        parts.append(f"exit code {outcome.exit_code}")
    if outcome.missing_outputs:
        missing_file = task_dir / ".locusts_missing"
        names = missing_file.read_text(errors="replace").split("\n") if missing_file.exists() else []
        parts.append("missing outputs: " + ", ".join(n for n in names if n))
    return "; ".join(parts)


def gather(
    spec: SwarmSpec,
    layout: SwarmLayout,
    swarm_id: str,
    overwrite: bool = False,
    lost_reason: str | None = None,
    lost_managers: list[str] | None = None,
) -> SwarmResult:
    """Decide every task's state, collect outputs of the succeeded ones and write the manifest.

    `lost_reason` explains tasks that never ended, or were killed with `lost_managers`
    (e.g. "its manager was lost (r0m0: dead (job TIMEOUT))").
    Idempotent: gathering again after an interruption finishes the job.
    """
    previous = read_results(layout)
    outcomes = fold_event_files(layout)
    out_dir = spec.output_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[TaskResult] = []
    for task in spec.tasks:
        before = previous.get(task.index)
        if before and before["state"] == "succeeded":
            results.append(TaskResult(**before))
            continue
        outcome = outcomes.get(task.index)
        task_dir = Path(layout.task_dir(task.folder))
        common = dict(
            index=task.index,
            id=task.task_id,
            exit_code=outcome.exit_code if outcome else None,
            attempts=outcome.attempts if outcome else 0,
            duration=outcome.duration if outcome else None,
            host=outcome.host if outcome else None,
            folder=str(task_dir),
        )
        if outcome and outcome.ok:
            missing = [o for o in task.outputs if not (task_dir / o).exists() and not (out_dir / o).exists()]
            if not missing:
                for o in task.outputs:
                    if (task_dir / o).exists():
                        move_no_clobber(task_dir / o, out_dir / o, overwrite)
                results.append(TaskResult(state="succeeded", reason=None, outputs=[str(out_dir / o) for o in task.outputs], **common))
                continue
            reason = "missing outputs: " + ", ".join(missing)
        else:
            reason = _failure_reason(outcome, task_dir, lost_reason, lost_managers or [])
        results.append(TaskResult(state="failed", reason=reason, outputs=[], **common))

    _write_jsonl(Path(layout.results), results)
    manifest = manifest_path(out_dir, swarm_id)
    _write_jsonl(manifest, results)
    return SwarmResult(swarm_id=swarm_id, results=results, output_dir=str(out_dir), manifest=str(manifest))


def _write_jsonl(path: Path, results: list[TaskResult]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps(asdict(r)) + "\n")
    os.replace(tmp, path)
