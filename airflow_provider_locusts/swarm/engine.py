"""The swarm engine: prepare a round, start its managers, poll, cancel, gather.

Airflow-free. It acts on the swarm's host only through an Executor (shell scripts run
where the root lives) and builds files through a local view of the root: the root
itself when it is on this machine or on a filesystem both sides share, or a staging
copy that a Transfer ships over (remote copy mode).
"""

from __future__ import annotations

import json
import posixpath
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from airflow_provider_locusts.swarm import collect
from airflow_provider_locusts.swarm.executor import Executor, LocalExecutor, SwarmExecutionError
from airflow_provider_locusts.swarm.layout import SwarmLayout
from airflow_provider_locusts.swarm.progress import LIVE_STATES, PollResult, parse_poll_output
from airflow_provider_locusts.swarm.render import render
from airflow_provider_locusts.swarm.slurm import check_plain_path, check_setup_lines, sbatch_directives
from airflow_provider_locusts.swarm.spec import SwarmSpec
from airflow_provider_locusts.swarm.stage import EnvironmentBuilder, split_among_managers, write_file

SCHEDULERS = ("direct", "slurm")

# Runs the swarm's own poll.sh (staged in exec/) with the offsets as arguments.
POLL_COMMAND = 'script=$1; shift; exec bash "$script" "$@"'


# Removes a swarm root only when it holds the files every swarm root has.
CLEANUP_SCRIPT = (
    'root=$1; if [ ! -f "$root/exec/ledger.json" ] || [ ! -f "$root/exec/tasks.jsonl" ]; then '
    'echo "refusing to remove $root: not a swarm root" >&2; exit 1; fi; rm -rf -- "$root"'
)


def poll_arguments(layout: SwarmLayout, offsets: dict[str, int | None]) -> list[str]:
    args = [layout.poll_script]
    for name, offset in offsets.items():
        args += [name, "-" if offset is None else str(offset)]
    return args


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
    input_staging: str = "hardlink"
    overwrite_outputs: bool = False
    group_writable: bool = False  # shared filesystem: the cluster account writes into our folders
    # scheduler="slurm" only: #SBATCH settings, shell lines before the manager, command prefix
    slurm_options: dict = field(default_factory=dict)
    setup: tuple[str, ...] = ()
    container: str = ""


@dataclass(frozen=True)
class Round:
    number: int
    managers: list[str]
    task_count: int


class SwarmEngine:
    def __init__(
        self,
        spec: SwarmSpec,
        swarm_id: str,
        root: str,
        executor: Executor,
        options: EngineOptions = EngineOptions(),
        local_root: Path | None = None,
        transfer: Transfer | None = None,
    ):
        self.spec = spec
        self.swarm_id = swarm_id
        self.layout = SwarmLayout(root)
        self.local_root = Path(local_root or root)
        self.local = SwarmLayout(str(self.local_root))
        self.executor = executor
        self.options = options
        self.transfer = transfer

    # --- the ledger of rounds -------------------------------------------------------
    def read_ledger(self) -> dict:
        result = self.executor.run_script('cat -- "$1" 2>/dev/null || true', [self.layout.ledger])
        text = result.stdout.decode().strip()
        return json.loads(text) if text else {"swarm_id": self.swarm_id, "rounds": []}

    def _local_ledger(self) -> dict:
        path = Path(self.local.ledger)
        return json.loads(path.read_text()) if path.exists() else {"swarm_id": self.swarm_id, "rounds": []}

    def _write_ledger(self, ledger: dict) -> None:
        path = Path(self.local.ledger)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(ledger, indent=1))
        tmp.replace(path)
        self._push(["exec/ledger.json"])

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

    # --- preparing and starting a round ----------------------------------------------
    def prepare_round(self, reschedule: bool = False, lost_managers: list[str] | None = None) -> Round | None:
        """Stage what the next round needs; None when nothing is left to run.

        A new try runs every task that has not succeeded. A reschedule (after a lost
        manager, within the same try) runs only the tasks its loss cut off (see
        TaskOutcome.cut_off_by): a task that ended on its own, well or badly, keeps its result.
        """
        self._pull_events()
        if reschedule:
            outcomes = collect.fold_event_files(self.local)
            todo = [t for t in self.spec.tasks if t.index not in outcomes or outcomes[t.index].cut_off_by(lost_managers or [])]
        else:
            done = collect.succeeded_indexes(self.local)
            todo = [t for t in self.spec.tasks if t.index not in done]
        if not todo:
            return None
        collect.check_output_dir(self.spec, self.local, self.options.overwrite_outputs)
        ledger = self._local_ledger()  # exec/ was just pulled: no second round trip
        number = len(ledger["rounds"])
        plans = split_among_managers(todo, self.options.nodes, self.spec.processes, self.options.min_tasks_per_process, number)

        builder = EnvironmentBuilder(
            self.spec, self.local_root, self.layout.root, self.options.input_staging, self.options.group_writable
        )
        builder.create_root()
        builder.write_task_table()
        builder.stage_shared()
        builder.stage_tasks(todo)
        builder.write_managers(
            plans, self.spec.processes, self.options.heartbeat_interval, self.options.scheduler, self.options.task_retries
        )
        if self.options.scheduler == "slurm":
            self._write_slurm_scripts(plans)
        self._push(["."])

        managers = [p.name for p in plans]
        ledger["rounds"].append(
            {
                "round": number,
                "kind": "reschedule" if reschedule else "start",
                "managers": managers,
                "tasks": len(todo),
                "scheduler": self.options.scheduler,
                "prepared_at": time.time(),
            }
        )
        self._write_ledger(ledger)
        return Round(number, managers, len(todo))

    def reschedules_in_a_row(self) -> int:
        """Reschedule rounds since the last round started by a try: what `max_reschedules` limits."""
        count = 0
        for entry in reversed(self.read_ledger()["rounds"]):
            if entry.get("kind") != "reschedule":
                break
            count += 1
        return count

    def _write_slurm_scripts(self, plans) -> None:
        directives = sbatch_directives(self.options.slurm_options, self.spec.processes)
        for plan in plans:
            text = render(
                "slurm.sh.j2",
                manager=plan.name,
                swarm_id=self.swarm_id,
                root=check_plain_path("the swarm root", self.layout.root),
                log=self.layout.manager_file(plan.name, "log"),
                manager_script=self.layout.manager_file(plan.name, "sh"),
                directives=directives,
                setup=check_setup_lines(self.options.setup),
                container=self.options.container,
            )
            write_file(Path(self.local.manager_file(plan.name, "slurm")), text, 0o755)

    def start(self, round_: Round) -> None:
        """Start the round's managers: detached in their own session, or as SLURM jobs."""
        if self.options.scheduler == "slurm":
            script = render("submit_slurm.sh.j2")
        else:
            script = render("start_direct.sh.j2")
        self.executor.run_script(script, [self.layout.exec_dir, *round_.managers]).check("starting the swarm's managers")

    # --- watching ----------------------------------------------------------------------
    def poll(self, offsets: dict[str, int | None]) -> PollResult:
        """One poll: managers' states and the events after each offset (None: states only)."""
        result = self.executor.run_script(POLL_COMMAND, poll_arguments(self.layout, offsets))
        result.check("polling the swarm")
        return parse_poll_output(result.stdout)

    def cancel(self, managers: list[str] | None = None) -> None:
        """Stop the given managers (default: every manager of every round) and their running tasks."""
        if managers is None:
            managers = [m for r in self.read_ledger()["rounds"] for m in r["managers"]]
        if managers:
            self.executor.run_script(render("cancel.sh.j2"), [self.layout.exec_dir, *managers]).check("cancelling the swarm")

    # --- results -------------------------------------------------------------------------
    def gather(self, lost_reason: str | None = None, lost_managers: list[str] | None = None) -> collect.SwarmResult:
        self._pull_for_gather()
        return collect.gather(self.spec, self.local, self.swarm_id, self.options.overwrite_outputs, lost_reason, lost_managers)

    def cleanup(self) -> None:
        """Remove the swarm root (and a local staging copy). Refuses any folder that is not
        this swarm's root: its name must be the swarm id and it must hold our ledger."""
        for where, root, runner in (("host", self.layout.root, self.executor), ("staging", str(self.local_root), None)):
            if runner is None and (self.transfer is None or not self.local_root.exists()):
                continue
            if posixpath.basename(root.rstrip("/")) != self.swarm_id:
                raise SwarmExecutionError(f"refusing to remove {root}: it is not named after swarm {self.swarm_id}")
            (runner or LocalExecutor()).run_script(CLEANUP_SCRIPT, [root]).check(f"removing the swarm root {root} ({where})")

    # --- copy mode (no-ops when the root is local or shared) ---------------------------
    def _push(self, relative_paths: list[str]) -> None:
        if self.transfer is not None:
            self.transfer.push(self.local_root, self.layout.root, relative_paths)

    def _pull_events(self) -> None:
        if self.transfer is not None:
            self.transfer.pull(self.layout.root, self.local_root, ["exec"])

    def _pull_for_gather(self) -> None:
        if self.transfer is None:
            return
        self._pull_events()
        outcomes = collect.fold_event_files(self.local)
        wanted = []
        for task in self.spec.tasks:
            outcome = outcomes.get(task.index)
            if outcome is None:
                continue
            base = f"work/{task.folder}"
            wanted += [f"{base}/stdout.txt", f"{base}/stderr.txt", f"{base}/exit_code"]
            if outcome.ok:
                wanted += [f"{base}/{o}" for o in task.outputs]
            if outcome.missing_outputs:
                wanted.append(f"{base}/.locusts_missing")
        self.transfer.pull(self.layout.root, self.local_root, wanted)
