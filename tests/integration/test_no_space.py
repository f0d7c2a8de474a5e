"""A work root on a filesystem without room for the swarm: one clear error naming the folder and
the space needed, before any manager starts; once space is freed, the next try runs the swarm.

The small filesystem is a real size-limited tmpfs this test mounts (root only: CI runs as root)."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from airflow_provider_locusts.swarm.engine import EngineOptions, SwarmEngine
from airflow_provider_locusts.swarm.errors import SwarmNoSpaceError
from airflow_provider_locusts.swarm.shell import LocalShell
from airflow_provider_locusts.swarm.spec import build_spec

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")


@pytest.fixture
def small_filesystem(tmp_path):
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "locusts-test", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_staging_without_room_says_where_and_how_much_and_starts_nothing(tmp_path, small_filesystem, run_swarm_round):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for i in range(8):
        (inputs / f"in_{i}.bin").write_bytes(os.urandom(200_000))  # 1.6 MB in all, copied into the root
    spec = build_spec(command="cmp in_<id>.bin in_<id>.bin && echo ok > out_<id>.txt", input_dir=inputs,
                      task_inputs=["in_<id>.bin"], outputs=["out_<id>.txt"], output_dir=tmp_path / "out")
    root = small_filesystem / "swarm"

    def engine() -> SwarmEngine:
        return SwarmEngine(spec, "swarm", str(root), LocalShell(), EngineOptions(heartbeat_interval=1, input_staging="copy"))

    with pytest.raises(SwarmNoSpaceError) as error:
        engine().prepare_round()
    message = str(error.value)
    assert str(root) in message and "inodes needed" in message and "inodes free" in message and "nothing was started" in message
    assert "MB and" in message
    assert not list(root.glob("exec/pid_*")) and not list(root.glob("exec/launched_*"))

    # Space is freed (the filesystem grows): the next try stages and runs every task.
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_filesystem)], check=True)
    second = engine()
    round_ = second.prepare_round()
    run_swarm_round(second, round_)
    assert second.gather().succeeded == [str(i) for i in range(8)]


def test_running_out_of_inodes_during_staging_is_reported_the_same_way(tmp_path, small_filesystem):
    # Room enough by the estimate, but the filesystem's inodes run out while staging (as an
    # inode quota on a cluster's scratch would): staging hits ENOSPC and says so.
    subprocess.run(["mount", "-o", "remount,size=16m,nr_inodes=2000", str(small_filesystem)], check=True)
    spec = build_spec(command="true", args=[[i] for i in range(400)], output_dir=tmp_path / "out")
    engine = SwarmEngine(spec, "swarm", str(small_filesystem / "swarm"), LocalShell(), EngineOptions(heartbeat_interval=1))
    taken = small_filesystem / "taken"
    taken.mkdir()
    free_inodes = os.statvfs(small_filesystem).f_favail
    for i in range(free_inodes - 400 - 5):  # leaves room for the estimate (a folder per task), not for the scripts
        (taken / str(i)).touch()
    with pytest.raises(SwarmNoSpaceError, match=r"not enough space to stage 400 task\(s\) in .*small/swarm: .* inodes free") as error:
        engine.prepare_round()
    assert isinstance(error.value.__cause__, OSError) and error.value.__cause__.errno == errno.ENOSPC  # hit while staging
