"""How the Swarm view reads a swarm: from its recorded handle only, with the same host commands
the trigger and the operator run, on this machine or over the handle's SSH connection.

- live progress: one poll per refresh, shared between viewers (live.py);
- the per-task results of an ended swarm: exec/results.jsonl, re-read only when its
  fingerprint changed (manifest_table.py);
- a task's log tails: the task's folder comes from line INDEX + 1 of the task table, read on
  the host and checked (check_folder); nothing from the request but an integer is used.

Connections: one LocustsHook per SSH connection id, at most MAX_CONNECTIONS (least recently
used closed first); a command that fails on a broken connection is tried once more on a new
one. Every command has a timeout.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

from airflow_provider_locusts.hooks.locusts import TRANSIENT_ERRORS, LocustsHook
from airflow_provider_locusts.swarm.handle import SwarmHandle
from airflow_provider_locusts.swarm.host_commands import (
    LOG_NAMES,
    ChangedFile,
    LogTail,
    log_tail_command,
    parse_log_tail,
    parse_read_changed,
    parse_read_files,
    parse_task_row,
    poll_command,
    read_changed_command,
    read_files_command,
    task_row_command,
)
from airflow_provider_locusts.swarm.layout import SwarmLayout
from airflow_provider_locusts.swarm.progress import parse_poll_output
from airflow_provider_locusts.swarm.render import MAX_POLL_CHUNK
from airflow_provider_locusts.swarm.shell import CommandResult
from airflow_provider_locusts.swarm.table import TaskRow
from airflow_provider_locusts.www.live import LiveRegistry, LiveState
from airflow_provider_locusts.www.manifest_table import MAX_MANIFEST_BYTES, ManifestCache, ManifestTable

MAX_CONNECTIONS = 8
POLL_TIMEOUT = 30.0
COMMAND_TIMEOUT = 30.0
MANIFEST_TIMEOUT = 120.0
LOG_TAIL_BYTES = 64 * 1024
RESULTS_FILE = "exec/results.jsonl"

_CONN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
_MANAGER = re.compile(r"^r[0-9]+m[0-9]+$")


class HandleError(ValueError):
    """The recorded handle is not one this view can read."""


def handle_from_xcom(value) -> SwarmHandle:
    """The swarm handle the operator recorded, checked: what it names reaches scripts only as
    arguments, but a value that is not a handle is refused with a message."""
    if not isinstance(value, dict):
        raise HandleError("the recorded swarm handle is not a mapping")
    missing = [name for name in ("swarm_id", "root") if name not in value]
    if missing:
        raise HandleError(f"the recorded swarm handle lacks fields: {', '.join(missing)}")
    try:
        handle = SwarmHandle.from_dict(value)
    except TypeError as error:
        raise HandleError(f"the recorded swarm handle cannot be read: {error}") from None
    root = handle.root
    if not isinstance(root, str) or not root.startswith("/") or any(c in root for c in "\0\n\r"):
        raise HandleError("the recorded swarm root is not an absolute path")
    if handle.ssh_conn_id is not None and not (isinstance(handle.ssh_conn_id, str) and _CONN_ID.match(handle.ssh_conn_id)):
        raise HandleError("the recorded SSH connection id is not valid")
    if not all(isinstance(m, str) and _MANAGER.match(m) for m in handle.managers):
        raise HandleError("the recorded managers are not manager names")
    for name in ("round", "round_tasks", "total"):
        if not isinstance(getattr(handle, name), int):
            raise HandleError(f"the recorded {name} is not a number")
    return handle


@dataclass(frozen=True)
class TaskLogs:
    row: TaskRow
    folder: str  # on the swarm's host
    tails: dict[str, LogTail]  # stdout.txt, stderr.txt


class SwarmReader:
    """Reads swarms for the view; one per app (its caches live as long as the api-server)."""

    def __init__(self, live: LiveRegistry | None = None, manifests: ManifestCache | None = None,
                 max_connections: int = MAX_CONNECTIONS):
        self.live = live or LiveRegistry()
        self.manifests = manifests or ManifestCache()
        self.max_connections = max_connections
        self._hooks: OrderedDict[str | None, LocustsHook] = OrderedDict()
        self._lock = threading.Lock()
        self.commands = 0  # host commands run (for tests and figures)

    # --- connections -----------------------------------------------------------------------
    def _hook(self, ssh_conn_id: str | None) -> LocustsHook:
        with self._lock:
            hook = self._hooks.get(ssh_conn_id)
            if hook is None:
                hook = self._hooks[ssh_conn_id] = LocustsHook(ssh_conn_id=ssh_conn_id)
                while len(self._hooks) > self.max_connections:
                    _, old = self._hooks.popitem(last=False)
                    old.close()
            else:
                self._hooks.move_to_end(ssh_conn_id)
            return hook

    def run(self, handle: SwarmHandle, script: str, args: list[str], timeout: float = COMMAND_TIMEOUT) -> CommandResult:
        """Run one command where the swarm lives; once more on a new connection if the first
        attempt met a broken one."""
        hook = self._hook(handle.ssh_conn_id)
        self.commands += 1
        try:
            return hook.run(script, args, timeout=timeout)
        except TRANSIENT_ERRORS:
            hook.reset()
            self.commands += 1
            return hook.run(script, args, timeout=timeout)

    def close(self) -> None:
        with self._lock:
            while self._hooks:
                self._hooks.popitem()[1].close()

    # --- live progress ---------------------------------------------------------------------
    def live_state(self, handle: SwarmHandle) -> tuple[dict, bool]:
        """A snapshot of the swarm's progress after at most one poll (shared with other
        viewers), and whether that poll was shared."""
        key = (handle.ssh_conn_id, handle.root, handle.round)
        layout = SwarmLayout(handle.root)

        def poll(offsets: dict[str, int]):
            # poll.sh returns at most MAX_POLL_CHUNK bytes per manager: a state made while a
            # big swarm runs catches up over a few refreshes.
            script, args = poll_command(layout, offsets)
            return parse_poll_output(self.run(handle, script, args, POLL_TIMEOUT).check("polling the swarm").stdout)

        return self.live.refresh(key, lambda: self._new_live_state(handle), poll, MAX_POLL_CHUNK)

    def _new_live_state(self, handle: SwarmHandle) -> LiveState:
        """A state counting the rounds of the handle's try: from its last round started by a
        try (not a reschedule) up to the handle's round, read from the ledger."""
        script, args = read_files_command(handle.root, ["exec/ledger.json", "exec/swarm.json"])
        files = parse_read_files(self.run(handle, script, args).check("reading the swarm's ledger").stdout)
        rounds = _json(files.get("exec/ledger.json")).get("rounds") or []
        settings = _json(files.get("exec/swarm.json"))
        interval = (settings.get("options") or {}).get("heartbeat_interval")
        of_try = _rounds_of_try(rounds, handle.round)
        managers = [m for r in of_try for m in r.get("managers", []) if isinstance(m, str)]
        for m in handle.managers:
            if m not in managers:
                managers.append(m)
        try_tasks = of_try[0].get("tasks", handle.round_tasks) if of_try else handle.round_tasks
        return LiveState(managers, int(try_tasks), handle.total or int(try_tasks),
                         interval if isinstance(interval, (int, float)) else None)

    # --- results ---------------------------------------------------------------------------
    def results(self, handle: SwarmHandle) -> ManifestTable | None:
        """The swarm's per-task results (None before a gather), parsed once per version."""

        def read(known: str | None) -> ChangedFile:
            script, args = read_changed_command(handle.root, RESULTS_FILE, known, MAX_MANIFEST_BYTES, gzip=handle.ssh_conn_id is not None)
            return parse_read_changed(self.run(handle, script, args, MANIFEST_TIMEOUT).check("reading the swarm's results").stdout)

        return self.manifests.get((handle.ssh_conn_id, handle.root), read)

    # --- log tails -------------------------------------------------------------------------
    def task_logs(self, handle: SwarmHandle, index: int, max_bytes: int = LOG_TAIL_BYTES) -> TaskLogs | None:
        """The last `max_bytes` of the task's stdout and stderr; None when the swarm has no
        task `index`."""
        layout = SwarmLayout(handle.root)
        script, args = task_row_command(layout, index)
        row = parse_task_row(self.run(handle, script, args).check("reading the task table").stdout, index)
        if row is None:
            return None
        tails = {}
        for name in LOG_NAMES:
            script, args = log_tail_command(layout, row.folder, name, max_bytes)
            tails[name] = parse_log_tail(self.run(handle, script, args).check(f"reading {name} of task {index}").stdout)
        return TaskLogs(row, layout.task_dir(row.folder), tails)


def _json(data: bytes | None) -> dict:
    if not data:
        return {}
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _rounds_of_try(rounds: list, number: int) -> list[dict]:
    """The ledger's rounds from the last one a try started (kind "start") up to round `number`."""
    upto = [r for r in rounds if isinstance(r, dict) and isinstance(r.get("round"), int) and r["round"] <= number]
    first = 0
    for i, entry in enumerate(upto):
        if entry.get("kind", "start") == "start":
            first = i
    return upto[first:]
