"""Jinja2 rendering of the scripts a swarm runs: the command, managers, poll.

StrictUndefined turns a missing variable into an error instead of an empty string,
and every value placed in a script goes through the `shq` (shell-quote) filter.
"""

from __future__ import annotations

import shlex
from functools import lru_cache
from importlib import resources

import jinja2

from airflow_provider_locusts.swarm.layout import SwarmLayout
from airflow_provider_locusts.swarm.spec import SwarmSpec

# Bytes of new events one poll returns at most per manager; the rest comes next poll.
MAX_POLL_CHUNK = 1 << 20


def shell_quote(value: object) -> str:
    return shlex.quote(str(value))


def _comment_safe(value: object) -> str:
    """A value shown in a comment: one line, printable."""
    return repr(str(value))[1:-1]


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("airflow_provider_locusts.swarm", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # shell scripts, not HTML: quoting is done by `shq`
        # bash's ${#array[@]} would open a Jinja comment: use a marker bash never writes.
        comment_start_string="<%#",
        comment_end_string="#%>",
    )
    env.filters["shq"] = shell_quote
    env.filters["shq_comment"] = _comment_safe
    env.filters["enumerate"] = lambda seq: list(enumerate(seq))
    return env


def render(template_name: str, **context: object) -> str:
    return _environment().get_template(template_name).render(**context)


@lru_cache(maxsize=None)
def host_script(name: str) -> str:
    """A fixed bash script (templates/*.sh) that takes its values as arguments or on stdin."""
    return resources.files("airflow_provider_locusts.swarm").joinpath("templates").joinpath(name).read_text(encoding="utf-8")


def render_command_script(spec: SwarmSpec) -> str:
    """exec/command.sh: the command every task runs, with the shared inputs' paths."""
    names = sorted(spec.command.shared_names)
    return render(
        "command.sh.j2",
        command=spec.command.script,
        shared_names=names,
        shared_paths={name: spec.shared_runtime_name(name) for name in names},
    )


# Seconds between a timed-out attempt's TERM and its KILL.
TIMEOUT_KILL_AFTER = 5


# Empty task logs a manager removes with one `rm` (see manager.sh.j2).
EMPTY_LOG_BATCH = 256


def render_manager(
    layout: SwarmLayout,
    manager: str,
    processes: int,
    heartbeat_interval: int,
    task_retries: int = 0,
    task_timeout: int | None = None,
    own_shell_reason: str | None = None,
) -> str:
    """The manager script. Each attempt runs in a forked subshell that sources exec/command.sh,
    unless it needs a bash of its own: with task_timeout (its own process group, under
    `timeout`), or `own_shell_reason` (a command that reads `$$` or `$PPID`)."""
    if task_timeout and not own_shell_reason:
        own_shell_reason = "task_timeout: each attempt runs under `timeout`, in a process group of its own"
    return render(
        "manager.sh.j2",
        manager=manager,
        own_shell=bool(own_shell_reason),
        own_shell_why=own_shell_reason or "",
        log_batch=EMPTY_LOG_BATCH,
        command_script=layout.command_script,
        task_retries=task_retries,
        task_timeout=task_timeout,
        kill_after=TIMEOUT_KILL_AFTER,
        root=layout.root,
        processes=processes,
        heartbeat_interval=heartbeat_interval,
        events=layout.manager_file(manager, "events"),
        heartbeat=layout.manager_file(manager, "heartbeat"),
        task_list=layout.manager_file(manager, "tasks"),
        done_file=layout.manager_file(manager, "done"),
        pid_file=layout.manager_file(manager, "pid"),
        cancelled_file=layout.manager_file(manager, "cancelled"),
    )


def render_poll(layout: SwarmLayout, scheduler: str) -> str:
    return render(
        "poll.sh.j2", exec_dir=layout.exec_dir, scheduler_functions=host_script(f"scheduler_{scheduler}.sh"), max_chunk=MAX_POLL_CHUNK
    )
