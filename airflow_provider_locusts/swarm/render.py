"""Jinja2 rendering of the scripts a swarm runs: per-task scripts, managers, poll.

StrictUndefined turns a missing variable into an error instead of an empty string,
and every value placed in a script goes through the `shq` (shell-quote) filter.
"""

from __future__ import annotations

import shlex
from functools import lru_cache
from importlib import resources

import jinja2

from airflow_provider_locusts.swarm.layout import SwarmLayout
from airflow_provider_locusts.swarm.spec import SwarmSpec, TaskSpec

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


class TaskScriptRenderer:
    """Renders task.sh for many tasks of one swarm, compiling the template once."""

    def __init__(self, spec: SwarmSpec):
        self._template = _environment().get_template("task.sh.j2")
        self._shared_names = sorted(spec.command.shared_names)
        self._shared_paths = {name: spec.shared_runtime_name(name) for name in self._shared_names}
        self._command = spec.command.script

    def __call__(self, task: TaskSpec) -> str:
        return self._template.render(
            task=task,
            command=self._command,
            shared_names=self._shared_names,
            shared_paths=self._shared_paths,
        )


# Seconds between a timed-out attempt's TERM and its KILL.
TIMEOUT_KILL_AFTER = 5


def render_manager(
    layout: SwarmLayout, manager: str, processes: int, heartbeat_interval: int, task_retries: int = 0, task_timeout: int | None = None
) -> str:
    return render(
        "manager.sh.j2",
        manager=manager,
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
