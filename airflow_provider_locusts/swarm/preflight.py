"""Before anything is staged or submitted: one round trip to the swarm's host, as the account
that will run the swarm, so a misconfigured cluster fails in seconds with one message naming
the folder, the account, what failed and how to fix it — not minutes later as managers that
never start.

Checks: the swarm root (or, before the first try, the folder it goes in) accepts new folders;
the account's bash is 4.4 or newer; the scheduler's commands are on the account's PATH; and in remote-shared mode a probe written
here is seen on the host at the mapped path, the host can write into a folder this side made
(the group permissions the swarm's folders rely on), and what the host wrote is seen here.
"""

from __future__ import annotations

import getpass
import grp
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from airflow_provider_locusts.swarm.errors import SwarmPreflightError
from airflow_provider_locusts.swarm.render import host_script
from airflow_provider_locusts.swarm.schedulers import get_scheduler
from airflow_provider_locusts.swarm.shell import Shell
from airflow_provider_locusts.swarm.stage import make_dirs

PROBE_PREFIX = ".locusts_probe."


@dataclass
class PreflightReport:
    account: str = "?"
    groups: str = "?"
    host: str = "?"
    probe_group: str = "?"  # the group the folders this side makes in the shared folder get
    ok: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def parse_preflight(text: str) -> PreflightReport:
    report = PreflightReport()
    for line in text.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "@account":
            report.account, _, report.groups = rest.partition(" ")
        elif tag == "@host":
            report.host = rest
        elif tag in ("@ok", "@fail"):
            check, _, detail = rest.partition(" ")
            (report.ok if tag == "@ok" else report.failed)[check] = detail
    return report


def preflight(
    shell: Shell,
    root: str,
    scheduler: str,
    shared_view: Path | None = None,
    folder_mode: int = 0o2775,
    root_setting: str = "remote_root",
) -> PreflightReport:
    """Run the checks; raise SwarmPreflightError with every problem found.

    `root`: the swarm root as the host sees it. `shared_view`: the same root as seen here
    when both sides share a filesystem (remote-shared mode); None otherwise.
    `root_setting`: the operator setting that chose where roots go (named in messages).
    """
    probe_here = None
    args = [root, scheduler, ",".join(get_scheduler(scheduler).commands)]
    if shared_view is not None:
        token = secrets.token_hex(8)
        probe_name = PROBE_PREFIX + token
        parent_here = shared_view.parent
        probe_here = parent_here / probe_name
        try:
            make_dirs(probe_here, folder_mode)  # as the swarm's own folders are made
            (probe_here / "from_airflow").write_text(token)
        except OSError as error:
            raise SwarmPreflightError(
                f"cannot write into {parent_here} here as {getpass.getuser()}: {error}. "
                "shared_root must be a folder this account can write into."
            ) from error
        args += [f"{root.rsplit('/', 1)[0]}/{probe_name}", token]
    try:
        result = shell.run_script(host_script("preflight.sh"), args, timeout=120)
        result.check("the preflight on the swarm's host")
        report = parse_preflight(result.stdout.decode(errors="replace"))
        if probe_here is not None:
            report.probe_group = _group_of(probe_here)
            if "shared_write" in report.ok and not (probe_here / "from_host").exists():
                report.failed["visible_here"] = str(probe_here / "from_host")
    finally:
        if probe_here is not None:
            shutil.rmtree(probe_here, ignore_errors=True)
    if report.failed:
        raise SwarmPreflightError(_message(report, root, scheduler, shared_view, root_setting))
    return report


def _message(report: PreflightReport, root: str, scheduler: str, shared_view: Path | None, root_setting: str) -> str:
    who = f"the account {report.account} (groups: {report.groups}) on {report.host}"
    here = getpass.getuser()
    problems = []
    for check, detail in report.failed.items():
        if check == "writable":
            problems.append(
                f"{who} cannot create the swarm's folders in {detail}. Choose a {root_setting} this account "
                "can write into, or give it write permission there."
            )
        elif check == "commands":
            problems.append(
                f"{who} has no {detail}. scheduler={scheduler!r} needs them on that account's PATH "
                "(is the scheduler installed there? a `module load` in its shell profile?)."
            )
        elif check == "bash":
            problems.append(
                f"{who} runs bash {detail}: the swarm's scripts need bash 4.4 or newer on the swarm's host and "
                "its compute nodes (put a newer bash first on that account's PATH)."
            )
        elif check == "visible":
            problems.append(
                f"a file written here in {shared_view.parent} is not at {detail} for {who}: shared_root "
                f"({shared_view.parent}) and remote_root ({root.rsplit('/', 1)[0]}) must be the same folder of a "
                "filesystem both sides share."
            )
        elif check == "shared_write":
            problems.append(
                f"{who} cannot write into a folder that this side ({here}) created in the shared folder "
                f"{shared_view.parent} with mode 2775: such folders get the group {report.probe_group}, which "
                f"{report.account} is not in ({detail}). Give both accounts a common group and make the shared "
                f"folder setgid to it, e.g. `chgrp GROUP {shared_view.parent} && chmod 2775 {shared_view.parent}` "
                f"with GROUP one of {report.account}'s groups that {here} is in too."
            )
        elif check == "visible_here":
            problems.append(
                f"a file {report.account} wrote on {report.host} is not visible here at {detail}: the shared "
                "filesystem does not show the host's writes to this side (check the mount, or its caching)."
            )
    return "Preflight failed before anything was staged or submitted: " + " ".join(problems)


def _group_of(path: Path) -> str:
    try:
        return grp.getgrgid(path.stat().st_gid).gr_name
    except (KeyError, OSError):
        return "unknown"
