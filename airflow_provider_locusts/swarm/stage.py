"""Building the Generic Environment on a local path: folders, inputs, the command, managers.

The path is the swarm root itself (local mode, shared filesystem) or a local staging
copy that is then shipped to the remote root in one tar stream.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from airflow_provider_locusts.swarm.errors import SwarmSpecError
from airflow_provider_locusts.swarm.layout import SwarmLayout
from airflow_provider_locusts.swarm.render import host_script, render_command_script, render_manager, render_poll
from airflow_provider_locusts.swarm.spec import SwarmSpec, TaskSpec
from airflow_provider_locusts.swarm.table import TaskRow, task_row_line

INPUT_STAGING_MODES = ("hardlink", "symlink", "copy")


@dataclass(frozen=True)
class ManagerPlan:
    name: str
    tasks: tuple[TaskSpec | TaskRow, ...]


def split_among_managers(
    tasks: Sequence[TaskSpec | TaskRow], nodes: int, processes: int, min_tasks_per_process: int, round_no: int
) -> list[ManagerPlan]:
    """Split tasks evenly among at most `nodes` managers, each getting at least
    `min_tasks_per_process * processes` tasks (fewer managers are used otherwise)."""
    if not tasks:
        return []
    per_manager_floor = max(1, min_tasks_per_process * processes)
    count = max(1, min(nodes, len(tasks) // per_manager_floor or 1))
    plans = []
    for k in range(count):
        # Round-robin keeps long and short stretches of ids spread over the managers.
        plans.append(ManagerPlan(name=f"r{round_no}m{k}", tasks=tuple(tasks[k::count])))
    return plans


def place_file(source: Path, target: Path, mode: str) -> None:
    """Put source at target: a hard link or symlink where possible, a copy otherwise."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if mode == "hardlink":
        try:
            os.link(source, target)
            return
        except OSError:
            pass  # another filesystem, or links not allowed: copy instead
    elif mode == "symlink":
        os.symlink(source, target)
        return
    shutil.copy2(source, target)


def make_dirs(path: Path, mode: int) -> None:
    """Create `path` and its missing parents, each with `mode` exactly (mkdir's mode is cut by
    the umask; a shared filesystem needs the group bits)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for p in reversed(missing):
        p.mkdir(exist_ok=True)
        os.chmod(p, mode)


def _device_of(path: Path) -> int:
    """The filesystem of `path`, or of its nearest existing parent."""
    while not path.exists():
        path = path.parent
    return path.stat().st_dev


def free_space(path: Path) -> tuple[int, int]:
    """(bytes, inodes) free for this user on the filesystem of `path` (or its nearest existing parent)."""
    while not path.exists():
        path = path.parent
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize, stat.f_favail


def current_umask() -> int:
    """This process's umask, read without changing it (Linux: /proc/self/status)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o777  # unknown: treat every bit as cut, so modes are always set explicitly


def write_file(path: Path, text: str, mode: int = 0o644) -> None:
    """Write atomically (temp name + rename), never world-writable."""
    tmp = path.with_name(path.name + ".tmp")
    # surrogateescape: an id taken from a file name that is not UTF-8 goes back to its own bytes.
    with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


class EnvironmentBuilder:
    """Creates (or completes, on a retry) the swarm root's folders and files at a local path."""

    def __init__(
        self,
        spec: SwarmSpec,
        local_root: Path,
        runtime_root: str,
        input_staging: str = "hardlink",
        group_writable: bool = False,
    ):
        if input_staging not in INPUT_STAGING_MODES:
            raise SwarmSpecError(f"input_staging must be one of {', '.join(INPUT_STAGING_MODES)}, got {input_staging!r}.")
        self.spec = spec
        self.local = SwarmLayout(str(local_root))
        self.runtime = SwarmLayout(runtime_root)  # the paths the scripts see when they run
        self.input_staging = input_staging
        # Shared-filesystem mode: the cluster account writes into folders this side
        # creates, so they are group-writable and setgid (never world-writable).
        self.dir_mode = 0o2775 if group_writable else 0o755
        # mkdir's mode is cut by the umask: set it explicitly only when that cuts one of its bits.
        self._chmod_folders = bool(self.dir_mode & 0o7000 or self.dir_mode & current_umask())

    def _mkdir(self, path: Path) -> None:
        missing = []
        while not path.exists():
            missing.append(path)
            path = path.parent
        for p in reversed(missing):
            p.mkdir(exist_ok=True)
            os.chmod(p, self.dir_mode)  # explicit: mkdir's mode is cut by the umask

    def create_root(self) -> None:
        for d in (self.local.exec_dir, self.local.work_dir, self.local.shared_dir):
            self._mkdir(Path(d))

    def stage_shared(self) -> None:
        """Shared inputs, staged once: kept when already there."""
        for name, source in self.spec.shared_inputs.items():
            target = Path(self.local.shared_dir) / self.spec.shared_runtime_name(name)
            if not target.exists():
                # Its folder as every other (group-writable on a shared filesystem: the cluster
                # account removes the root at cleanup).
                self._mkdir(target.parent)
                place_file(source, target, self.input_staging)

    def write_task_table(self) -> None:
        """Write the task table once; a retry whose tasks differ from it is refused."""
        path = Path(self.local.task_table)
        rows = [task_row_line(t) for t in self.spec.tasks]
        if path.exists():
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                if f.readlines() != rows:
                    raise SwarmSpecError(
                        f"the tasks differ from those this swarm started with ({path}): input_dir, task_inputs, "
                        "args or outputs changed between tries. Restore them, or give a new swarm_id to start afresh."
                    )
            return
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.writelines(rows)
        os.replace(tmp, path)

    def write_command(self) -> None:
        """exec/command.sh (what every task runs) and exec/rerun.sh (to run one by hand)."""
        write_file(Path(self.local.command_script), render_command_script(self.spec), 0o755)
        write_file(Path(self.local.rerun_script), host_script("rerun.sh"), 0o755)

    def space_needed(self, tasks: Sequence[TaskSpec]) -> tuple[int, int]:
        """(bytes, inodes) staging `tasks` may take: a folder per task, plus every input that
        is copied rather than linked (copy mode, or another filesystem than the root's; a
        symlink takes an inode too)."""
        block = 4096
        root_device = _device_of(Path(self.local.root))
        device_of_folder: dict[str, int] = {}  # inputs mostly share a few folders: one stat each
        copied = inodes = 0
        for task in tasks:
            inodes += 1
            for source, _ in task.inputs:
                if self.input_staging == "copy":
                    copied += -(-source.stat().st_size // block) * block
                    inodes += 1
                elif self.input_staging == "symlink":
                    inodes += 1
                else:
                    parent = os.path.dirname(source)
                    device = device_of_folder.get(parent)
                    if device is None:
                        device = device_of_folder[parent] = os.stat(parent).st_dev
                    if device != root_device:
                        copied += -(-source.stat().st_size // block) * block
                        inodes += 1
        return copied + block * len(tasks), inodes

    def stage_tasks(self, tasks: Sequence[TaskSpec]) -> None:
        """A clean folder per task holding its inputs: an earlier attempt's folder is replaced
        (it lives inside the root). Nothing else is written per task: the command is exec/command.sh."""
        # Plain strings and bare system calls: this loop runs once per task.
        work, join, mkdir, link = self.local.work_dir, os.path.join, os.mkdir, os.link
        mode, chmod_folders = self.dir_mode, self._chmod_folders
        linking = self.input_staging == "hardlink"
        made: set[str] = set()
        for task in tasks:
            batch = task.folder.split("/", 1)[0]
            if batch not in made:
                self._mkdir(Path(work, batch))
                made.add(batch)
            folder = join(work, task.folder)
            try:
                mkdir(folder, mode)
            except FileExistsError:
                shutil.rmtree(folder)
                mkdir(folder, mode)
            if chmod_folders:
                os.chmod(folder, mode)
            for source, relative in task.inputs:
                target = join(folder, relative)
                if "/" in relative:
                    self._mkdir(Path(target).parent)
                if linking:
                    try:
                        link(source, target)
                        continue
                    except OSError:
                        pass  # another filesystem, or links not allowed: copy instead
                place_file(source, Path(target), "copy" if linking else self.input_staging)

    def write_managers(
        self, plans: Sequence[ManagerPlan], processes: int, heartbeat_interval: int, scheduler: str, task_retries: int = 0
    ) -> None:
        write_managers(self.local, self.runtime, plans, processes, heartbeat_interval, scheduler, task_retries)


def task_list_record(task: TaskSpec | TaskRow) -> bytes:
    """One task of a manager's task list, NUL-separated (values never pass through shell code):
    INDEX FOLDER ID N_ARGS ARG... N_OUTPUTS OUTPUT..."""
    fields = [str(task.index), task.folder, task.task_id, str(len(task.args)), *task.args, str(len(task.outputs)), *task.outputs, ""]
    return "\0".join(fields).encode("utf-8", "surrogateescape")


def write_managers(
    local: SwarmLayout,
    runtime: SwarmLayout,
    plans: Sequence[ManagerPlan],
    processes: int,
    heartbeat_interval: int,
    scheduler: str,
    task_retries: int = 0,
    task_timeout: int | None = None,
    own_shell_reason: str | None = None,
) -> None:
    """Each manager's task list and script, and the swarm's poll.sh, written through `local`
    with the paths the scripts will see when they run (`runtime`)."""
    for plan in plans:
        with open(local.manager_file(plan.name, "tasks"), "wb") as f:
            f.writelines(map(task_list_record, plan.tasks))
        write_file(
            Path(local.manager_file(plan.name, "sh")),
            render_manager(runtime, plan.name, processes, heartbeat_interval, task_retries, task_timeout, own_shell_reason),
            0o755,
        )
    write_file(Path(local.poll_script), render_poll(runtime, scheduler), 0o755)
    write_file(Path(local.scheduler_functions), host_script(f"scheduler_{scheduler}.sh"), 0o644)
