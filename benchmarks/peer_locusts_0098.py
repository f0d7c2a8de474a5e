"""Benchmark peer: the original ``locusts`` 0.0.98 running Example 1 locally.

Needs ``pip install locusts==0.0.98`` in the running interpreter.  The original
is launched in its own session (so in its own process group) through a small
Python snippet calling ``locusts.swarm.launch``, and watched from here:

* ``seconds``: wall time until the run is over, i.e. the launcher has exited
  and either every task has finished or nothing of the group is left running;
* ``tasks_done_seconds``: when the last of the 101 tasks wrote its outputs,
  found by scanning the whole work tree (locusts runs tasks inside a build tree
  below ``outdir/.cache/``), so it is known even if gathering crashes;
* ``launcher_exit_seconds``: when the Python side of locusts exited.  In local
  mode it polls a site-specific ``jobhist`` command and may crash long before
  its bash manager, which keeps running detached, has finished the tasks;
* ``outputs_collected``: output files that locusts gathered into ``outdir``
  (its build tree excluded).

Whatever happens, the process group is killed before returning.

Usage: ``python benchmarks/peer_locusts_0098.py [--processes N] [--timeout S] [--keep]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The Example 1 workload is defined once, next to the example DAG.  The command keeps
# the original's ``<shared>sf1`` handle, so locusts 0.0.98 takes it as it is.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dags_examples"))
from example1_data import (  # noqa: E402
    COMMAND as EXAMPLE1_COMMAND_LOCUSTS,
    OUTPUTS as EXAMPLE1_OUTPUTS,
    SHARED_INPUTS as EXAMPLE1_SHARED_INPUTS,
    TASK_INPUTS as EXAMPLE1_TASK_INPUTS,
    make_example1_inputs,
)

EXAMPLE1_N_TASKS = 101  # make_example1_inputs' default: the original's Example 1

LOCUSTS_VERSION = "0.0.98"
SWARM_CODE = "ex1"
POLL_INTERVAL_S = 0.25
STOP_GRACE_S = 5.0
ERROR_TAIL_LINES = 5

# Run in the child interpreter; the launch() keyword arguments come as JSON in argv[1].
_LAUNCH_SNIPPET = f"""
import json, sys
import locusts, locusts.swarm
if locusts.__version__ != {LOCUSTS_VERSION!r}:
    sys.exit(f"expected locusts {LOCUSTS_VERSION}, found {{locusts.__version__}}")
locusts.swarm.launch(**json.loads(sys.argv[1]))
"""

# File names of task outputs, any task id.
_OUTPUT_NAME = re.compile(
    "|".join(re.escape(t).replace(re.escape("<id>"), r"[^/]+") for t in EXAMPLE1_OUTPUTS)
)


def _output_names(root: Path) -> set[str]:
    """Names of task output files anywhere under ``root``.

    The tree changes while it is walked (locusts moves and deletes folders);
    ``os.walk`` skips folders that vanish, and callers accumulate the result.
    """
    return {
        name
        for _, _, files in os.walk(root)
        for name in files
        if _OUTPUT_NAME.fullmatch(name)
    }


def _count_collected(outdir: Path) -> int:
    """Task output files gathered into ``outdir``, outside locusts' ``.cache`` build tree."""
    return sum(
        1
        for path in outdir.rglob("*")
        if _OUTPUT_NAME.fullmatch(path.name) and ".cache" not in path.relative_to(outdir).parts
    )


def _group_alive(pgid: int) -> bool:
    """Whether any process is left in the process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop_group(pgid: int) -> None:
    """Terminate the process group ``pgid``, then kill what survives the grace period."""
    if not _group_alive(pgid):
        return
    os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
    if _group_alive(pgid):
        os.killpg(pgid, signal.SIGKILL)


def _tail(path: Path, lines: int = ERROR_TAIL_LINES) -> str:
    """The last non-empty ``lines`` lines of a text file."""
    text = path.read_text(encoding="utf-8", errors="replace")
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])


def run_locusts_0098(workdir: Path, processes: int = 4, timeout_s: float = 900) -> dict:
    """Run Example 1 with locusts 0.0.98 in local mode inside ``workdir`` and time it.

    ``workdir`` should be a fresh directory; inputs go to ``workdir/in``,
    results to ``workdir/out`` and the launcher's stdout/stderr to
    ``workdir/locusts.{stdout,stderr}.txt``.  Returns ``seconds``, ``ok``
    (clean exit and every output gathered), ``outputs_collected``, ``error``
    (last lines of the traceback, or the timeout), ``tasks_done_seconds`` and
    ``launcher_exit_seconds`` (``None`` when it never happened).
    """
    workdir = Path(workdir).resolve()
    indir, outdir = workdir / "in", workdir / "out"
    make_example1_inputs(indir, n=EXAMPLE1_N_TASKS)
    outdir.mkdir(parents=True, exist_ok=True)  # locusts requires it to exist
    parf = workdir / "locusts_parameters.txt"
    parf.write_text(f"run_on_hpc False\nnumber_of_processors {processes}\n", encoding="utf-8")
    launch_kwargs = {
        # locusts concatenates these paths, hence the trailing slashes.
        "indir": f"{indir}/",
        "outdir": f"{outdir}/",
        "code": SWARM_CODE,
        "spcins": list(EXAMPLE1_TASK_INPUTS),
        "shdins": [f"{name}:{path}" for name, path in EXAMPLE1_SHARED_INPUTS.items()],
        "outs": list(EXAMPLE1_OUTPUTS),
        "cmd": EXAMPLE1_COMMAND_LOCUSTS,
        "parf": str(parf),
    }
    expected = len(EXAMPLE1_OUTPUTS) * EXAMPLE1_N_TASKS
    stdout_path, stderr_path = workdir / "locusts.stdout.txt", workdir / "locusts.stderr.txt"

    seen: set[str] = set()
    tasks_done_s = launcher_exit_s = None
    timed_out = False
    start = time.monotonic()
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCH_SNIPPET, json.dumps(launch_kwargs)],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group, which we may kill
        )
    pgid = proc.pid
    try:
        while True:
            elapsed = time.monotonic() - start
            if launcher_exit_s is None and proc.poll() is not None:
                launcher_exit_s = elapsed
            if tasks_done_s is None:
                seen |= _output_names(workdir)
                if len(seen) >= expected:
                    tasks_done_s = elapsed
            # Over once the launcher is gone and so is the work (done, or nobody left to do it).
            if launcher_exit_s is not None and (tasks_done_s is not None or not _group_alive(pgid)):
                break
            if elapsed >= timeout_s:
                timed_out = True
                break
            time.sleep(POLL_INTERVAL_S)
        seconds = time.monotonic() - start
    finally:
        _stop_group(pgid)
        proc.wait()

    if timed_out:
        error = f"timed out after {timeout_s:g} s"
    elif proc.returncode != 0:
        error = _tail(stderr_path) or _tail(stdout_path) or f"exit status {proc.returncode}"
    else:
        error = None
    collected = _count_collected(outdir)
    return {
        "seconds": seconds,
        "ok": error is None and collected == expected,
        "outputs_collected": collected,
        "error": error,
        "tasks_done_seconds": tasks_done_s,
        "launcher_exit_seconds": launcher_exit_s,
    }


def _fmt_seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4, help="number_of_processors (default 4)")
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds before giving up (default 900)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="peer-locusts-0098-"))
    try:
        result = run_locusts_0098(workdir, processes=args.processes, timeout_s=args.timeout)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    expected = len(EXAMPLE1_OUTPUTS) * EXAMPLE1_N_TASKS
    last_error_line = result["error"].splitlines()[-1] if result["error"] else None
    print(
        f"locusts {LOCUSTS_VERSION} example1 local x{args.processes}: "
        f"seconds={result['seconds']:.1f} "
        f"tasks_done_seconds={_fmt_seconds(result['tasks_done_seconds'])} "
        f"launcher_exit_seconds={_fmt_seconds(result['launcher_exit_seconds'])} "
        f"outputs_collected={result['outputs_collected']}/{expected} "
        f"ok={result['ok']} error={last_error_line!r}"
        + (f" workdir={workdir}" if args.keep else "")
    )


if __name__ == "__main__":
    main()
