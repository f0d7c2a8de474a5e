"""50 swarms deferred at once, watched over SSH from one event loop, as one triggerer runs
its triggers: every swarm finishes, the triggers share one SSH connection to the host, and
their waiting polls travel together (hooks/poll_batcher.py): far fewer channels than polls,
never more than the batcher's MAX_IN_FLIGHT open at once, well within
MAX_CHANNELS_PER_CONNECTION (sshd refuses sessions past its MaxSessions). How long the event
loop stalls is a timing figure: it is measured by benchmarks/bench_trigger_load.py, not
asserted here.

The swarms' tasks wait on the host for a gate that the test opens only once every trigger
has polled its running swarm a few times, so all fifty are watched while they run.
"""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import threading

import asyncssh
import pytest

from airflow_provider_locusts.hooks.locusts import LocustsHook
from airflow_provider_locusts.hooks.poll_batcher import MAX_IN_FLIGHT, PollBatcher
from airflow_provider_locusts.hooks.ssh_shell import MAX_CHANNELS_PER_CONNECTION
from airflow_provider_locusts.swarm.engine import EngineOptions
from airflow_provider_locusts.swarm.handle import SwarmHandle
from airflow_provider_locusts.swarm.spec import build_spec
from airflow_provider_locusts.triggers.swarm import LocustsSwarmTrigger

from .conftest import CONN_ID

pytestmark = pytest.mark.cluster

SWARMS = 50
TASKS = 4
POLLS_BEFORE_GATE = 3  # per swarm, while its tasks are held


class ChannelCount:
    """Counts the SSH channels (sessions) open at once on each asyncssh client connection of
    this process, from the moment the server confirms one until it is closed. A wrapper
    around asyncssh's own SSHClientConnection.create_session, which every session goes
    through (run, create_process, open_session): the real connection does the work."""

    def __init__(self):
        self.open: dict[object, int] = {}  # connection → channels open on it now
        self.peak = 0
        self.opened = 0
        self.connections: set[object] = set()  # held, so no two can share an identity
        self._original = asyncssh.SSHClientConnection.create_session
        self._watchers: set[asyncio.Task] = set()

    def install(self, monkeypatch) -> None:
        original, count = self._original, self

        async def create_session(conn, *args, **kwargs):
            chan, session = await original(conn, *args, **kwargs)
            count.connections.add(conn)
            count.opened += 1
            count.open[conn] = count.open.get(conn, 0) + 1
            count.peak = max(count.peak, count.open[conn])

            async def closed() -> None:
                await chan.wait_closed()
                count.open[conn] -= 1

            watcher = asyncio.ensure_future(closed())
            count._watchers.add(watcher)
            watcher.add_done_callback(count._watchers.discard)
            return chan, session

        monkeypatch.setattr(asyncssh.SSHClientConnection, "create_session", create_session)


class PollCount:
    """The waiting polls each swarm's trigger asks for (by the swarm's poll.sh), through the
    connection's batcher, which sends those asked for together as one command."""

    def __init__(self):
        self.per_swarm: collections.Counter[str] = collections.Counter()

    def install(self, monkeypatch) -> None:
        original, count = PollBatcher.poll, self

        async def poll(batcher, request, wait, timeout):
            count.per_swarm[request.poll_script] += 1
            return await original(batcher, request, wait, timeout)

        monkeypatch.setattr(PollBatcher, "poll", poll)

    def least(self, swarms: int) -> int:
        return min(self.per_swarm.values()) if len(self.per_swarm) == swarms else 0


def tcp_connections_to(port: str) -> int:
    """Established TCP connections from this process to the sshd port (`ss -p`)."""
    out = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"( dport = :{port} )"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    return sum(1 for line in out.splitlines() if f"pid={os.getpid()}," in line)


async def watch_all(triggers, polls: PollCount, open_gate, port: str) -> dict:
    """Run every trigger to its first event in this event loop; open the gate once each swarm
    has been polled POLLS_BEFORE_GATE times; sample this process's SSH connections meanwhile."""
    stop = threading.Event()
    samples: list[int] = []

    def sample() -> None:
        while not stop.wait(0.2):
            samples.append(tcp_connections_to(port))

    async def gate_keeper() -> bool:
        for _ in range(1200):  # 120 s at most
            if polls.least(len(triggers)) >= POLLS_BEFORE_GATE:
                break
            await asyncio.sleep(0.1)
        reached = polls.least(len(triggers)) >= POLLS_BEFORE_GATE
        await asyncio.to_thread(open_gate)
        return reached

    async def first_event(trigger):
        async for event in trigger.run():
            return event.payload

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        keeper = asyncio.ensure_future(gate_keeper())
        events = await asyncio.wait_for(asyncio.gather(*(first_event(t) for t in triggers)), timeout=600)
        polled_before_gate = await keeper
    finally:
        stop.set()
        sampler.join(timeout=30)
    return {"events": events, "polled_before_gate": polled_before_gate, "tcp_samples": samples}


def test_fifty_deferred_swarms_share_one_ssh_connection_within_the_channel_cap(cluster, remote_root, tmp_path, monkeypatch):
    gate = f"{remote_root}/gate"
    # Held until the gate opens (300 s at most, then the task fails: nothing lingers).
    command = (
        f"for _ in $(seq 3000); do [ -e {gate} ] && break; sleep 0.1; done; [ -e {gate} ] || exit 3; "
        "sleep 0.2; echo <arg0> > out_<id>.txt"
    )
    hook = LocustsHook(ssh_conn_id=CONN_ID, work_root=str(tmp_path / "scratch"))
    triggers, handles = [], []
    try:
        for k in range(SWARMS):
            spec = build_spec(
                command=command, args=[[i] for i in range(TASKS)], outputs=["out_<id>.txt"],
                output_dir=tmp_path / f"out{k}", processes=2,
            )
            handle = SwarmHandle(f"load-{k}", f"{remote_root}/load-{k}", ssh_conn_id=CONN_ID, output_dir=str(spec.output_dir))
            with hook.engine(handle, spec=spec, options=EngineOptions(heartbeat_interval=2)) as engine:
                round_ = engine.prepare_round()
                engine.start(round_)
            handle = handle.with_round(round_.number, round_.managers, round_.task_count)
            handles.append(handle)
            triggers.append(LocustsSwarmTrigger(handle=handle.to_dict(), poll_interval=1, heartbeat_timeout=60))
        hook.close()  # the operator side's own connection: only the triggers' is left while they watch

        # Connections this process holds already (other tests' clients not yet collected).
        before = tcp_connections_to(cluster.env["LOCUSTS_SSH_PORT"])
        channels, polls = ChannelCount(), PollCount()
        channels.install(monkeypatch)
        polls.install(monkeypatch)
        figures = asyncio.run(
            watch_all(triggers, polls, lambda: cluster.ssh(f"touch {gate}"), cluster.env["LOCUSTS_SSH_PORT"])
        )
    finally:
        cluster.ssh(f"touch {gate}", check=False)

    # Every swarm was watched while it ran, then finished with all its tasks.
    assert figures["polled_before_gate"], f"polls per swarm before the gate opened: {sorted(polls.per_swarm.values())}"
    assert [(e["status"], e["finished"], e["failed"]) for e in figures["events"]] == [("finished", TASKS, 0)] * SWARMS
    for handle in handles[:: SWARMS // 5]:  # a sample, gathered for real
        with hook.engine(handle) as engine:
            assert engine.gather().succeeded == [str(i) for i in range(TASKS)]
    hook.close()
    # One SSH connection carried every trigger's polls...
    assert len(channels.connections) == 1, f"{len(channels.connections)} SSH connections for {SWARMS} triggers"
    assert figures["tcp_samples"] and max(figures["tcp_samples"]) - before == 1, (before, figures["tcp_samples"])
    # ...its polls batched: many swarms' polls per channel, never more than MAX_IN_FLIGHT
    # batched commands (and so channels) open at once, well within the connection's cap.
    asked = sum(polls.per_swarm.values())
    assert channels.opened * 5 <= asked, f"{channels.opened} channels for {asked} polls: the polls were not batched"
    assert 1 <= channels.peak <= MAX_IN_FLIGHT < MAX_CHANNELS_PER_CONNECTION, (
        f"at most {channels.peak} channels were open at once (batches in flight {MAX_IN_FLIGHT}, cap {MAX_CHANNELS_PER_CONNECTION})"
    )
