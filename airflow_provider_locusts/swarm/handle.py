"""The swarm's handle: all the Airflow side carries to find a running swarm again.

Everything else (tasks, settings, rounds, events, results) lives in the swarm root on
the swarm's host, so any worker, the triggerer and the api-server can act on a swarm
from its handle alone: poll it, cancel it, reschedule its lost managers, gather it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

# XCom key under which the operator records the handle of its swarm (read by the Swarm view).
HANDLE_XCOM_KEY = "locusts_swarm"


@dataclass(frozen=True)
class SwarmHandle:
    """Where a swarm lives and which round is being watched.

    :param swarm_id: the swarm's name (the last component of its root)
    :param root: the swarm root as the swarm's host sees it
    :param ssh_conn_id: SSH connection of the swarm's host; None: the machine the step runs on
    :param view: the same root as seen from an Airflow worker when it can see it directly
        (this machine, or a filesystem both sides share); None in SSH copy mode
    :param output_dir: where outputs and the manifest are collected
    :param output_dir_on_host: output_dir is a folder on the swarm's (SSH) host
    :param scheduler: "direct", "slurm" or "oar"
    :param origin_host: host name of the worker that started the round (local mode checks it)
    :param round: number of the round being watched; managers: its managers; round_tasks: its tasks
    :param total: tasks in the whole swarm
    """

    swarm_id: str
    root: str
    ssh_conn_id: str | None = None
    view: str | None = None
    output_dir: str = ""
    output_dir_on_host: bool = False
    scheduler: str = "direct"
    origin_host: str | None = None
    round: int = 0
    managers: tuple[str, ...] = field(default_factory=tuple)
    round_tasks: int = 0
    total: int = 0

    @property
    def copy_mode(self) -> bool:
        """Files reach the root over SSH only (no filesystem shared with the worker)."""
        return self.ssh_conn_id is not None and self.view is None

    @property
    def local(self) -> bool:
        """The swarm runs on the machine of the worker that started it (no SSH connection)."""
        return self.ssh_conn_id is None

    def with_round(self, number: int, managers: list[str] | tuple[str, ...], tasks: int) -> SwarmHandle:
        return replace(self, round=number, managers=tuple(managers), round_tasks=tasks)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["managers"] = list(self.managers)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SwarmHandle:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["managers"] = tuple(known.get("managers") or ())
        return cls(**known)
