"""Remote benchmarks on the test cluster (tests/cluster/start.sh must be running).

(a) staging: 10,000 task folders with one 1 KB input each, shipped to the loopback sshd by
    the hook's SSHTarTransfer (one tar stream over one SSH channel), vs the shell peer
    `tar -c -C SRC . | ssh HOST 'mkdir -p DST && tar -x -m -C DST'` on the same tree, side
    by side, alternating, medians and the ratio (target <= 1.5).
(b) poll cost: bytes and seconds of one poll (exec/poll.sh over SSH, as the trigger runs
    it) on swarm roots whose event files describe 100 and 100,000 finished tasks: in the
    steady state (nothing new since the last offset) and with one poll-interval's worth of
    new events (100 lines). Target: the same order for both sizes.
(c) Example 1 (101 tasks, sleep 1, 4 processes) through the engine on SLURM over SSH vs
    the same on local mode, side by side.

Usage: python benchmarks/bench_remote.py [--repeat N] [--skip-example1]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "dags_examples")]  # this checkout's package, whatever is installed

from example1_data import COMMAND, OUTPUTS, SHARED_INPUTS, TASK_INPUTS, make_example1_inputs  # noqa: E402

from airflow_provider_locusts.hooks.locusts import LocustsHook  # noqa: E402
from airflow_provider_locusts.hooks.ssh_shell import SSHTarTransfer  # noqa: E402
from airflow_provider_locusts.swarm.engine import EngineOptions  # noqa: E402
from airflow_provider_locusts.swarm.handle import SwarmHandle  # noqa: E402
from airflow_provider_locusts.swarm.host_commands import poll_command  # noqa: E402
from airflow_provider_locusts.swarm.layout import SwarmLayout  # noqa: E402
from airflow_provider_locusts.swarm.progress import SwarmProgress, assess  # noqa: E402
from airflow_provider_locusts.swarm.render import render_poll  # noqa: E402
from airflow_provider_locusts.swarm.spec import build_spec  # noqa: E402

CONN_ID = "locusts_test_ssh"
REMOTE_BASE = "/home/locusts/bench"


def load_cluster_env() -> dict[str, str]:
    path = Path(os.environ.get("LOCUSTS_CLUSTER_DIR", "/tmp/locusts-cluster")) / "cluster.env"
    if not path.exists():
        sys.exit(f"{path} not found: start the test cluster with tests/cluster/start.sh")
    values = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Z_][A-Z0-9_]*)='([^']*)'$", line.strip())
        if m:
            values[m.group(1)] = m.group(2)
    os.environ.update(values)
    return values


def ssh_argv(env: dict[str, str]) -> list[str]:
    return [
        "ssh", "-i", env["LOCUSTS_SSH_KEY"], "-p", env["LOCUSTS_SSH_PORT"],
        "-o", f"UserKnownHostsFile={env['LOCUSTS_SSH_KNOWN_HOSTS']}", "-o", "BatchMode=yes",
        f"{env['LOCUSTS_SSH_USER']}@{env['LOCUSTS_SSH_HOST']}",
    ]


def remote(shell, script: str, *args: str) -> None:
    shell.run_script(script, list(args)).check(script)


# --- (a) staging -------------------------------------------------------------------------
def make_tree(root: Path, n: int) -> None:
    payload = b"x" * 1023 + b"\n"
    for i in range(n):
        folder = root / "work" / f"batch_{i // 10000}" / f"task_{i}"
        folder.mkdir(parents=True)
        (folder / "input.txt").write_bytes(payload)


def bench_staging(env: dict[str, str], n: int, repeat: int) -> None:
    hook = LocustsHook(ssh_conn_id=CONN_ID)
    transfer = SSHTarTransfer(hook.shell)
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        make_tree(tree, n)
        ours, peer = [], []
        for k in range(repeat):
            for who in (("ours", "peer") if k % 2 == 0 else ("peer", "ours")):
                target = f"{REMOTE_BASE}/staging-{who}-{k}"
                start = time.perf_counter()
                if who == "ours":
                    transfer.push(tree, target, ["."])
                    ours.append(time.perf_counter() - start)
                else:
                    tar = subprocess.Popen(["tar", "-c", "-C", str(tree), "."], stdout=subprocess.PIPE)
                    subprocess.run([*ssh_argv(env), f"mkdir -p {target} && tar -x -m -C {target}"], stdin=tar.stdout, check=True)
                    tar.stdout.close()
                    tar.wait()
                    peer.append(time.perf_counter() - start)
                remote(hook.shell, 'rm -rf -- "$1"', target)
        hook.close()
    o, p = statistics.median(ours), statistics.median(peer)
    print(f"(a) staging {n} files of 1 KB over loopback SSH: ours {o:.2f} s, tar|ssh {p:.2f} s, ratio {o / p:.2f} (target <= 1.5)")


# --- (b) poll cost -------------------------------------------------------------------------
def bench_poll(n_tasks: int, new_events: int) -> tuple[int, int, float, float]:
    """Build a swarm root over SSH whose events describe n_tasks finished tasks; time one poll."""
    hook = LocustsHook(ssh_conn_id=CONN_ID)
    shell = hook.shell
    root = f"{REMOTE_BASE}/poll-{n_tasks}"
    layout = SwarmLayout(root)
    # The events file is written on the host itself (awk), not shipped: it is the fixture.
    remote(
        shell,
        'mkdir -p "$1/exec" && cd "$1/exec" && '
        'awk -v n="$2" \'BEGIN { for (i = 0; i < n; i++) { printf "1700000000.%06d %d start - vm\\n", i, i; '
        'printf "1700000001.%06d %d end 0 vm 0\\n", i, i } }\' > events_r0m0 && : > heartbeat_r0m0 && '
        'printf "1700000002\\n" > done_r0m0',
        root, str(n_tasks),
    )
    with tempfile.TemporaryDirectory() as tmp:
        poll_path = Path(tmp) / "poll.sh"
        poll_path.write_text(render_poll(layout, "direct"))
        shell.run_script('cat > "$1"', [layout.poll_script], stdin_data=poll_path.read_bytes()).check("poll.sh")
    size = int(shell.run_script('stat -c %s "$1"', [layout.manager_file("r0m0", "events")]).stdout)
    figures = []
    # Steady state: nothing new. Busy: the last `new_events` lines (about 36 bytes each) are new.
    for offset in (size, max(size - new_events * 36, 0)):
        start = time.perf_counter()
        result = shell.run_script(*poll_command(layout, {"r0m0": offset})).check("poll")
        figures.append((len(result.stdout), time.perf_counter() - start))
    remote(shell, 'rm -rf -- "$1"', root)
    hook.close()
    (steady_bytes, steady_s), (busy_bytes, busy_s) = figures
    return steady_bytes, busy_bytes, steady_s, busy_s


# --- (c) Example 1 on SLURM over SSH vs local ---------------------------------------------
def run_example1(kind: str, tmp: Path) -> float:
    inputs = make_example1_inputs(tmp / "in")
    spec = build_spec(
        command=COMMAND, input_dir=inputs, task_inputs=TASK_INPUTS, shared_inputs=SHARED_INPUTS,
        outputs=OUTPUTS, output_dir=tmp / f"out-{kind}", processes=4,
    )
    swarm_id = f"bench-{kind}-{os.getpid()}"
    if kind == "local":
        hook = LocustsHook()
        handle = SwarmHandle(swarm_id, str(tmp / swarm_id), view=str(tmp / swarm_id), output_dir=str(spec.output_dir))
        options = EngineOptions(heartbeat_interval=5)
    else:
        hook = LocustsHook(ssh_conn_id=CONN_ID, work_root=str(tmp / "scratch"))
        handle = SwarmHandle(swarm_id, f"{REMOTE_BASE}/{swarm_id}", ssh_conn_id=CONN_ID, output_dir=str(spec.output_dir), scheduler="slurm")
        options = EngineOptions(scheduler="slurm", heartbeat_interval=5, slurm_options={"cpus_per_task": 1})
    with hook.engine(handle, spec=spec, options=options) as engine:
        return _run_round(kind, hook, engine)


def _run_round(kind: str, hook: LocustsHook, engine) -> float:
    start = time.perf_counter()
    round_ = engine.prepare_round()
    engine.start(round_)
    progress = SwarmProgress(total=round_.task_count, offsets={m: 0 for m in round_.managers})
    deadline = start + 600
    while time.perf_counter() < deadline:
        poll = engine.poll(progress.offsets)
        for manager, chunk in poll.chunks.items():
            progress.feed(manager, chunk)
        if assess(poll, 60, time.perf_counter() - start).finished:
            break
        time.sleep(1)  # the example DAG's poll_interval
    result = engine.gather()
    elapsed = time.perf_counter() - start
    if len(result.succeeded) != 101:
        raise SystemExit(f"{kind}: only {len(result.succeeded)} of 101 succeeded: {result.reasons}")
    if kind != "local":
        remote(hook.shell, 'rm -rf -- "$1"', engine.layout.root)
    hook.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--skip-example1", action="store_true")
    options = parser.parse_args()
    env = load_cluster_env()

    bench_staging(env, options.files, options.repeat)

    for n in (100, 100_000):
        steady_b, busy_b, steady_s, busy_s = bench_poll(n, new_events=100)
        print(f"(b) poll, {n:>7} tasks: steady {steady_b} B in {steady_s * 1000:.0f} ms; with 100 new events {busy_b} B in {busy_s * 1000:.0f} ms")

    if not options.skip_example1:
        with tempfile.TemporaryDirectory() as tmp:
            figures = {}
            for kind in ("slurm-ssh", "local"):
                figures[kind] = run_example1(kind, Path(tmp))
            ratio = figures["slurm-ssh"] / figures["local"]
            print(f"(c) Example 1: SLURM over SSH {figures['slurm-ssh']:.1f} s, local {figures['local']:.1f} s, ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
