"""Hand-run check that the test cluster's Airflow connection really works.

    tests/cluster/start.sh && python tests/cluster/check.py

Reads ``${LOCUSTS_CLUSTER_DIR:-/tmp/locusts-cluster}/cluster.env`` and checks,
with the connection ``AIRFLOW_CONN_LOCUSTS_TEST_SSH`` (conn id
``locusts_test_ssh``), that:

* ``SSHHook`` (paramiko) logs in, verifying the pinned host key, runs a
  command and writes a file into the shared dir over SFTP, which root then
  reads at the same path;
* ``SSHHookAsync`` (asyncssh) logs in and runs a command;
* SLURM answers through it (``sinfo``);
* both hooks REFUSE the server when the connection pins a different host key,
  i.e. host-key verification is really on.

Not used by start.sh or the test suite; exits non-zero on the first failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import uuid
from pathlib import Path

CONN_ID = "locusts_test_ssh"
ENV_NAME = "AIRFLOW_CONN_" + CONN_ID.upper()


def load_cluster_env() -> dict[str, str]:
    """Parse cluster.env: ``KEY='value'`` lines (values never contain ``'``)."""
    state = Path(os.environ.get("LOCUSTS_CLUSTER_DIR", "/tmp/locusts-cluster"))
    env: dict[str, str] = {}
    for line in (state / "cluster.env").read_text().splitlines():
        m = re.fullmatch(r"([A-Z_][A-Z0-9_]*)='([^']*)'", line)
        if m:
            env[m.group(1)] = m.group(2)
    return env


def check_sync(env: dict[str, str]) -> None:
    from airflow.providers.ssh.hooks.ssh import SSHHook

    hook = SSHHook(ssh_conn_id=CONN_ID)
    with hook.get_conn() as client:
        _, out, err = client.exec_command("id -un; umask; sinfo -h -o '%P %t %D'")
        text = out.read().decode()
        assert out.channel.recv_exit_status() == 0, err.read().decode()
        lines = text.split()
        assert lines[0] == env["LOCUSTS_SSH_USER"], text
        print(f"SSHHook: logged in as {lines[0]}, umask {lines[1]}, sinfo: {' '.join(lines[2:])}")

        # SFTP write by the SSH user into the shared dir; root reads it locally.
        name = f"check-{uuid.uuid4().hex}.txt"
        remote = f"{env['LOCUSTS_SHARED_DIR']}/{name}"
        with client.open_sftp() as sftp:
            with sftp.open(remote, "w") as fh:
                fh.write("hello from locusts\n")
        local = Path(remote)
        st = local.stat()
        assert local.read_text() == "hello from locusts\n"
        print(f"SSHHook: SFTP wrote {remote} (uid {st.st_uid}, mode {oct(st.st_mode & 0o777)}); root read it")
        local.unlink()


async def _async_run(command: str) -> tuple[int, str, str]:
    from airflow.providers.ssh.hooks.ssh import SSHHookAsync

    return await SSHHookAsync(ssh_conn_id=CONN_ID).run_command(command, timeout=30)


def check_async(env: dict[str, str]) -> None:
    code, out, err = asyncio.run(_async_run("id -un; hostname"))
    assert code == 0, err
    user, host = out.split()
    assert user == env["LOCUSTS_SSH_USER"], out
    print(f"SSHHookAsync: logged in as {user} on {host}")


def check_wrong_host_key_refused(env: dict[str, str]) -> None:
    """Pin a freshly generated key instead of the server's: both must refuse."""
    import asyncssh
    import paramiko

    from airflow.providers.ssh.hooks.ssh import SSHHook

    good = os.environ[ENV_NAME]
    conn = json.loads(good)
    # Same key type as the server's (ed25519), so that the only difference
    # is the key itself and the failure must be the host-key check.
    wrong = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode()
    conn["extra"]["host_key"] = " ".join(wrong.split()[:2])
    os.environ[ENV_NAME] = json.dumps(conn)
    try:
        try:
            SSHHook(ssh_conn_id=CONN_ID, conn_retry_attempts=1).get_conn()
        except paramiko.BadHostKeyException as exc:
            print(f"SSHHook: wrong host key refused ({type(exc).__name__})")
        else:
            raise AssertionError("SSHHook connected although the pinned host key is wrong")
        try:
            asyncio.run(_async_run("true"))
        except asyncssh.HostKeyNotVerifiable as exc:
            print(f"SSHHookAsync: wrong host key refused ({type(exc).__name__})")
        else:
            raise AssertionError("SSHHookAsync connected although the pinned host key is wrong")
    finally:
        os.environ[ENV_NAME] = good


def main() -> int:
    env = load_cluster_env()
    os.environ.update(env)
    check_sync(env)
    check_async(env)
    check_wrong_host_key_refused(env)
    print("check.py: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
