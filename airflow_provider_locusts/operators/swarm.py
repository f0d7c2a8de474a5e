"""LocustsSwarmOperator: one Airflow task that runs a whole swarm and returns who succeeded and who failed."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from airflow.configuration import conf
from airflow.sdk import BaseOperator, Context

from airflow_provider_locusts.exceptions import (
    LocalModeRefusedError,
    SwarmLostTrackError,
    SwarmStartError,
    SwarmTasksFailedError,
)
from airflow_provider_locusts.hooks.locusts import TRANSIENT_ERRORS, LocustsHook
from airflow_provider_locusts.operators.asset_events import annotate_outlet_events
from airflow_provider_locusts.swarm.collect import SwarmResult
from airflow_provider_locusts.swarm.engine import EngineOptions, SwarmEngine
from airflow_provider_locusts.swarm.environment import build_environment_spec
from airflow_provider_locusts.swarm.errors import SwarmExecutionError, SwarmSpecError
from airflow_provider_locusts.swarm.handle import HANDLE_XCOM_KEY, SwarmHandle
from airflow_provider_locusts.swarm.layout import check_swarm_id, default_swarm_id
from airflow_provider_locusts.swarm.placement import Placement
from airflow_provider_locusts.swarm.schedulers import get_scheduler, job_schedulers
from airflow_provider_locusts.swarm.schedulers.base import check_setup_lines
from airflow_provider_locusts.swarm.spec import SwarmSpec, build_spec
from airflow_provider_locusts.swarm.watch import NOT_VISIBLE, SwarmWatch
from airflow_provider_locusts.triggers.swarm import LocustsSwarmTrigger
from airflow_provider_locusts.www.links import SwarmLink
from airflow_provider_locusts.www.report import gather_report

# Longest a single poll may take on the host before it counts as a failed poll.
POLL_TIMEOUT = 120.0

# Job states of a manager that never ran a task which a new job may well not meet again:
# the node failed or was taken, or someone cancelled the job.
RESCHEDULABLE_JOB_STATES = frozenset({"NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "CANCELLED"})

# Executors that run every step of a task on the machine of the worker that started it.
SINGLE_HOST_EXECUTORS = frozenset({"LocalExecutor", "airflow.executors.local_executor.LocalExecutor"})


def default_work_root() -> str:
    """Where local swarm roots (and copy mode's scratch folders) go: [locusts] work_root,
    else $AIRFLOW_HOME/locusts."""
    configured = conf.get("locusts", "work_root", fallback=None)
    if configured:
        return configured
    return os.path.join(os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow")), "locusts")


def configured_executors() -> list[str]:
    """The executors of this deployment ([core] executor: names, paths, or alias:path)."""
    names = []
    for entry in conf.get("core", "executor", fallback="LocalExecutor").split(","):
        entry = entry.strip()
        if entry:
            names.append(entry.split(":", 1)[-1])
    return names


class LocustsSwarmOperator(BaseOperator):
    """Run a swarm of small shell tasks, each in a clean folder, and return the succeeded and failed ids.

    Tasks come from files (`input_dir` + `task_inputs` templates with `<id>`) or from
    `args` (one task per argument list). See the README for every parameter.

    :param command: shell command template; handles `<id>`, `<shared>NAME`, `<argK>`
    :param output_dir: folder receiving the compulsory outputs and the manifest
    :param input_dir: folder holding the per-task input files
    :param task_inputs: per-task input file templates, each with `<id>`
    :param shared_inputs: ``{NAME: path}`` files staged once (relative paths: in input_dir)
    :param outputs: compulsory output templates, each with `<id>`
    :param args: argument lists, one task each (instead of task_inputs)
    :param processes: tasks run at once by each manager
    :param batch_size: task folders per `work/batch_<k>` folder
    :param shard_outputs_above: above this many tasks, outputs are collected into
        `output_dir/batch_<k>/` (the batch of each task's folder) instead of output_dir itself
    :param swarm_id: name of the swarm root; default: derived from dag, task, run and map index
    :param work_root: local folder of swarm roots (and of copy mode's scratch folders);
        default: ``[locusts] work_root``, else ``$AIRFLOW_HOME/locusts``
    :param ssh_conn_id: Airflow SSH connection of the host that runs the swarm; None: this machine
    :param remote_root: folder of swarm roots on the SSH host
    :param shared_root: `remote_root` as this machine sees it, when both share a filesystem (no copy)
    :param output_dir_on_host: `output_dir` is a folder on the SSH host: outputs are collected there,
        on the host, and only the manifest and the failed tasks' logs cross the network
    :param scheduler: "direct" (managers run detached), "slurm" (one sbatch job per manager) or
        "oar" (one oarsub job per manager)
    :param nodes: managers (scheduler jobs) at most
    :param min_tasks_per_process: fewer managers are used rather than give one fewer tasks per process
    :param slurm_options: ``#SBATCH`` settings (partition, time, mem, ... and "extra" lines)
    :param oar_options: ``#OAR`` settings (walltime, cores or resources, queue, project, property,
        types, and "extra" lines)
    :param setup: shell lines run before the manager in each SLURM / OAR job (e.g. ``module load ...``)
    :param container: command prefix for the manager (e.g. ``apptainer exec image.sif``)
    :param max_failed_fraction: fraction of failed tasks above which the Airflow task fails
    :param task_retries: times a failed task is run again by its manager
    :param task_timeout: seconds a task attempt may run; then its whole process group gets TERM
        (KILL 5 s later) and the attempt fails with "timed out after N s" (retried per task_retries)
    :param max_reschedules: times the unfinished tasks of a lost manager (dead process, stale
        heartbeat, SLURM / OAR job ended early) are run again on a new manager before counting as failed
    :param input_staging: "hardlink" (default; copies across filesystems), "symlink" or "copy"
    :param overwrite_outputs: replace files already in output_dir instead of refusing
    :param cleanup: remove the swarm root once every task succeeded and its outputs are collected
    :param poll_interval: seconds between polls
    :param heartbeat_interval: seconds between a manager's heartbeats
    :param heartbeat_timeout: seconds without heartbeat before a manager counts as lost
    :param max_poll_failures: failed polls in a row (SSH down; retried with exponential backoff,
        1 s doubling up to 60 s) before the task fails; the swarm keeps running and a retry resumes it
    :param deferrable: wait in the triggerer instead of holding a worker slot; default: Airflow's
        ``[operators] default_deferrable``
    :param environment_dir: Custom Environment: a whole tree every task runs in, each task in a
        replica of its own (the tree itself is never written to)
    :param environment_writable: path patterns of the tree (``*``, ``?``, ``[...]``, ``**``) naming
        the parts every task gets its own writable copy of; the rest is shared read-only
    :param environment_workdir: the folder of the tree the command runs in (default: its top)
    :param environment_inputs_dir: the folder of the tree each task's input files are copied
        into (default: environment_workdir); it must be writable
    """

    operator_extra_links = (SwarmLink(),)
    template_fields: Sequence[str] = (
        "command",
        "input_dir",
        "task_inputs",
        "shared_inputs",
        "outputs",
        "output_dir",
        "args",
        "swarm_id",
        "work_root",
        "remote_root",
        "shared_root",
        "environment_dir",
        "environment_writable",
        "environment_workdir",
        "environment_inputs_dir",
    )
    ui_color = "#c9e7a5"

    def __init__(
        self,
        *,
        command: str,
        output_dir: str,
        input_dir: str | None = None,
        task_inputs: Sequence[str] | None = None,
        shared_inputs: Mapping[str, str] | None = None,
        outputs: Sequence[str] | None = None,
        args: Sequence[Sequence[Any]] | None = None,
        processes: int = 1,
        batch_size: int = 10000,
        shard_outputs_above: int = 10000,
        swarm_id: str | None = None,
        work_root: str | None = None,
        ssh_conn_id: str | None = None,
        remote_root: str | None = None,
        shared_root: str | None = None,
        output_dir_on_host: bool = False,
        scheduler: str = "direct",
        nodes: int = 1,
        min_tasks_per_process: int = 1,
        slurm_options: Mapping[str, Any] | None = None,
        oar_options: Mapping[str, Any] | None = None,
        setup: Sequence[str] | None = None,
        container: str | None = None,
        max_failed_fraction: float = 0.0,
        task_retries: int = 0,
        task_timeout: int | None = None,
        max_reschedules: int = 1,
        input_staging: str = "hardlink",
        overwrite_outputs: bool = False,
        cleanup: bool = False,
        poll_interval: float = 5.0,
        heartbeat_interval: int = 10,
        heartbeat_timeout: float = 120.0,
        max_poll_failures: int = 8,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        environment_dir: str | None = None,
        environment_writable: Sequence[str] | None = None,
        environment_workdir: str | None = None,
        environment_inputs_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.command = command
        self.output_dir = output_dir
        self.input_dir = input_dir
        self.task_inputs = task_inputs
        self.shared_inputs = shared_inputs
        self.outputs = outputs
        self.args = args
        self.processes = processes
        self.batch_size = batch_size
        self.shard_outputs_above = shard_outputs_above
        self.swarm_id = swarm_id
        self.work_root = work_root
        self.ssh_conn_id = ssh_conn_id
        self.remote_root = remote_root
        self.shared_root = shared_root
        self.output_dir_on_host = output_dir_on_host
        self.scheduler = scheduler
        self.nodes = nodes
        self.min_tasks_per_process = min_tasks_per_process
        self.slurm_options = slurm_options
        self.oar_options = oar_options
        self.setup = setup
        self.container = container
        self.max_failed_fraction = max_failed_fraction
        self.task_retries = task_retries
        self.task_timeout = task_timeout
        self.max_reschedules = max_reschedules
        self.input_staging = input_staging
        self.overwrite_outputs = overwrite_outputs
        self.cleanup = cleanup
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.max_poll_failures = max_poll_failures
        self.deferrable = deferrable
        self.environment_dir = environment_dir
        self.environment_writable = environment_writable
        self.environment_workdir = environment_workdir
        self.environment_inputs_dir = environment_inputs_dir

    # --- building blocks -------------------------------------------------------------
    @cached_property
    def hook(self) -> LocustsHook:
        return LocustsHook(ssh_conn_id=self.ssh_conn_id, work_root=self.work_root or default_work_root())

    def _placement(self) -> Placement:
        return Placement(
            work_root=self.work_root or default_work_root(),
            ssh_conn_id=self.ssh_conn_id,
            remote_root=self.remote_root,
            shared_root=self.shared_root,
            output_dir_on_host=self.output_dir_on_host,
        ).check()

    def _check_options(self) -> None:
        scheduler = get_scheduler(self.scheduler)
        for name, minimum in (("nodes", 1), ("min_tasks_per_process", 1), ("heartbeat_interval", 1), ("task_retries", 0), ("max_reschedules", 0), ("max_poll_failures", 0), ("shard_outputs_above", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise SwarmSpecError(f"{name} must be an integer >= {minimum}, got {value!r}.")
        if self.task_timeout is not None and (
            isinstance(self.task_timeout, bool) or not isinstance(self.task_timeout, int) or self.task_timeout < 1
        ):
            raise SwarmSpecError(f"task_timeout must be a whole number of seconds >= 1 (or None), got {self.task_timeout!r}.")
        if not 0.0 <= float(self.max_failed_fraction) <= 1.0:
            raise SwarmSpecError(f"max_failed_fraction must be between 0.0 and 1.0, got {self.max_failed_fraction!r}.")
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise SwarmSpecError("heartbeat_timeout must be longer than heartbeat_interval, or live managers would count as lost.")
        # Each job scheduler's options belong to it alone; setup and container to job schedulers.
        for other in job_schedulers():
            if other is not scheduler and getattr(self, other.options_name):
                raise SwarmSpecError(f"{other.options_name} apply to scheduler={other.name!r} only, not {self.scheduler!r}.")
        if scheduler.job_script_kind:
            scheduler.directives(getattr(self, scheduler.options_name), self.processes)
            check_setup_lines(self.setup)
        elif self.setup or self.container:
            names = " or ".join(repr(s.name) for s in job_schedulers())
            raise SwarmSpecError(f"setup and container apply to scheduler={names} only.")

    def _check_deployment(self) -> None:
        """Local mode needs the trigger (and every later step of the task) on the machine of the
        worker that starts the swarm: refuse it, before anything is staged, on deployments
        whose executor may run them elsewhere."""
        if self.ssh_conn_id is not None or not self.deferrable:
            return
        elsewhere = [e for e in configured_executors() if e not in SINGLE_HOST_EXECUTORS]
        if elsewhere:
            raise LocalModeRefusedError(
                f"local mode (no ssh_conn_id) runs the swarm on this worker's machine, but this deployment's "
                f"executor ({', '.join(elsewhere)}) may run the trigger and the rest of this task on other machines, "
                "which cannot see it. Give an SSH connection (ssh_conn_id, even to this worker's own host) so any "
                "machine can reach the swarm, or set deferrable=False so this worker watches it to the end."
            )

    def _validated(self) -> tuple[Placement, SwarmSpec]:
        """Every check of the operator's settings and of the swarm's description, before
        anything is staged or started: one clear error for the first problem."""
        self._check_options()
        placement = self._placement()
        self._check_deployment()
        return placement, self._spec()

    def _spec(self) -> SwarmSpec:
        if self.environment_dir is not None:
            return build_environment_spec(
                environment_dir=self.environment_dir,
                writable=self.environment_writable,
                workdir=self.environment_workdir,
                inputs_dir=self.environment_inputs_dir,
                command=self.command,
                output_dir=self.output_dir,
                input_dir=self.input_dir,
                task_inputs=self.task_inputs,
                shared_inputs=self.shared_inputs,
                outputs=self.outputs,
                args=self.args,
                processes=self.processes,
                batch_size=self.batch_size,
            )
        if self.environment_writable or self.environment_workdir or self.environment_inputs_dir:
            raise SwarmSpecError(
                "environment_writable, environment_workdir and environment_inputs_dir describe a Custom Environment: "
                "give its tree with environment_dir."
            )
        return build_spec(
            command=self.command,
            output_dir=self.output_dir,
            input_dir=self.input_dir,
            task_inputs=self.task_inputs,
            shared_inputs=self.shared_inputs,
            outputs=self.outputs,
            args=self.args,
            processes=self.processes,
            batch_size=self.batch_size,
        )

    def _engine_options(self, copy_files: bool) -> EngineOptions:
        return EngineOptions(
            scheduler=self.scheduler,
            nodes=self.nodes,
            min_tasks_per_process=self.min_tasks_per_process,
            heartbeat_interval=self.heartbeat_interval,
            task_retries=self.task_retries,
            task_timeout=self.task_timeout,
            input_staging="copy" if copy_files and self.input_staging == "symlink" else self.input_staging,
            overwrite_outputs=self.overwrite_outputs,
            shard_outputs_above=self.shard_outputs_above,
            group_writable=bool(self.shared_root),
            slurm_options=dict(self.slurm_options or {}),
            oar_options=dict(self.oar_options or {}),
            setup=tuple(self.setup or ()),
            container=self.container or "",
        )

    def _swarm_id(self, context: Context) -> str:
        if self.swarm_id:
            return check_swarm_id(self.swarm_id)
        ti = context["ti"]
        map_index = getattr(ti, "map_index", None)
        return default_swarm_id(ti.dag_id, ti.task_id, ti.run_id, -1 if map_index is None else map_index)

    # --- Airflow entry points ----------------------------------------------------------
    def execute(self, context: Context) -> dict:
        try:
            return self._execute(context)
        finally:
            self.hook.close()  # the task defers or ends: no SSH connection is kept open

    def _execute(self, context: Context) -> dict:
        placement, spec = self._validated()
        output_dir = self.output_dir if self.output_dir_on_host else str(spec.output_dir)
        handle = placement.handle(self._swarm_id(context), output_dir, self.scheduler, socket.gethostname())
        handle = SwarmHandle.from_dict({**handle.to_dict(), "total": spec.total})
        self._running_handle = handle
        with self.hook.engine(handle, spec=spec, options=self._engine_options(handle.copy_mode)) as engine:
            round_ = engine.live_round()
            if round_ is not None:
                # Starting is idempotent: this only starts managers an earlier try recorded
                # but did not get to start.
                engine.start(round_)
                self.log.info("Swarm %s: round %d is still running, watching it again.", handle.swarm_id, round_.number)
            else:
                engine.preflight(shared=bool(self.shared_root), root_setting="remote_root" if self.ssh_conn_id else "work_root")
                began = time.monotonic()
                round_ = engine.prepare_round()
                if round_ is None:
                    self.log.info("Swarm %s: every task already succeeded; gathering.", handle.swarm_id)
                    return self._finish(context, engine, self._gather(engine, report=gather_report))
                self.log.info("Swarm %s: staged %d task(s) in %.2f s", handle.swarm_id, round_.task_count, time.monotonic() - began)
                engine.start(round_)
                self.log.info(
                    "Swarm %s: started round %d, %d task(s) on %d manager(s) (%s), root %s",
                    handle.swarm_id, round_.number, round_.task_count, len(round_.managers), self.scheduler, handle.root,
                )
        return self._watch(context, handle.with_round(round_.number, round_.managers, round_.task_count))

    def _watch(self, context: Context, handle: SwarmHandle) -> dict:
        """Defer to the trigger until the round ends (or watch in the worker when not deferrable)."""
        self._running_handle = handle
        # Where the swarm lives, for the Swarm view (and for stopping it if Airflow gives up).
        context["ti"].xcom_push(key=HANDLE_XCOM_KEY, value=handle.to_dict())
        if self.deferrable:
            self.defer(
                trigger=LocustsSwarmTrigger(
                    handle=handle.to_dict(),
                    poll_interval=self.poll_interval,
                    heartbeat_timeout=self.heartbeat_timeout,
                    max_poll_failures=self.max_poll_failures,
                ),
                method_name="execute_complete",
                timeout=self._time_left(context),
            )
        return self._execute_complete(context, self._watch_in_worker(handle))

    def _time_left(self, context: Context) -> timedelta | None:
        """What is left of execution_timeout: Airflow gives up on the deferred task after it."""
        if self.execution_timeout is None:
            return None
        start = getattr(context["ti"], "start_date", None)
        if start is None:
            return self.execution_timeout
        elapsed = datetime.now(start.tzinfo) - start
        return max(self.execution_timeout - elapsed, timedelta(seconds=1))

    def _watch_in_worker(self, handle: SwarmHandle) -> dict:
        """Non-deferrable path: the trigger's watch, run in the worker."""
        watch = SwarmWatch(handle, self.poll_interval, self.heartbeat_timeout, self.max_poll_failures)
        step = watch.precheck()
        while step is None or step.event is None:
            if step is not None:
                time.sleep(step.delay)
            try:
                step = watch.observe(self.hook.run(*watch.command(), timeout=POLL_TIMEOUT + watch.wait))
            except TRANSIENT_ERRORS as error:
                self.hook.reset()
                step = watch.failed(error)
            if step.info:
                self.log.info("Swarm %s: %s", handle.swarm_id, step.info)
            if step.warning:
                self.log.warning("Swarm %s: %s", handle.swarm_id, step.warning)
        return step.event

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict:
        try:
            return self._execute_complete(context, event)
        finally:
            self.hook.close()

    def _execute_complete(self, context: Context, event: dict[str, Any]) -> dict:
        handle = SwarmHandle.from_dict(event["handle"])
        self._running_handle = handle
        if event["status"] == "error":
            return self._after_lost_track(context, handle, event)
        if event["status"] == "finished":
            with self.hook.engine(handle) as engine:
                return self._finish(context, engine, self._gather(engine, report=gather_report))
        lost = list(event.get("lost") or [])
        with self.hook.engine(handle) as engine:
            never_ran = [d for d in engine.diagnose(lost) if not d.ran_tasks]
            # What became of managers that never ran a task says more than their poll state.
            if len(never_ran) == len(lost):
                detail = "; ".join(d.line() for d in never_ran)
            else:
                detail = "; ".join([event["message"], *(d.line() for d in never_ran)])
            lost_reason = f"its manager was lost ({detail})"
            self.log.warning("Swarm %s: %s", handle.swarm_id, lost_reason)
            if len(never_ran) == len(handle.managers) and not any(d.job_state in RESCHEDULABLE_JOB_STATES for d in never_ran):
                # Not a fault a new job would fix (a launch failure, a failing setup line, a
                # missing image): submitting the same round again would fail the same way.
                engine.cancel(lost)
                result = engine.gather(lost_reason=f"never started: {detail}", lost_managers=lost, report=gather_report)
                self._push_lists(context, result)
                raise SwarmStartError(
                    f"None of the {len(handle.managers)} manager(s) of round {handle.round} started a task, so nothing "
                    f"was submitted again: {detail}. Fix the cause and retry. Manifest: {result.manifest}"
                )
            next_round = self._replace_lost_managers(engine, handle, lost)
            if next_round is None:
                return self._finish(context, engine, self._gather(engine, lost_reason=lost_reason, lost_managers=lost, report=gather_report))
        return self._watch(context, next_round)

    def _replace_lost_managers(self, engine: SwarmEngine, handle: SwarmHandle, lost: list[str]) -> SwarmHandle | None:
        """Stop the lost managers, then run what they cut off in a new round (up to
        max_reschedules rounds in a row); None when nothing is rescheduled."""
        # A manager that only looks dead (hung, unreachable heartbeat) must not run on
        # beside its replacement.
        report = engine.cancel(lost)
        self.log.info("Swarm %s: stopped the lost managers: %s", handle.swarm_id, report.line())
        if engine.reschedules_in_a_row() >= self.max_reschedules:
            return None
        round_ = engine.reschedule(lost)
        if round_ is None:
            return None
        engine.start(round_)
        self.log.info("Swarm %s: rescheduled %d unfinished task(s) in round %d", handle.swarm_id, round_.task_count, round_.number)
        return handle.with_round(round_.number, round_.managers, round_.task_count)

    def _after_lost_track(self, context: Context, handle: SwarmHandle, event: dict[str, Any]) -> dict:
        """The watch ended without seeing the round end. Gather what exists when the swarm is
        over; otherwise fail, saying it may still run and that a retry resumes watching it."""
        message = event["message"]
        if event.get("reason") == NOT_VISIBLE and handle.local:
            if handle.origin_host == socket.gethostname():
                report = self.hook.cancel(handle)
                raise SwarmLostTrackError(f"Cannot watch the swarm: {message} It was stopped ({report.line()}).")
            raise SwarmLostTrackError(
                f"Cannot watch the swarm: {message} It may still be running on {handle.origin_host} in {handle.root}."
            )
        try:
            with self.hook.engine(handle) as engine:
                try:
                    live = engine.live_round() is not None
                except TRANSIENT_ERRORS:
                    raise  # the host cannot be reached: handled below
                except SwarmExecutionError as error:  # the host answers, but the swarm cannot be polled
                    live, poll_problem = None, error
                if live:
                    raise SwarmLostTrackError(
                        f"Lost track of the swarm: {message}. It is still running in {handle.root}; a retry resumes watching it."
                    )
                result = engine.gather(lost_reason=f"unknown: lost track of the swarm: {message}", report=gather_report)
                if live is None:
                    # What was known is kept (the manifest); the swarm's fate is not.
                    self._push_lists(context, result)
                    raise SwarmLostTrackError(
                        f"Lost track of the swarm: {message}. Whether it still runs in {handle.root} is unknown "
                        f"({poll_problem}). The manifest holds what was known: {result.manifest}. A retry resumes "
                        "watching it once it can be polled."
                    )
                self.log.warning("Swarm %s: lost track of it (%s), but it has ended: gathered.", handle.swarm_id, message)
                return self._finish(context, engine, result)
        except (SwarmExecutionError, *TRANSIENT_ERRORS) as error:
            raise SwarmLostTrackError(
                f"Lost track of the swarm: {message}. It may still be running in {handle.root}; a retry resumes "
                f"watching it. (Reaching it from this worker failed too: {error})"
            ) from error

    def _gather(self, engine: SwarmEngine, **kwargs: Any) -> SwarmResult:
        began = time.monotonic()
        result = engine.gather(**kwargs)
        self.log.info("Swarm %s: gathered %d task(s) in %.2f s", result.swarm_id, len(result.results), time.monotonic() - began)
        return result

    def _finish(self, context: Context, engine: SwarmEngine, result: SwarmResult) -> dict:
        summary = result.summary()
        if self.cleanup and not result.failed:
            began = time.monotonic()
            removal = engine.cleanup()
            self.log.info("Swarm %s: removed its root in %.2f s: %s", result.swarm_id, time.monotonic() - began, removal.line())
        self._push_lists(context, result)
        total = summary["total"]
        if summary.get("report"):
            self.log.info("Swarm %s: report %s", result.swarm_id, summary["report"])
        self.log.info(
            "Swarm %s: %d succeeded, %d failed of %d; outputs in %s, manifest %s",
            result.swarm_id, summary["succeeded_count"], summary["failed_count"], total, result.output_dir, result.manifest,
        )
        if total and summary["failed_count"] / total > self.max_failed_fraction:
            failures = [r for r in result.results if r.state == "failed"][:5]
            listing = "; ".join(f"{r.id}: {r.reason} (logs in {r.folder})" for r in failures)
            raise SwarmTasksFailedError(
                f"{summary['failed_count']} of {total} tasks failed (allowed fraction {self.max_failed_fraction}). "
                f"First failures: {listing}. Manifest: {result.manifest}"
            )
        annotate_outlet_events(context, self.outlets, summary)  # only a task that succeeds emits them
        return summary

    def _push_lists(self, context: Context, result: SwarmResult) -> None:
        """The id lists under their own keys, before any failure is raised: a downstream task
        with trigger_rule="all_done" reads them even when this task failed."""
        if self.do_xcom_push:
            ti = context["ti"]
            ti.xcom_push(key="succeeded", value=result.succeeded)
            ti.xcom_push(key="failed", value=result.failed)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context):
        # "__fail__": Airflow gave up on the deferred task (execution_timeout reached, or the
        # trigger itself failed). The swarm must not run on unseen: stop it, then fail.
        if next_method == "__fail__":
            self._stop_abandoned_swarm(context, (next_kwargs or {}).get("error", "unknown"))
        return super().resume_execution(next_method, next_kwargs, context)

    def _stop_abandoned_swarm(self, context: Context, why: Any) -> None:
        ti = context["ti"]
        recorded = ti.xcom_pull(task_ids=ti.task_id, key=HANDLE_XCOM_KEY, map_indexes=getattr(ti, "map_index", None))
        if not recorded:
            return
        handle = SwarmHandle.from_dict(recorded)
        try:
            report = self.hook.cancel(handle)
        except (SwarmExecutionError, *TRANSIENT_ERRORS) as error:
            raise SwarmLostTrackError(
                f"Airflow gave up on the deferred task ({why}); stopping the swarm in {handle.root} failed: {error}"
            ) from error
        raise SwarmLostTrackError(f"Airflow gave up on the deferred task ({why}): the swarm was stopped ({report.line()}).")

    def on_kill(self) -> None:
        """Stop the swarm's managers and their running tasks (worker side; the trigger has its own)."""
        handle = getattr(self, "_running_handle", None)
        if handle is not None:
            self.log.info("Cancelling swarm %s", handle.swarm_id)
            report = self.hook.cancel(handle)
            self.log.info("Cancelled swarm %s: %s", handle.swarm_id, report.line())
