"""Load on one triggerer: N swarms deferred at once, all watched over SSH from one event loop.

Starts N real swarms on the test cluster (direct managers over SSH, each `--tasks` tasks of
`sleep 0.2`, 2 at a time), then runs N LocustsSwarmTrigger.run() coroutines in one asyncio
loop, as a triggerer does, and measures:
- the event loop's worst stall: a probe task sleeps 10 ms in a loop and records how late it
  wakes up; asyncio's debug mode also counts callbacks slower than 100 ms;
- SSH connections to the host: this process's established TCP connections to the sshd
  port, sampled while the triggers run (`ss -p`); the hook that started the swarms keeps
  its own (paramiko) connection open, so 2 means the triggers shared one;
- that every trigger fired "finished" with all its tasks done;
- SSH commands the triggers sent, and the most channels open at once on their connection:
  the waiting polls of all triggers travel together (hooks/poll_batcher.py).

Usage: python benchmarks/bench_trigger_load.py [--swarms 50] [--tasks 10]
(tests/cluster/start.sh must be running.)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]  # this checkout's package
from bench_remote import CONN_ID, REMOTE_BASE, load_cluster_env, remote  # noqa: E402

from airflow_provider_locusts.hooks import ssh_shell  # noqa: E402
from airflow_provider_locusts.hooks.locusts import LocustsHook  # noqa: E402
from airflow_provider_locusts.swarm.engine import EngineOptions  # noqa: E402
from airflow_provider_locusts.swarm.handle import SwarmHandle  # noqa: E402
from airflow_provider_locusts.swarm.spec import build_spec  # noqa: E402
from airflow_provider_locusts.triggers.swarm import LocustsSwarmTrigger  # noqa: E402


def ssh_connections(port: str) -> int:
    """Established connections from this process to the sshd port (other processes' are not counted)."""
    out = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"( dport = :{port} )"], capture_output=True, text=True
    ).stdout
    return sum(1 for line in out.splitlines() if f"pid={os.getpid()}," in line)


COMMANDS = {"sent": 0, "open": 0, "most_open": 0}


def count_commands() -> None:
    """Count the commands the triggers' shared connections run, and how many run at once."""
    original = ssh_shell._SharedConnection.run

    async def counted(self, *args, **kwargs):
        COMMANDS["sent"] += 1
        COMMANDS["open"] += 1
        COMMANDS["most_open"] = max(COMMANDS["most_open"], COMMANDS["open"])
        try:
            return await original(self, *args, **kwargs)
        finally:
            COMMANDS["open"] -= 1

    ssh_shell._SharedConnection.run = counted


async def watch_all(triggers: list[LocustsSwarmTrigger], port: str) -> dict:
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.1
    slow = []

    class SlowCallbacks(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "Executing" in record.getMessage() and "took" in record.getMessage():
                slow.append(record.getMessage())

    logging.getLogger("asyncio").addHandler(SlowCallbacks())
    worst_lag = 0.0
    max_connections = 0
    stop = asyncio.Event()

    async def probe() -> None:
        nonlocal worst_lag, max_connections
        samples = 0
        while not stop.is_set():
            before = loop.time()
            await asyncio.sleep(0.01)
            worst_lag = max(worst_lag, loop.time() - before - 0.01)
            samples += 1
            if samples % 20 == 0:  # `ss` is a subprocess: sampled, and off the loop
                max_connections = max(max_connections, await asyncio.to_thread(ssh_connections, port))

    async def run(trigger: LocustsSwarmTrigger):
        async for event in trigger.run():
            return event.payload

    probe_task = asyncio.create_task(probe())
    start = loop.time()
    events = await asyncio.gather(*(run(t) for t in triggers))
    elapsed = loop.time() - start
    stop.set()
    await probe_task
    return {"events": events, "worst_lag": worst_lag, "slow": slow, "max_connections": max_connections, "seconds": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--swarms", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=10)
    options = parser.parse_args()
    env = load_cluster_env()

    triggers = []
    with tempfile.TemporaryDirectory() as tmp:
        hook = LocustsHook(ssh_conn_id=CONN_ID, work_root=tmp)
        for k in range(options.swarms):
            spec = build_spec(
                command="sleep 0.2; echo <arg0> > out_<id>.txt", args=[[i] for i in range(options.tasks)],
                outputs=["out_<id>.txt"], output_dir=Path(tmp) / f"out{k}", processes=2,
            )
            root = f"{REMOTE_BASE}/load-{k}"
            remote(hook.shell, 'rm -rf -- "$1"', root)  # what an interrupted earlier run left
            handle = SwarmHandle(f"load-{k}", root, ssh_conn_id=CONN_ID, output_dir=str(spec.output_dir))
            with hook.engine(handle, spec=spec, options=EngineOptions(heartbeat_interval=2)) as engine:
                round_ = engine.prepare_round()
                engine.start(round_)
            handle = handle.with_round(round_.number, round_.managers, round_.task_count)
            triggers.append(LocustsSwarmTrigger(handle=handle.to_dict(), poll_interval=1, heartbeat_timeout=30))
        hook.close()  # only the triggers' connections are counted while they watch
        count_commands()
        figures = asyncio.run(watch_all(triggers, env["LOCUSTS_SSH_PORT"]))
        finished = sum(1 for e in figures["events"] if e["status"] == "finished" and e["finished"] == options.tasks)
        for k in range(options.swarms):
            remote(hook.shell, 'rm -rf -- "$1"', f"{REMOTE_BASE}/load-{k}")
        hook.close()
    print(
        f"{options.swarms} swarms in one event loop: {finished} finished in {figures['seconds']:.1f} s; "
        f"worst event-loop stall {figures['worst_lag'] * 1000:.0f} ms (target < 100 ms); "
        f"{len(figures['slow'])} callbacks over 100 ms; at most {figures['max_connections']} SSH connection(s) to the host; "
        f"{COMMANDS['sent']} SSH commands ({COMMANDS['sent'] / options.swarms:.1f} per swarm), at most {COMMANDS['most_open']} "
        f"running at once (cap {ssh_shell.MAX_CHANNELS_PER_CONNECTION})"
    )
    for message in figures["slow"]:
        print("slow callback:", message[:300])


if __name__ == "__main__":
    main()
