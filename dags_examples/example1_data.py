"""Example 1 of the original locusts: 101 input pairs and one shared file (created if missing)."""

from __future__ import annotations

from pathlib import Path

COMMAND = (
    "sleep 1; "
    "ls -lrth inputfile_<id>.txt secondinputfile_<id>.txt <shared>sf1 > ls_output_<id>.txt; "
    "cat inputfile_<id>.txt secondinputfile_<id>.txt <shared>sf1 > cat_output_<id>.txt"
)
TASK_INPUTS = ["inputfile_<id>.txt", "secondinputfile_<id>.txt"]
SHARED_INPUTS = {"sf1": "sharedfile.txt"}
OUTPUTS = ["ls_output_<id>.txt", "cat_output_<id>.txt"]


def make_example1_inputs(input_dir: Path, n: int = 101) -> Path:
    """Write the n input pairs and the shared file; files already there are kept as they are."""
    input_dir.mkdir(parents=True, exist_ok=True)
    files = {"sharedfile.txt": "shared content\n"}
    for i in range(n):
        files[f"inputfile_{i}.txt"] = f"first input of task {i}\n"
        files[f"secondinputfile_{i}.txt"] = f"second input of task {i}\n"
    for name, text in files.items():
        path = input_dir / name
        if not path.exists():
            path.write_text(text)
    return input_dir
