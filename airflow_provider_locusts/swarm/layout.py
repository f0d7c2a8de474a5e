"""The Generic Environment: where everything of one swarm lives under its root.

```
<root>/
  exec/     command.sh, manager scripts, task lists, append-only event files, heartbeats,
            pids / job ids, the ledger of rounds, the task table, poll.sh, rerun.sh
  work/     batch_<k>/task_<id>/  one clean folder per task: its inputs, then what it
            writes, and its stdout.txt / stderr.txt when not empty
  shared/   <NAME>/<file>         shared inputs, staged once
```
Paths are POSIX strings so the same layout describes a local root and a remote one.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from posixpath import join

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def default_swarm_id(dag_id: str, task_id: str, run_id: str, map_index: int) -> str:
    """One stable, filesystem-safe name per task instance, so an Airflow retry finds its swarm again."""
    raw = f"{dag_id}\0{task_id}\0{run_id}\0{map_index}"
    digest = hashlib.sha256(raw.encode()).hexdigest()[:10]
    readable = _UNSAFE.sub("_", f"{dag_id}.{task_id}.{run_id}")[:100].strip("._") or "swarm"
    suffix = f".{map_index}" if map_index >= 0 else ""
    return f"{readable}{suffix}.{digest}"


def check_swarm_id(swarm_id: str) -> str:
    from airflow_provider_locusts.swarm.errors import SwarmSpecError

    if not isinstance(swarm_id, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}", swarm_id):
        raise SwarmSpecError(
            f"swarm_id {swarm_id!r} is not valid: use 1-200 letters, digits, '.', '_' or '-', starting with a letter or digit."
        )
    return swarm_id


@dataclass(frozen=True)
class SwarmLayout:
    root: str

    @property
    def exec_dir(self) -> str:
        return join(self.root, "exec")

    @property
    def work_dir(self) -> str:
        return join(self.root, "work")

    @property
    def shared_dir(self) -> str:
        return join(self.root, "shared")

    @property
    def ledger(self) -> str:
        """JSON record of the rounds started so far (managers, pids, job ids)."""
        return join(self.exec_dir, "ledger.json")

    @property
    def task_table(self) -> str:
        """One JSON line per task: index, id, folder, outputs."""
        return join(self.exec_dir, "tasks.jsonl")

    @property
    def results(self) -> str:
        """One JSON line per task already gathered: what a retry must not run again."""
        return join(self.exec_dir, "results.jsonl")

    @property
    def settings(self) -> str:
        """The swarm's settings (JSON): what reschedules and gathers need besides the task table."""
        return join(self.exec_dir, "swarm.json")

    @property
    def poll_script(self) -> str:
        return join(self.exec_dir, "poll.sh")

    @property
    def scheduler_functions(self) -> str:
        """The scheduler's bash functions (templates/scheduler_<name>.sh), for cancel and diagnose."""
        return join(self.exec_dir, "scheduler.sh")

    @property
    def command_script(self) -> str:
        """The command every task runs (sourced in a subshell, or run by bash) in its folder."""
        return join(self.exec_dir, "command.sh")

    @property
    def rerun_script(self) -> str:
        """`bash exec/rerun.sh TASK_ID` runs one task again by hand."""
        return join(self.exec_dir, "rerun.sh")

    def task_dir(self, folder: str) -> str:
        return join(self.work_dir, folder)

    def manager_file(self, manager: str, kind: str) -> str:
        """kind: sh (script), tasks (task list), events, heartbeat, pid, done, log, jobid,
        slurm / oar (job script), launched (started directly), cancelled (never to start)."""
        suffix = {"sh": ".sh", "slurm": ".slurm.sh", "oar": ".oar.sh", "log": ".log"}.get(kind, f".{kind}")
        name = f"manager_{manager}{suffix}" if kind in ("sh", "slurm", "oar", "log") else f"{kind}_{manager}"
        return join(self.exec_dir, name)
