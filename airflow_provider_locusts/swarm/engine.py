"""The swarm engine: prepare a round, start its managers, poll, cancel, reschedule, gather.

Airflow-free. It acts on the swarm's host only through a Shell (scripts run where the
root lives) and reads and builds files through a local view of the root: the root
itself when it is on this machine or on a filesystem both sides share, or a scratch
folder that a Transfer fills from and ships to the root (SSH copy mode).

Only a new try's round needs the swarm's description (SwarmSpec: it stages inputs).
Everything after the start works from the root alone (SwarmEngine.attach): the task
table, the settings and the ledger are read back from it, on whichever machine runs.
"""

from __future__ import annotations

import errno
import gc
import json
import logging
import os
import posixpath
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from airflow_provider_locusts.swarm import collect
from airflow_provider_locusts.swarm.errors import SwarmExecutionError, SwarmNoSpaceError, SwarmSpecError
from airflow_provider_locusts.swarm.host_commands import (
    CLEAR_FOLDERS_SCRIPT,
    DROP_EMPTY_LOGS_SCRIPT,
    CancelReport,
    LogTail,
    ManagerDiagnosis,
    Removal,
    cancel_command,
    diagnose_command,
    log_tail_command,
    parse_cancel_output,
    parse_diagnosis,
    parse_log_tail,
    parse_read_files,
    parse_removal,
    poll_command,
    read_files_command,
    remove_folder_command,
)
from airflow_provider_locusts.swarm.layout import SwarmLayout
from airflow_provider_locusts.swarm.preflight import PreflightReport, preflight
from airflow_provider_locusts.swarm.progress import LIVE_STATES, PollResult, parse_poll_output
from airflow_provider_locusts.swarm.render import host_script, render
from airflow_provider_locusts.swarm.replica import ENVIRONMENT, EnvironmentStaging, concurrency, remove_replicas
from airflow_provider_locusts.swarm.replica_gather import ChangesCollector
from airflow_provider_locusts.swarm.shell import LocalShell, Shell
from airflow_provider_locusts.swarm.sinks import HostSink, LocalSink, OutputSink
from airflow_provider_locusts.swarm.schedulers import SCHEDULERS, get_scheduler
from airflow_provider_locusts.swarm.spec import SwarmSpec
from airflow_provider_locusts.swarm.stage import (
    EnvironmentBuilder,
    ManagerPlan,
    free_space,
    split_among_managers,
    write_file,
    write_managers,
)
from airflow_provider_locusts.swarm.table import TaskRow, as_rows, parse_task_table

__all__ = ["SCHEDULERS", "EngineOptions", "Round", "SwarmEngine", "Transfer"]
# What a gather hands a report writer: the failed tasks' log tails, bounded in number and size.
REPORT_MAX_TAILS = 200
REPORT_TAIL_BYTES = 4096

# Copy mode's scratch view holding up to this many task folders is removed in place; above, in
# the background (see SwarmEngine.close).
SCRATCH_REMOVED_IN_PLACE = 1000

# gather(report=...): (manifest records, {task id: {"stderr": text, "stdout": text}},
# {"swarm_id", "output_dir", "manifest"}) -> the report's HTML.
ReportWriter = Callable[[list[dict], dict[str, dict[str, str]], dict[str, str]], str]

log = logging.getLogger(__name__)


class Transfer(Protocol):
    """Moves files between the local view of the root and the real (remote) root."""

    def push(self, local_root: Path, remote_root: str, relative_paths: list[str]) -> None: ...

    def pull(self, remote_root: str, local_root: Path, relative_paths: list[str]) -> None: ...


@dataclass(frozen=True)
class EngineOptions:
    scheduler: str = "direct"
    nodes: int = 1
    min_tasks_per_process: int = 1
    heartbeat_interval: int = 5
    task_retries: int = 0  # re-runs of a failed task inside its manager
    task_timeout: int | None = None  # seconds an attempt may run before it is stopped and fails
    input_staging: str = "hardlink"
    overwrite_outputs: bool = False
    # Above this many tasks, outputs go to output_dir/batch_<k>/ (one folder per task batch)
    # rather than all into output_dir itself.
    shard_outputs_above: int = 10000
    group_writable: bool = False  # shared filesystem: the cluster account writes into our folders
    # scheduler="slurm" / "oar": #SBATCH / #OAR settings, shell lines before the manager, command prefix
    slurm_options: dict = field(default_factory=dict)
    oar_options: dict = field(default_factory=dict)
    setup: tuple[str, ...] = ()
    container: str = ""

    @classmethod
    def from_dict(cls, data: dict) -> EngineOptions:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["setup"] = tuple(known.get("setup") or ())
        return cls(**known)


@dataclass(frozen=True)
class Round:
    number: int
    managers: list[str]
    task_count: int


class SwarmEngine:
    """One swarm root, reached through `shell` (and `transfer` in copy mode).

    :param spec: the swarm's description; only a new try's round needs it (None: attached)
    :param local_root: the local view of the root (default: the root itself)
    :param scratch: local_root is a scratch folder of this engine's, removed by close()
    :param output_dir: where outputs go (default: the spec's); output_dir_on_host: it is a
        folder on the swarm's host, where outputs are moved without crossing the network
    """

    def __init__(
        self,
        spec: SwarmSpec | None,
        swarm_id: str,
        root: str,
        shell: Shell,
        options: EngineOptions = EngineOptions(),
        local_root: Path | None = None,
        transfer: Transfer | None = None,
        output_dir: str | Path | None = None,
        output_dir_on_host: bool | None = None,
        scratch: bool = False,
    ):
        self.spec = spec
        self.swarm_id = swarm_id
        self.layout = SwarmLayout(root)
        self.local_root = Path(local_root or root)
        self.local = SwarmLayout(str(self.local_root))
        self.shell = shell
        self.options = options
        self.transfer = transfer
        self.output_dir = str(output_dir if output_dir is not None else spec.output_dir if spec else "")
        # None on an attached engine: as the root's settings say.
        self.output_dir_on_host = bool(output_dir_on_host) if spec else output_dir_on_host
        self.scratch = scratch
        self._rows: list[TaskRow] | None = as_rows(spec.tasks) if spec else None
        self._processes = spec.processes if spec else None
        # Why each attempt needs a bash of its own (None: a subshell of the manager does).
        self._own_shell = spec.command.needs_own_shell if spec else None
        # A Custom Environment's settings (environment.py), as the root records them.
        self.environment: dict | None = spec.environment.settings() if spec and spec.environment else None

    @classmethod
    def attach(
        cls,
        root: str,
        shell: Shell,
        local_root: Path | None = None,
        transfer: Transfer | None = None,
        output_dir: str | None = None,
        output_dir_on_host: bool | None = None,
        scratch: bool = False,
    ) -> SwarmEngine:
        """An engine for a swarm that was staged already: its settings and task table are
        read from the root when first needed (no SwarmSpec, no input_dir)."""
        return cls(
            None,
            posixpath.basename(root.rstrip("/")),
            root,
            shell,
            local_root=local_root,
            transfer=transfer,
            output_dir=output_dir,
            output_dir_on_host=output_dir_on_host,
            scratch=scratch,
        )

    def close(self) -> None:
        """Remove this engine's scratch view (copy mode); the root itself stays. A view holding
        more than SCRATCH_REMOVED_IN_PLACE task folders (a large round staged, outputs or logs
        pulled at gather) is renamed away at once and deleted in the background, as cleanup()
        does with the root; a smaller one is removed here and now."""
        if not self.scratch:
            return
        if _holds_more_folders_than(self.local.work_dir, SCRATCH_REMOVED_IN_PLACE):
            try:
                removal = remove_folder(LocalShell(), str(self.local_root), "copy")
                log.debug("Swarm %s: scratch folder %s", self.swarm_id, removal.line())
                return
            except (SwarmExecutionError, ValueError, OSError) as error:
                log.warning("Swarm %s: removing the scratch folder %s in the background failed (%s): removing it now",
                            self.swarm_id, self.local_root, error)
        shutil.rmtree(self.local_root, ignore_errors=True)

    # --- what the root records: settings, task table, ledger ---------------------------------
    def _load_from_root(self) -> None:
        """Settings and task table of an attached engine, from the (pulled) local view."""
        if self._rows is not None:
            return
        self._pull(["exec"])
        path = Path(self.local.settings)
        if not path.exists():
            raise SwarmExecutionError(
                f"{self.layout.root} holds no swarm settings (exec/swarm.json): it was not staged by this "
                "version of the provider, or it is not a swarm root."
            )
        settings = json.loads(path.read_text())
        self.options = EngineOptions.from_dict(settings["options"])
        self._processes = settings["processes"]
        self._own_shell = settings.get("own_shell")
        self.swarm_id = settings["swarm_id"]
        if not self.output_dir:
            self.output_dir = settings["output_dir"]
        if self.output_dir_on_host is None:
            self.output_dir_on_host = settings.get("output_dir_on_host", False)
        self.environment = settings.get("environment")
        with open(self.local.task_table, encoding="utf-8", errors="surrogateescape") as f:
            self._rows = parse_task_table(f)

    @property
    def tasks(self) -> list[TaskRow]:
        self._load_from_root()
        return self._rows

    @property
    def processes(self) -> int:
        self._load_from_root()
        return self._processes

    def _write_settings(self) -> None:
        settings = {
            "swarm_id": self.swarm_id,
            "processes": self._processes,
            "own_shell": self._own_shell,
            "output_dir": self.output_dir,
            "output_dir_on_host": self.output_dir_on_host,
            "options": asdict(self.options),
        }
        if self.environment:
            settings["environment"] = self.environment
        write_file(Path(self.local.settings), json.dumps(settings, indent=1))

    def read_files(self, names: list[str]) -> dict[str, bytes | None]:
        """Small files of the root (relative names), read on the host in one round trip."""
        script, args = read_files_command(self.layout.root, names)
        result = self.shell.run_script(script, args)
        result.check(f"reading {', '.join(names)} in the swarm root {self.layout.root}")
        return parse_read_files(result.stdout)

    def read_ledger(self) -> dict:
        text = self.read_files(["exec/ledger.json"])["exec/ledger.json"]
        return json.loads(text) if text else {"swarm_id": self.swarm_id, "rounds": []}

    def _local_ledger(self) -> dict:
        path = Path(self.local.ledger)
        return json.loads(path.read_text()) if path.exists() else {"swarm_id": self.swarm_id, "rounds": []}

    def _append_round(self, ledger: dict, number: int, kind: str, managers: list[str], tasks: int) -> Round:
        ledger["rounds"].append(
            {
                "round": number,
                "kind": kind,
                "managers": managers,
                "tasks": tasks,
                "scheduler": self.options.scheduler,
                "prepared_at": time.time(),
            }
        )
        path = Path(self.local.ledger)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(ledger, indent=1))
        tmp.replace(path)
        return Round(number, managers, tasks)

    def live_round(self) -> Round | None:
        """The last round, if any of its managers is still alive (a retry resumes watching it)."""
        ledger = self.read_ledger()
        if not ledger["rounds"]:
            return None
        last = ledger["rounds"][-1]
        status = self.poll({m: None for m in last["managers"]})
        if any(s.state in LIVE_STATES for s in status.managers.values()):
            return Round(last["round"], last["managers"], last["tasks"])
        return None

    def reschedules_in_a_row(self) -> int:
        """Reschedule rounds since the last round started by a try: what `max_reschedules` limits."""
        count = 0
        for entry in reversed(self.read_ledger()["rounds"]):
            if entry.get("kind") != "reschedule":
                break
            count += 1
        return count

    # --- preparing a round ------------------------------------------------------------------
    def preflight(self, shared: bool = False, root_setting: str = "remote_root") -> PreflightReport:
        """One round trip to the host before anything is staged: see preflight.py."""
        return preflight(
            self.shell,
            self.layout.root,
            self.options.scheduler,
            shared_view=self.local_root if shared else None,
            folder_mode=0o2775 if self.options.group_writable else 0o755,
            root_setting=root_setting,
        )

    def sink(self) -> OutputSink:
        self._load_from_root()
        sharded = self.outputs_sharded
        if self.output_dir_on_host:
            return HostSink(self.shell, self.output_dir, self.layout.work_dir, sharded)
        return LocalSink(self.output_dir, self.local.work_dir, sharded)

    @property
    def outputs_sharded(self) -> bool:
        """Outputs go to output_dir/batch_<k>/ when the swarm has more than shard_outputs_above tasks."""
        return len(self.tasks) > self.options.shard_outputs_above

    def prepare_round(self) -> Round | None:
        """Stage a new try's round: every task that has not succeeded; None when none is left."""
        if self.spec is None:
            raise SwarmSpecError("a new round needs the swarm's description: this engine was attached to a root only")
        self._pull(["exec"])
        done = collect.succeeded_indexes(self.local)
        todo = [t for t in self.spec.tasks if t.index not in done]
        if not todo:
            return None
        collect.check_output_dir(self.tasks, self.local, self.sink(), self.options.overwrite_outputs)
        environment = self._prepare_environment(todo)
        ledger = self._local_ledger()  # exec/ was just pulled: no second round trip
        number = len(ledger["rounds"])
        plans = split_among_managers(todo, self.options.nodes, self.spec.processes, self.options.min_tasks_per_process, number)

        builder = EnvironmentBuilder(
            self.spec, self.local_root, self.layout.root, self.options.input_staging, self.options.group_writable
        )
        needed, free = builder.space_needed(todo), free_space(self.local_root)
        if needed[0] > free[0] or needed[1] > free[1]:
            raise self._no_space(len(todo), needed, free)
        try:
            builder.create_root()
            builder.write_task_table()
            builder.stage_shared()
            builder.write_command()
            builder.stage_tasks(todo)
            if environment is not None:
                environment.stage()
            self._write_settings()
            self._write_round_scripts(plans)
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
            raise self._no_space(len(todo), needed, free_space(self.local_root)) from error
        if environment is not None:
            # Sealed before the round is recorded: a round never starts on an unsealed tree.
            self._push([ENVIRONMENT])
            environment.seal()
        round_ = self._append_round(ledger, number, "start", [p.name for p in plans], len(todo))
        if self.transfer is not None:
            # The host's copies of these folders hold an earlier attempt's files: clear them,
            # since unpacking over them would leave those files in place.
            self._clear_folders([t.folder for t in todo])
        self._push(["."])
        return round_

    def _prepare_environment(self, todo: list) -> EnvironmentStaging | None:
        """A Custom Environment's checks before anything is staged (see replica.py): None for
        the Default Environment."""
        if self.spec.environment is None:
            return None
        sink = self.sink()
        if not self.options.overwrite_outputs:
            collector = ChangesCollector(self.local, sink, self.environment["writable"])
            clash = collector.existing(todo)
            if clash:
                owner = {collector.output_folder(t): t.task_id for t in todo}
                raise collect.OutputCollisionError(
                    f"output_dir already holds {sink.describe(clash[0])}, where task {owner[clash[0]]!r}'s changes would go: "
                    "move it away, choose another output_dir, or set overwrite_outputs=True."
                )
        settings = Path(self.local.settings)
        recorded = json.loads(settings.read_text()).get("environment") if settings.exists() else None
        staging = EnvironmentStaging(
            self.spec,
            self.shell,
            self.local_root,
            self.layout.root,
            dir_mode=0o2775 if self.options.group_writable else 0o755,
            other_account=self.options.group_writable,
        )
        staging.prepare(
            todo,
            concurrency(len(todo), self.options.nodes, self.spec.processes),
            recorded["digest"] if recorded else None,
        )
        return staging

    def _no_space(self, tasks: int, needed: tuple[int, int], free: tuple[int, int]) -> SwarmNoSpaceError:
        mb = 1 << 20
        return SwarmNoSpaceError(
            f"not enough space to stage {tasks} task(s) in {self.local_root}: about {needed[0] / mb:.1f} MB and "
            f"{needed[1]} inodes needed, {free[0] / mb:.1f} MB and {free[1]} inodes free on its filesystem. Free some "
            "space there, or choose a work_root with room (inputs are linked, not copied, when they are on the same "
            "filesystem); nothing was started."
        )

    def reschedule(self, lost_managers: list[str]) -> Round | None:
        """A round for the tasks the loss of `lost_managers` cut off (see TaskOutcome.cut_off_by):
        a task that ended on its own, well or badly, keeps its result. Works from the root
        alone: each folder is reset on the host to what staging put there."""
        self._load_from_root()
        outcomes = collect.fold_event_files(self.local)
        todo = [t for t in self.tasks if t.index not in outcomes or outcomes[t.index].cut_off_by(lost_managers)]
        if not todo:
            return None
        ledger = self._local_ledger()
        number = len(ledger["rounds"])
        plans = split_among_managers(todo, self.options.nodes, self.processes, self.options.min_tasks_per_process, number)
        if self.environment:
            remove_replicas(self.shell, self.layout.root, todo)  # each runs again in a fresh replica
        self._reset_folders(todo)
        # A lost manager may not have removed the empty logs of the tasks it finished.
        todo_indexes = {t.index for t in todo}
        finished = [
            t.folder
            for t in self.tasks
            if t.index not in todo_indexes and t.index in outcomes and outcomes[t.index].manager in lost_managers
        ]
        self._drop_empty_logs(finished)
        self._write_round_scripts(plans)
        round_ = self._append_round(ledger, number, "reschedule", [p.name for p in plans], len(todo))
        self._push(["exec"])
        return round_

    def _write_round_scripts(self, plans: list[ManagerPlan]) -> None:
        write_managers(
            self.local,
            self.layout,
            plans,
            self.processes,
            self.options.heartbeat_interval,
            self.options.scheduler,
            self.options.task_retries,
            self.options.task_timeout,
            self._own_shell,
        )
        scheduler = get_scheduler(self.options.scheduler)
        if scheduler.job_script_kind:
            directives = scheduler.directives(getattr(self.options, scheduler.options_name), self.processes)
            for plan in plans:
                text = scheduler.job_script(
                    manager=plan.name,
                    swarm_id=self.swarm_id,
                    root=self.layout.root,
                    log=self.layout.manager_file(plan.name, "log"),
                    manager_script=self.layout.manager_file(plan.name, "sh"),
                    directives=directives,
                    setup=self.options.setup,
                    container=self.options.container,
                )
                write_file(Path(self.local.manager_file(plan.name, scheduler.job_script_kind)), text, 0o755)

    def _clear_folders(self, folders: list[str]) -> None:
        listing = b"".join(f.encode("utf-8", "surrogateescape") + b"\0" for f in folders)
        self.shell.run_script(CLEAR_FOLDERS_SCRIPT, [self.layout.work_dir], stdin_data=listing).check(
            "clearing task folders before staging them again"
        )

    def _drop_empty_logs(self, folders: list[str]) -> None:
        if folders:
            listing = b"".join(_nul(f) for f in folders)
            self.shell.run_script(DROP_EMPTY_LOGS_SCRIPT, [self.layout.work_dir], stdin_data=listing).check(
                "removing the empty logs of the tasks a lost manager finished"
            )

    def _reset_folders(self, tasks: list[TaskRow]) -> None:
        records = b"".join(
            _nul(t.folder) + _nul(str(len(t.staged))) + b"".join(_nul(s) for s in t.staged) for t in tasks
        )
        self.shell.run_script(host_script("reset_tasks.sh"), [self.layout.work_dir], stdin_data=records).check(
            "resetting the folders of the tasks to run again"
        )

    # --- running and watching ----------------------------------------------------------------
    def start(self, round_: Round) -> None:
        """Start the round's managers: detached in their own session, or as scheduler jobs."""
        scheduler = get_scheduler(self.options.scheduler)
        if scheduler.job_script_kind:
            script = scheduler.host_functions() + "\n" + host_script("submit.sh")
            args = [self.layout.exec_dir, scheduler.commands[0], *round_.managers]
        else:
            script = render("start_direct.sh.j2")
            args = [self.layout.exec_dir, *round_.managers]
        self.shell.run_script(script, args).check("starting the swarm's managers")

    def poll(self, offsets: dict[str, int | None]) -> PollResult:
        """One poll: managers' states and the events after each offset (None: states only)."""
        script, args = poll_command(self.layout, offsets)
        result = self.shell.run_script(script, args)
        result.check("polling the swarm")
        return parse_poll_output(result.stdout)

    def cancel(self, managers: list[str] | None = None) -> CancelReport:
        """Stop the given managers (default: every manager of every round) and their running tasks.
        Raises SwarmExecutionError, naming them, when some could not be stopped."""
        if managers is None:
            managers = [m for r in self.read_ledger()["rounds"] for m in r["managers"]]
        if not managers:
            return CancelReport({}, "")
        script, args = cancel_command(self.layout, managers)
        result = self.shell.run_script(script, args)
        return parse_cancel_output(result.returncode, result.stdout, result.stderr, self.layout.root)

    def diagnose(self, managers: list[str]) -> list[ManagerDiagnosis]:
        """What became of these (lost) managers: started or not, tasks run, job state and reason, output."""
        script, args = diagnose_command(self.layout, managers)
        result = self.shell.run_script(script, args)
        result.check("reading what became of the lost managers")
        return parse_diagnosis(result.stdout)

    def log_tail(self, task: TaskRow, name: str, max_bytes: int = 65536) -> LogTail:
        script, args = log_tail_command(self.layout, task.folder, name, max_bytes)
        result = self.shell.run_script(script, args)
        result.check(f"reading {name} of task {task.task_id!r}")
        return parse_log_tail(result.stdout)

    # --- results -------------------------------------------------------------------------
    def gather(
        self, lost_reason: str | None = None, lost_managers: list[str] | None = None, report: ReportWriter | None = None
    ) -> collect.SwarmResult:
        """Decide every task, collect outputs, write the manifest; with `report`, also the HTML
        report next to the manifest (a report that cannot be written is logged, never fatal)."""
        with _without_cyclic_gc():
            return self._gather(lost_reason, lost_managers, report)

    def _gather(
        self, lost_reason: str | None, lost_managers: list[str] | None, report: ReportWriter | None
    ) -> collect.SwarmResult:
        sink = self.sink()
        self._pull_for_gather(sink)
        result = collect.gather(
            self.tasks, self.local, self.swarm_id, sink, self.options.overwrite_outputs, lost_reason, lost_managers,
            host_root=self.layout.root, extension=self._gather_extension(sink),
        )
        self._push(["exec/results.jsonl"])
        if report is not None:
            try:
                result.extra_files["report"] = self._write_report(result, sink, report)
            except Exception as error:  # noqa: BLE001 - the results stand without their report
                log.warning("Swarm %s: the HTML report was not written: %s: %s", self.swarm_id, type(error).__name__, error)
        return result

    def _gather_extension(self, sink: OutputSink) -> ChangesCollector | None:
        if not self.environment:
            return None
        return ChangesCollector(self.local, sink, self.environment["writable"])

    def _write_report(self, result: collect.SwarmResult, sink: OutputSink, report: ReportWriter) -> str:
        """The report, from the manifest records and the failed tasks' logs in the local view
        (in copy mode _pull_for_gather brought them into it)."""
        folders = {t.index: t.folder for t in self.tasks}
        tails: dict[str, dict[str, str]] = {}
        for task in (r for r in result.results if r.state == "failed"):
            if len(tails) >= REPORT_MAX_TAILS:
                break
            folder = Path(self.local.task_dir(folders[task.index]))
            if folder.is_dir():  # an empty log is not kept: absent from a folder that is there means empty
                tails[task.id] = {name: _file_tail(folder / f"{name}.txt") or "" for name in ("stderr", "stdout")}
        info = {"swarm_id": self.swarm_id, "output_dir": result.output_dir, "manifest": result.manifest}
        # The manifest's entries, made again now that the manifest's text is gone (not both at once).
        html = report(list(map(collect.manifest_entry, result.results)), tails, info)
        return sink.write_text(collect.report_name(self.swarm_id), html)

    def cleanup(self) -> Removal:
        """Remove the swarm root, on its host, without waiting for its files: it is renamed at
        once to a hidden sibling (`.<swarm id>.removing-<unique>`) and deleted there by a
        detached process at low priority, which also finishes earlier removals in the same
        folder that were interrupted (templates/remove_folder.sh). Refuses any folder that is
        not this swarm's root: its name must be the swarm id and it must hold our ledger.

        A local copy of the root (copy mode's scratch view) goes when the engine is closed; a
        root seen through a shared filesystem has no other copy."""
        root = self.layout.root.rstrip("/") or "/"
        if posixpath.basename(root) != self.swarm_id:
            raise SwarmExecutionError(f"refusing to remove {root}: it is not named after swarm {self.swarm_id}")
        return remove_folder(self.shell, root, "root")

    # --- copy mode (no-ops when the root is local or shared) ---------------------------
    def _push(self, relative_paths: list[str]) -> None:
        if self.transfer is not None:
            self.transfer.push(self.local_root, self.layout.root, relative_paths)

    def _pull(self, relative_paths: list[str]) -> None:
        if self.transfer is not None:
            self.transfer.pull(self.layout.root, self.local_root, relative_paths)

    def _pull_for_gather(self, sink: OutputSink) -> None:
        """Copy mode: the failed tasks' logs, and the succeeded tasks' outputs when they are
        collected here. Nothing of a task that succeeded earlier."""
        if self.transfer is None:
            return
        self._pull(["exec"])
        outcomes = collect.fold_event_files(self.local)
        already = {i for i, e in collect.read_results(self.local).items() if e["state"] == "succeeded"}
        outputs_here = isinstance(sink, LocalSink)
        extension = self._gather_extension(sink)
        wanted = []
        for task in self.tasks:
            outcome = outcomes.get(task.index)
            if outcome is None or task.index in already:
                continue
            base = f"work/{task.folder}"
            if outcome.ok:
                if outputs_here:
                    wanted += [f"{base}/{o}" for o in task.outputs]
            else:
                wanted += [f"{base}/stdout.txt", f"{base}/stderr.txt", f"{base}/{collect.MISSING_OUTPUTS_FILE}"]
            if extension is not None:
                wanted += extension.pull_paths(task.folder, outcome.ok and outputs_here)
        if wanted:
            self.transfer.pull(self.layout.root, self.local_root, wanted)


def _holds_more_folders_than(work_dir: str, limit: int) -> bool:
    """Does work/ hold more than `limit` task folders (batch_<k>/task_<id>)? Counted until known."""
    count = 0
    try:
        with os.scandir(work_dir) as batches:
            for batch in batches:
                if batch.is_dir(follow_symlinks=False):
                    count += len(os.listdir(batch.path))
                    if count > limit:
                        return True
    except OSError:
        pass
    return False


@contextmanager
def _without_cyclic_gc() -> Iterator[None]:
    """Python's cyclic garbage collector paused: a gather makes a few objects per task (rows,
    outcomes, results, manifest entries), none in a cycle, and each collection pass walks
    them all again, a third of the gathering time at 10^5 tasks. Memory is still freed as
    usual (reference counting); anything cyclic is collected when the collector resumes."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def remove_folder(shell: Shell, folder: str, kind: str) -> Removal:
    """Remove a swarm root ("root") or a local copy of one ("copy") through `shell`: renamed
    away at once, deleted in the background (see host_commands.remove_folder_command)."""
    script, args = remove_folder_command(folder, kind)
    result = shell.run_script(script, args)
    result.check(f"removing {'the swarm root' if kind == 'root' else 'the folder'} {folder}")
    return parse_removal(folder, result.stdout)


def _file_tail(path: Path, limit: int = REPORT_TAIL_BYTES) -> str | None:
    """The last `limit` bytes of a file as text; None when it does not exist."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(f.tell() - limit, 0))
            return f.read(limit).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None


def _nul(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape") + b"\0"

