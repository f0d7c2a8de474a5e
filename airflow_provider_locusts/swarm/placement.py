"""Where a swarm's root lives and how this side reaches it, from the operator's settings.

| ssh_conn_id | shared_root | the root is                 | this side sees it at   |
|-------------|-------------|-----------------------------|------------------------|
| None        | —           | work_root/<swarm_id> here   | the same path          |
| set         | set         | remote_root/<swarm_id>      | shared_root/<swarm_id> |
| set         | None        | remote_root/<swarm_id>      | nowhere: copy mode     |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from airflow_provider_locusts.swarm.errors import SwarmSpecError
from airflow_provider_locusts.swarm.handle import SwarmHandle


@dataclass(frozen=True)
class Placement:
    work_root: str
    ssh_conn_id: str | None = None
    remote_root: str | None = None
    shared_root: str | None = None
    output_dir_on_host: bool = False

    def check(self) -> Placement:
        if self.ssh_conn_id is None and (self.remote_root or self.shared_root):
            raise SwarmSpecError("remote_root and shared_root need ssh_conn_id: without it the swarm runs in work_root on this machine.")
        if self.ssh_conn_id is None and self.output_dir_on_host:
            raise SwarmSpecError("output_dir_on_host needs ssh_conn_id: without it the swarm's host is this machine; leave it False.")
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
        return self

    def handle(self, swarm_id: str, output_dir: str, scheduler: str, origin_host: str) -> SwarmHandle:
        """The handle of swarm `swarm_id` placed here (no round yet)."""
        work_root = Path(self.work_root).expanduser().absolute()
        if self.ssh_conn_id is None:
            root = view = str(work_root / swarm_id)
        else:
            root = f"{self.remote_root.rstrip('/')}/{swarm_id}"
            view = str(Path(self.shared_root) / swarm_id) if self.shared_root else None
        if self.output_dir_on_host:
            if not output_dir.startswith("/"):
                raise SwarmSpecError(f"output_dir must be an absolute folder on the SSH host with output_dir_on_host, got {output_dir!r}.")
        else:
            output_dir = str(Path(output_dir).expanduser().absolute())
        return SwarmHandle(
            swarm_id=swarm_id,
            root=root,
            ssh_conn_id=self.ssh_conn_id,
            view=view,
            output_dir=output_dir,
            output_dir_on_host=self.output_dir_on_host,
            scheduler=scheduler,
            origin_host=origin_host,
        )
