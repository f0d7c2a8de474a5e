"""LocustsSwarmOperator: one Airflow task that runs a whole swarm and returns who succeeded and who failed."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.exceptions import AirflowException
from airflow.sdk import BaseOperator, Context

from airflow_provider_locusts.hooks.locusts import LocustsHook
from airflow_provider_locusts.swarm.collect import SwarmResult
from airflow_provider_locusts.swarm.command import SwarmSpecError
from airflow_provider_locusts.swarm.engine import SCHEDULERS, EngineOptions, Round, SwarmEngine
from airflow_provider_locusts.swarm.layout import check_swarm_id, default_swarm_id
from airflow_provider_locusts.swarm.progress import SwarmProgress, assess, poll_backoff
from airflow_provider_locusts.swarm.slurm import check_setup_lines, sbatch_directives
from airflow_provider_locusts.swarm.spec import SwarmSpec, build_spec
from airflow_provider_locusts.triggers.swarm import LocustsSwarmTrigger
from airflow_provider_locusts.www.links import SwarmLink


def default_work_root() -> str:
    """Where local swarm roots (or staging copies) go unless `work_root` says otherwise."""
    return os.environ.get("LOCUSTS_WORK_ROOT") or os.path.join(
        os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow")), "locusts"
    )


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
    :param swarm_id: name of the swarm root; default: derived from dag, task, run and map index
    :param work_root: local folder of swarm roots (and of staging copies in SSH copy mode)
    :param ssh_conn_id: Airflow SSH connection of the host that runs the swarm; None: this machine
    :param remote_root: folder of swarm roots on the SSH host
    :param shared_root: `remote_root` as this machine sees it, when both share a filesystem (no copy)
    :param scheduler: "direct" (managers run detached) or "slurm" (one sbatch job per manager)
    :param nodes: managers (SLURM jobs) at most
    :param min_tasks_per_process: fewer managers are used rather than give one fewer tasks per process
    :param slurm_options: ``#SBATCH`` settings (partition, time, mem, ... and "extra" lines)
    :param setup: shell lines run before the manager in each SLURM job (e.g. ``module load ...``)
    :param container: command prefix for the manager (e.g. ``apptainer exec image.sif``)
    :param max_failed_fraction: fraction of failed tasks above which the Airflow task fails
    :param task_retries: times a failed task is run again by its manager
    :param max_reschedules: times the unfinished tasks of a lost manager (dead process, stale
        heartbeat, SLURM job ended early) are run again on a new manager before counting as failed
    :param input_staging: "hardlink" (default; copies across filesystems), "symlink" or "copy"
    :param overwrite_outputs: replace files already in output_dir instead of refusing
    :param cleanup: remove the swarm root once every task succeeded and its outputs are collected
    :param poll_interval: seconds between polls
    :param heartbeat_interval: seconds between a manager's heartbeats
    :param heartbeat_timeout: seconds without heartbeat before a manager counts as lost
    :param max_poll_failures: failed polls in a row (SSH down; retried with exponential backoff,
        1 s doubling up to 60 s) before the task fails; the swarm keeps running and a retry resumes it
    :param deferrable: wait in the triggerer (default) instead of holding a worker slot
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
        swarm_id: str | None = None,
        work_root: str | None = None,
        ssh_conn_id: str | None = None,
        remote_root: str | None = None,
        shared_root: str | None = None,
        scheduler: str = "direct",
        nodes: int = 1,
        min_tasks_per_process: int = 1,
        slurm_options: Mapping[str, Any] | None = None,
        setup: Sequence[str] | None = None,
        container: str | None = None,
        max_failed_fraction: float = 0.0,
        task_retries: int = 0,
        max_reschedules: int = 1,
        input_staging: str = "hardlink",
        overwrite_outputs: bool = False,
        cleanup: bool = False,
        poll_interval: float = 5.0,
        heartbeat_interval: int = 10,
        heartbeat_timeout: float = 120.0,
        max_poll_failures: int = 8,
        deferrable: bool = True,
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
        self.swarm_id = swarm_id
        self.work_root = work_root
        self.ssh_conn_id = ssh_conn_id
        self.remote_root = remote_root
        self.shared_root = shared_root
        self.scheduler = scheduler
        self.nodes = nodes
        self.min_tasks_per_process = min_tasks_per_process
        self.slurm_options = slurm_options
        self.setup = setup
        self.container = container
        self.max_failed_fraction = max_failed_fraction
        self.task_retries = task_retries
        self.max_reschedules = max_reschedules
        self.input_staging = input_staging
        self.overwrite_outputs = overwrite_outputs
        self.cleanup = cleanup
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.max_poll_failures = max_poll_failures
        self.deferrable = deferrable

    # --- building blocks -------------------------------------------------------------
    @cached_property
    def hook(self) -> LocustsHook:
        return LocustsHook(ssh_conn_id=self.ssh_conn_id)

    def _check_options(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise SwarmSpecError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}.")
        for name, minimum in (("nodes", 1), ("min_tasks_per_process", 1), ("heartbeat_interval", 1), ("task_retries", 0), ("max_reschedules", 0), ("max_poll_failures", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise SwarmSpecError(f"{name} must be an integer >= {minimum}, got {value!r}.")
        if not 0.0 <= float(self.max_failed_fraction) <= 1.0:
            raise SwarmSpecError(f"max_failed_fraction must be between 0.0 and 1.0, got {self.max_failed_fraction!r}.")
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise SwarmSpecError("heartbeat_timeout must be longer than heartbeat_interval, or live managers would count as lost.")
        if self.ssh_conn_id is None and (self.remote_root or self.shared_root):
            raise SwarmSpecError("remote_root and shared_root need ssh_conn_id: without it the swarm runs in work_root on this machine.")
        if self.ssh_conn_id is not None and not self.remote_root:
            raise SwarmSpecError("ssh_conn_id is set but remote_root is not: give the folder on the SSH host where swarm roots go.")
        if self.shared_root and not os.path.isabs(self.shared_root):
            raise SwarmSpecError(f"shared_root must be an absolute path, got {self.shared_root!r}.")
        if self.remote_root is not None:
            parts = self.remote_root.split("/")
            if not self.remote_root.startswith("/") or self.remote_root.strip("/") == "" or ".." in parts:
                raise SwarmSpecError(
                    f"remote_root must be an absolute folder on the SSH host other than '/', without '..'; got {self.remote_root!r}."
                )
        if self.scheduler == "slurm":
            sbatch_directives(self.slurm_options, self.processes)
            check_setup_lines(self.setup)
        elif self.slurm_options or self.setup or self.container:
            raise SwarmSpecError("slurm_options, setup and container apply to scheduler='slurm' only.")

    def _spec(self) -> SwarmSpec:
        self._check_options()
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

    def _swarm_id(self, context: Context) -> str:
        if self.swarm_id:
            return check_swarm_id(self.swarm_id)
        ti = context["ti"]
        map_index = getattr(ti, "map_index", None)
        return default_swarm_id(ti.dag_id, ti.task_id, ti.run_id, -1 if map_index is None else map_index)

    def _engine(self, context: Context, spec: SwarmSpec | None = None) -> SwarmEngine:
        spec = spec or self._spec()
        swarm_id = self._swarm_id(context)
        work_root = Path(self.work_root or default_work_root()).expanduser().absolute()
        if self.ssh_conn_id is None:
            root = str(work_root / swarm_id)
            local_root, copy_files = Path(root), False
        elif self.shared_root:
            root = f"{self.remote_root.rstrip('/')}/{swarm_id}"
            local_root, copy_files = Path(self.shared_root) / swarm_id, False
        else:
            root = f"{self.remote_root.rstrip('/')}/{swarm_id}"
            local_root, copy_files = work_root / swarm_id, True
        options = EngineOptions(
            scheduler=self.scheduler,
            nodes=self.nodes,
            min_tasks_per_process=self.min_tasks_per_process,
            heartbeat_interval=self.heartbeat_interval,
            task_retries=self.task_retries,
            input_staging="copy" if copy_files and self.input_staging == "symlink" else self.input_staging,
            overwrite_outputs=self.overwrite_outputs,
            group_writable=bool(self.shared_root),
            slurm_options=dict(self.slurm_options or {}),
            setup=tuple(self.setup or ()),
            container=self.container or "",
        )
        return self.hook.engine(spec, swarm_id, root, options, local_root=local_root, copy_files=copy_files)

    # --- Airflow entry points ----------------------------------------------------------
    def execute(self, context: Context) -> dict:
        engine = self._running_engine = self._engine(context)
        round_ = engine.live_round()
        if round_ is not None:
            # Starting is idempotent: this only starts managers an earlier try recorded
            # but did not get to start.
            engine.start(round_)
            self.log.info("Swarm %s: round %d is still running, watching it again.", engine.swarm_id, round_.number)
        else:
            round_ = engine.prepare_round()
            if round_ is None:
                self.log.info("Swarm %s: every task already succeeded; gathering.", engine.swarm_id)
                return self._finish(context, engine.gather())
            engine.start(round_)
            self.log.info(
                "Swarm %s: started round %d, %d task(s) on %d manager(s) (%s), root %s",
                engine.swarm_id, round_.number, round_.task_count, len(round_.managers), self.scheduler, engine.layout.root,
            )
        return self._watch(context, engine, round_)

    def _watch(self, context: Context, engine: SwarmEngine, round_: Round) -> dict:
        """Defer to the trigger until the round ends (or poll in the worker when not deferrable)."""
        if self.deferrable:
            self.defer(
                trigger=LocustsSwarmTrigger(
                    root=engine.layout.root,
                    managers=round_.managers,
                    total=round_.task_count,
                    ssh_conn_id=self.ssh_conn_id,
                    poll_interval=self.poll_interval,
                    heartbeat_timeout=self.heartbeat_timeout,
                    max_poll_failures=self.max_poll_failures,
                ),
                method_name="execute_complete",
            )
        return self.execute_complete(context, self._wait_in_worker(engine, round_))

    def _wait_in_worker(self, engine: SwarmEngine, round_: Round) -> dict:
        """Non-deferrable path: the same polling as the trigger, in the worker."""
        progress = SwarmProgress(total=round_.task_count, offsets={m: 0 for m in round_.managers})
        started, last_line, failures = time.monotonic(), None, 0
        while True:
            try:
                poll = engine.poll(progress.offsets)
            except Exception as error:  # SSH dropped, host unreachable: back off and reconnect
                failures += 1
                if failures > self.max_poll_failures:
                    return {"status": "error", "message": f"the swarm's host could not be polled {failures} times in a row: {error}"}
                delay = poll_backoff(failures)
                self.log.warning("Poll failed (%d/%d), retrying in %.1f s: %s", failures, self.max_poll_failures, delay, error)
                engine.executor.reset()
                time.sleep(delay)
                continue
            failures = 0
            for manager, chunk in poll.chunks.items():
                progress.feed(manager, chunk)
            if progress.line() != last_line:
                last_line = progress.line()
                self.log.info("Swarm %s: %s", engine.swarm_id, last_line)
            verdict = assess(poll, self.heartbeat_timeout, time.monotonic() - started)
            if verdict.finished:
                return {"status": "lost" if verdict.lost else "finished", "lost": verdict.lost, "message": verdict.detail}
            time.sleep(self.poll_interval)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict:
        if event["status"] == "error":
            raise AirflowException(f"Lost track of the swarm: {event['message']}. It may still be running; a retry resumes watching it.")
        engine = self._running_engine = self._engine(context)
        lost_reason = None
        if event["status"] == "lost":
            lost_reason = f"its manager was lost ({event['message']})"
            self.log.warning("Swarm %s: %s", engine.swarm_id, lost_reason)
            # A manager that only looks dead (hung, unreachable heartbeat) must not run on
            # beside its replacement.
            engine.cancel(event["lost"])
            if engine.reschedules_in_a_row() < self.max_reschedules:
                round_ = engine.prepare_round(reschedule=True, lost_managers=event["lost"])
                if round_ is not None:
                    engine.start(round_)
                    self.log.info(
                        "Swarm %s: rescheduled %d unfinished task(s) in round %d", engine.swarm_id, round_.task_count, round_.number
                    )
                    return self._watch(context, engine, round_)
        return self._finish(context, engine.gather(lost_reason=lost_reason, lost_managers=event.get("lost")))

    def _finish(self, context: Context, result: SwarmResult) -> dict:
        summary = result.summary()
        if self.cleanup and not result.failed:
            self._running_engine.cleanup()
            self.log.info("Swarm %s: removed its root %s", result.swarm_id, self._running_engine.layout.root)
        ti = context["ti"]
        ti.xcom_push(key="succeeded", value=summary["succeeded"])
        ti.xcom_push(key="failed", value=summary["failed"])
        total = summary["total"]
        self.log.info(
            "Swarm %s: %d succeeded, %d failed of %d; outputs in %s, manifest %s",
            result.swarm_id, summary["succeeded_count"], summary["failed_count"], total, result.output_dir, result.manifest,
        )
        if total and summary["failed_count"] / total > self.max_failed_fraction:
            failures = [r for r in result.results if r.state == "failed"][:5]
            listing = "; ".join(f"{r.id}: {r.reason} (logs in {r.folder})" for r in failures)
            raise AirflowException(
                f"{summary['failed_count']} of {total} tasks failed (allowed fraction {self.max_failed_fraction}). "
                f"First failures: {listing}. Manifest: {result.manifest}"
            )
        return summary

    def on_kill(self) -> None:
        """Stop the swarm's managers and their running tasks (worker side; the trigger has its own)."""
        engine = getattr(self, "_running_engine", None)
        if engine is not None:
            self.log.info("Cancelling swarm %s", engine.swarm_id)
            engine.cancel()
