"""The canonical "Example 1" workload of the original Locusts project page.

Example 1 runs one short shell command per pair of input files: 101 pairs
``inputfile_<i>.txt`` / ``secondinputfile_<i>.txt`` plus one file shared by
every task, ``sharedfile.txt``.  Each task sleeps one second, then writes an
``ls`` listing and a ``cat`` of its three inputs.

This module only depends on the standard library so that benchmarks can import
it whatever else is installed.
"""

from __future__ import annotations

import pathlib
from types import MappingProxyType
from typing import Final

#: Number of tasks (input pairs) in the canonical workload.
EXAMPLE1_N_TASKS: Final = 101

#: Per-task input file templates; ``<id>`` is the variable part of the name.
EXAMPLE1_TASK_INPUTS: Final = ("inputfile_<id>.txt", "secondinputfile_<id>.txt")

#: The input file every task reads.
EXAMPLE1_SHARED_FILE: Final = "sharedfile.txt"

#: Shared inputs by name, as paths relative to the input directory.
EXAMPLE1_SHARED_INPUTS: Final = MappingProxyType({"sf1": EXAMPLE1_SHARED_FILE})

#: Compulsory output file templates of each task.
EXAMPLE1_OUTPUTS: Final = ("ls_output_<id>.txt", "cat_output_<id>.txt")

#: The command template, in the original's syntax: ``<id>`` is the task id and
#: ``<shared>sf1`` stands for the runtime path of the shared input ``sf1``.
EXAMPLE1_COMMAND_LOCUSTS: Final = (
    "sleep 1; "
    "ls -lrth inputfile_<id>.txt secondinputfile_<id>.txt <shared>sf1 > ls_output_<id>.txt; "
    "cat inputfile_<id>.txt secondinputfile_<id>.txt <shared>sf1 > cat_output_<id>.txt"
)


def _write_if_missing(path: pathlib.Path, text: str) -> None:
    """Create ``path`` holding ``text``; leave an existing file untouched."""
    try:
        with path.open("x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        pass


def make_example1_inputs(input_dir: pathlib.Path, n: int = EXAMPLE1_N_TASKS) -> None:
    """Create the Example 1 input files in ``input_dir`` where they are missing.

    Writes ``inputfile_<i>.txt`` and ``secondinputfile_<i>.txt`` for ``i`` in
    ``0 .. n-1`` and one ``sharedfile.txt``.  Existing files are never
    overwritten, so calling this again is harmless.
    """
    input_dir = pathlib.Path(input_dir)
    input_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        _write_if_missing(input_dir / f"inputfile_{i}.txt", f"input {i}\n")
        _write_if_missing(input_dir / f"secondinputfile_{i}.txt", f"second input {i}\n")
    _write_if_missing(input_dir / EXAMPLE1_SHARED_FILE, "shared\n")
