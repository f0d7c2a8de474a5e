"""Remote benchmarks on the test cluster (tests/cluster/start.sh must be running).

(a) staging: 10,000 task folders with one 1 KB input each, shipped to the loopback sshd by
    the hook's SSHTarTransfer (one tar stream over one SSH channel), vs the shell peer
    `tar -c -C SRC . | ssh HOST 'mkdir -p DST && tar -x -m -C DST'` on the same tree, side
    by side, alternating, medians and the ratio (target <= 1.5).
(b) poll cost: bytes and seconds of one poll (exec/poll.sh over SSH, as the trigger runs
    it) on swarm roots whose event files describe 100 and 100,000 finished tasks: in the
    steady state (nothing new since the last offset) and with one poll-interval's worth of
    new events (100 lines). Target: the same order for both sizes.
    Also the waiting poll the trigger sends (templates/poll_wait.sh) with nothing to wait
    for (its fixed cost against the plain poll's), and the CPU time it costs the host while
    it waits a whole poll interval.
(c) Example 1 (101 tasks, sleep 1, 4 processes) through the engine on SLURM over SSH vs
    the same on local mode, side by side.
(d) A swarm of one task of --swarm-seconds (default 600) over SSH, watched at the default
    poll_interval (5 s) two ways at once: the trigger (waiting polls) and the loop the
    trigger ran before them (a plain poll, then a 5 s sleep). Counts the polls each sent and
    how long after the manager's done file each saw the end.

Usage: python benchmarks/bench_remote.py [--repeat N] [--skip-example1] [--swarm-seconds S] [--skip-long]
"""

from __future__ import annotations

import argparse
import asyncio
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
from airflow_provider_locusts.swarm.host_commands import PollRequest, parse_poll_wait, poll_command, poll_wait_command  # noqa: E402
from airflow_provider_locusts.triggers.swarm import LocustsSwarmTrigger  # noqa: E402
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
    # Each as the plain poll, then as the waiting poll with nothing to wait for (its manager is done).
    for offset in (size, max(size - new_events * 36, 0)):
        for waiting in (False, True):
            start = time.perf_counter()
            if waiting:
                (polled,) = parse_poll_wait(shell.run_script(*poll_wait_command([PollRequest.of(layout, {"r0m0": offset})], 5)), 1)
                result = polled.result
            else:
                result = shell.run_script(*poll_command(layout, {"r0m0": offset})).check("poll")
            figures.append((len(result.stdout), time.perf_counter() - start))
    remote(shell, 'rm -rf -- "$1"', root)
    hook.close()
    return figures


def bench_waiting_cpu(interval: float = 5.0) -> list[tuple[float, float]]:
    """Wall and host CPU seconds of a plain poll, and of a waiting poll that waits a whole
    interval (nothing ends), on a running manager."""
    hook = LocustsHook(ssh_conn_id=CONN_ID)
    shell = hook.shell
    root = f"{REMOTE_BASE}/poll-waiting"
    layout = SwarmLayout(root)
    # A manager that runs (a process named after its script) and never ends during the poll.
    remote(shell, 'mkdir -p "$1/exec" && cd "$1/exec" && printf "sleep 60\\n" > manager_r0m0.sh && '
                  '(setsid bash manager_r0m0.sh > /dev/null 2>&1 < /dev/null & echo "$! $HOSTNAME" > pid_r0m0) && : > heartbeat_r0m0', root)
    with tempfile.TemporaryDirectory() as tmp:
        poll_path = Path(tmp) / "poll.sh"
        poll_path.write_text(render_poll(layout, "direct"))
        shell.run_script('cat > "$1"', [layout.poll_script], stdin_data=poll_path.read_bytes()).check("poll.sh")
    figures = []
    for script, args in (poll_command(layout, {"r0m0": 0}), poll_wait_command([PollRequest.of(layout, {"r0m0": 0})], interval)):
        # `times` after the poll: the user and system CPU of the poll and every process it ran.
        start = time.perf_counter()
        out = shell.run_script('f=$(mktemp); cat > "$f"; bash "$f" "$@" > /dev/null; times; rm -f "$f"', args,
                               stdin_data=script.encode()).check("poll").stdout.decode()
        wall = time.perf_counter() - start
        children = out.strip().splitlines()[-1].split()  # "XmY.YYYs XmY.YYYs" for the children
        figures.append((wall, sum(int(t.split("m")[0]) * 60 + float(t.split("m")[1].rstrip("s")) for t in children)))
    remote(shell, 'kill "$(cut -d" " -f1 "$1/exec/pid_r0m0")"; rm -rf -- "$1"', root)
    hook.close()
    return figures


# --- (d) polls over a long swarm: the waiting poll vs the loop before it --------------------
def bench_long_swarm(seconds: float, poll_interval: float = 5.0) -> None:
    hook = LocustsHook(ssh_conn_id=CONN_ID)
    with tempfile.TemporaryDirectory() as tmp:
        handles = {}
        for way in ("waiting", "sleeping"):
            spec = build_spec(command=f"sleep {seconds:g}", args=[[0]], output_dir=Path(tmp) / f"out-{way}")
            handle = SwarmHandle(f"long-{way}", f"{REMOTE_BASE}/long-{way}", ssh_conn_id=CONN_ID, output_dir=str(spec.output_dir))
            remote(hook.shell, 'rm -rf -- "$1"', handle.root)
            with hook.engine(handle, spec=spec, options=EngineOptions(heartbeat_interval=10)) as engine:
                round_ = engine.prepare_round()
                engine.start(round_)
            handles[way] = handle.with_round(round_.number, round_.managers, round_.task_count)

        async def waiting() -> tuple[int, float]:
            polls = 0
            import airflow_provider_locusts.hooks.locusts as hooks

            original = hooks.LocustsAsyncHook.poll_wait

            async def counted(self, *a, **kw):
                nonlocal polls
                polls += 1
                return await original(self, *a, **kw)

            hooks.LocustsAsyncHook.poll_wait = counted
            trigger = LocustsSwarmTrigger(handle=handles["waiting"].to_dict(), poll_interval=poll_interval)
            async for event in trigger.run():
                return polls, time.time()

        async def sleeping() -> tuple[int, float]:
            from airflow_provider_locusts.hooks.locusts import LocustsAsyncHook

            async_hook = LocustsAsyncHook(ssh_conn_id=CONN_ID)
            handle = handles["sleeping"]
            progress = SwarmProgress(total=1, offsets={m: 0 for m in handle.managers})
            polls = 0
            try:
                while True:
                    polls += 1
                    poll = await async_hook.poll(handle, dict(progress.offsets))
                    for manager, chunk in poll.chunks.items():
                        progress.feed(manager, chunk)
                    if assess(poll, 120, 0).finished:
                        return polls, time.time()
                    await asyncio.sleep(poll_interval)
            finally:
                await async_hook.close()

        async def both():
            return await asyncio.gather(waiting(), sleeping())

        (w_polls, w_seen), (s_polls, s_seen) = asyncio.run(both())
        done = {}
        for way, handle in handles.items():
            text = hook.shell.run_script('cat "$1"/exec/done_*', [handle.root]).check("done").stdout
            done[way] = float(text.split()[0])
            remote(hook.shell, 'rm -rf -- "$1"', handle.root)
    hook.close()
    print(f"(d) a {seconds:g}-s swarm over SSH, poll_interval {poll_interval:g} s: waiting polls {w_polls} polls, end seen "
          f"{w_seen - done['waiting']:.2f} s after the done file; plain poll + sleep (before) {s_polls} polls, end seen "
          f"{s_seen - done['sleeping']:.2f} s after")


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
        time.sleep(1)  # a poll a second, on both sides alike
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
    parser.add_argument("--swarm-seconds", type=float, default=600, help="(d): the long swarm's duration")
    parser.add_argument("--skip-long", action="store_true", help="skip (d)")
    options = parser.parse_args()
    env = load_cluster_env()

    bench_staging(env, options.files, options.repeat)

    for n in (100, 100_000):
        (plain_b, plain_s), (wait_b, wait_s), (busy_b, busy_s), (wbusy_b, wbusy_s) = bench_poll(n, new_events=100)
        print(f"(b) poll, {n:>7} tasks: plain poll: steady {plain_b} B in {plain_s * 1000:.0f} ms, with 100 new events {busy_b} B "
              f"in {busy_s * 1000:.0f} ms; waiting poll with nothing to wait for: steady {wait_b} B in {wait_s * 1000:.0f} ms, "
              f"with 100 new events {wbusy_b} B in {wbusy_s * 1000:.0f} ms")
    (plain_wall, plain_cpu), (wall, cpu) = bench_waiting_cpu()
    print(f"(b) host CPU per poll of a running swarm: plain poll {plain_cpu * 1000:.0f} ms; waiting poll that waits its "
          f"whole interval ({wall:.2f} s) {cpu * 1000:.0f} ms")

    if not options.skip_example1:
        with tempfile.TemporaryDirectory() as tmp:
            figures = {}
            for kind in ("slurm-ssh", "local"):
                figures[kind] = run_example1(kind, Path(tmp))
            ratio = figures["slurm-ssh"] / figures["local"]
            print(f"(c) Example 1: SLURM over SSH {figures['slurm-ssh']:.1f} s, local {figures['local']:.1f} s, ratio {ratio:.2f}")

    if not options.skip_long:
        bench_long_swarm(options.swarm_seconds)


if __name__ == "__main__":
    main()
