"""Reading a swarm root's own files in tests."""

from __future__ import annotations


def parse_task_list(data: bytes) -> list[tuple[int, str]]:
    """(index, folder) of each record of a manager's task list, exec/tasks_<manager>: NUL-separated
    INDEX FOLDER ID N_ARGS ARG... N_OUTPUTS OUTPUT... (see swarm/stage.py's task_list_record)."""
    fields = data.split(b"\0")
    found, i = [], 0
    while i + 3 < len(fields):
        n_args = int(fields[i + 3])
        n_outputs = int(fields[i + 4 + n_args])
        found.append((int(fields[i]), fields[i + 1].decode("utf-8", "surrogateescape")))
        i += 5 + n_args + n_outputs
    return found
