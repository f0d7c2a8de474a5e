"""The waiting poll (templates/poll_wait.sh) for real on this machine: it returns as soon as a
swarm's round may be over, else after the wait; many swarms' polls share one command (the
batcher of an SSH connection), which answers each with its own part."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from airflow_provider_locusts.hooks.poll_batcher import PollBatcher
from airflow_provider_locusts.swarm.host_commands import PollRequest, parse_poll_wait, poll_wait_command
from airflow_provider_locusts.swarm.layout import SwarmLayout
from airflow_provider_locusts.swarm.progress import parse_poll_output
from airflow_provider_locusts.swarm.render import render_poll
from airflow_provider_locusts.swarm.shell import AsyncLocalShell, LocalShell


STAND_INS: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def stop_stand_ins():
    yield
    while STAND_INS:
        proc = STAND_INS.pop()
        proc.kill()
        proc.wait(10)


def fake_root(base: Path, name: str, managers: tuple[str, ...] = ("r0m0",)) -> SwarmLayout:
    """A swarm root whose managers are running (a process whose command line names the
    manager's script, as poll.sh checks) with one event each."""
    layout = SwarmLayout(str(base / name))
    os.makedirs(layout.exec_dir)
    Path(layout.poll_script).write_text(render_poll(layout, "direct"))
    for m in managers:
        script = Path(layout.manager_file(m, "sh"))
        script.write_text("sleep 120\n")
        STAND_INS.append(subprocess.Popen(["bash", str(script)]))
        Path(layout.manager_file(m, "pid")).write_text(f"{STAND_INS[-1].pid} {socket.gethostname()}\n")
        Path(layout.manager_file(m, "heartbeat")).touch()
        Path(layout.manager_file(m, "events")).write_text(f"1.0 0 start - h\n")
    return layout


def request(layout: SwarmLayout, managers: tuple[str, ...] = ("r0m0",)) -> PollRequest:
    return PollRequest.of(layout, {m: 0 for m in managers})


def poll(requests: list[PollRequest], wait: float):
    result = LocalShell().run_script(*poll_wait_command(requests, wait), timeout=30)
    return parse_poll_wait(result, len(requests))


def test_a_poll_waits_the_whole_interval_while_nothing_ends(tmp_path):
    a = fake_root(tmp_path, "a")
    started = time.monotonic()
    (polled,) = poll([request(a)], 1.0)
    assert 1.0 <= time.monotonic() - started < 5
    assert polled.waited >= 1.0 and not polled.worth_reporting
    status = parse_poll_output(polled.result.stdout)
    assert status.managers["r0m0"].state == "running"
    assert status.chunks["r0m0"] == b"1.0 0 start - h\n"


def test_a_poll_returns_within_a_quarter_second_of_a_done_file(tmp_path):
    a = fake_root(tmp_path, "a", ("r0m0", "r0m1"))
    Path(a.manager_file("r0m0", "done")).write_text("1\n")
    threading.Timer(1.0, lambda: Path(a.manager_file("r0m1", "done")).write_text("2\n")).start()
    started = time.monotonic()
    (polled,) = poll([request(a, ("r0m0", "r0m1"))], 20.0)
    took = time.monotonic() - started
    assert 1.0 <= took < 3.0, took
    assert polled.worth_reporting
    assert {m.state for m in parse_poll_output(polled.result.stdout).managers.values()} == {"done"}


def test_a_manager_gone_from_this_host_ends_the_wait(tmp_path):
    a = fake_root(tmp_path, "a")
    Path(a.manager_file("r0m0", "pid")).write_text(f"99999999 {socket.gethostname()}\n")  # no such process
    started = time.monotonic()
    (polled,) = poll([request(a)], 20.0)
    assert time.monotonic() - started < 3 and polled.worth_reporting
    assert parse_poll_output(polled.result.stdout).managers["r0m0"].state == "dead"


def test_several_swarms_in_one_poll_each_get_their_part(tmp_path):
    a, b = fake_root(tmp_path, "a"), fake_root(tmp_path, "b b")
    Path(b.manager_file("r0m0", "done")).write_text("1\n")
    missing = SwarmLayout(str(tmp_path / "gone"))
    polled = poll([request(a), request(b), request(missing)], 10.0)
    assert [p.worth_reporting for p in polled] == [False, True, True]
    assert polled[0].waited < 3  # b was worth reporting: the poll came back at once
    assert parse_poll_output(polled[0].result.stdout).managers["r0m0"].state == "running"
    assert parse_poll_output(polled[1].result.stdout).managers["r0m0"].state == "done"
    assert polled[2].result.returncode == 66 and b"no swarm root here" in polled[2].result.stderr


def test_the_batcher_sends_simultaneous_polls_as_one_command(tmp_path):
    roots = [fake_root(tmp_path, f"s{i}") for i in range(6)]
    commands = []

    async def run(script, args, timeout):
        commands.append(args)
        return await AsyncLocalShell().run_script(script, args, timeout=timeout)

    async def scenario():
        batcher = PollBatcher(run)
        first = await asyncio.gather(*(batcher.poll(request(r), 0.5, 30) for r in roots))
        # One swarm ends: the next round of polls comes back at once, every swarm with its own part.
        Path(roots[3].manager_file("r0m0", "done")).write_text("1\n")
        second = await asyncio.gather(*(batcher.poll(request(r), 20, 30) for r in roots))
        return first, second

    started = time.monotonic()
    first, second = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert time.monotonic() - started < 10
    assert len(commands) == 2  # six swarms, two polls each: two commands
    assert [p.worth_reporting for p in second] == [False, False, False, True, False, False]
    assert all(p.result.returncode == 0 for p in first + second)


def test_the_batcher_does_not_hold_a_new_poll_behind_a_waiting_one(tmp_path):
    slow, late = fake_root(tmp_path, "slow"), fake_root(tmp_path, "late")
    Path(late.manager_file("r0m0", "done")).write_text("1\n")

    async def scenario():
        batcher = PollBatcher(lambda script, args, timeout: AsyncLocalShell().run_script(script, args, timeout=timeout))
        waiting = asyncio.ensure_future(batcher.poll(request(slow), 4, 30))
        await asyncio.sleep(0.5)
        started = time.monotonic()
        polled = await batcher.poll(request(late), 4, 30)
        answered = time.monotonic() - started
        await waiting
        return polled, answered

    polled, answered = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert polled.worth_reporting and answered < 2.5


def test_a_failed_batch_fails_each_of_its_polls(tmp_path):
    roots = [fake_root(tmp_path, f"s{i}") for i in range(3)]

    async def broken(script, args, timeout):
        raise ConnectionResetError("the link dropped")

    async def scenario():
        batcher = PollBatcher(broken)
        return await asyncio.gather(*(batcher.poll(request(r), 1, 30) for r in roots), return_exceptions=True)

    outcomes = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert [type(o) for o in outcomes] == [ConnectionResetError] * 3


def test_a_cancelled_poll_does_not_upset_the_others(tmp_path):
    a, b = fake_root(tmp_path, "a"), fake_root(tmp_path, "b")

    async def scenario():
        batcher = PollBatcher(lambda script, args, timeout: AsyncLocalShell().run_script(script, args, timeout=timeout))
        cancelled = asyncio.ensure_future(batcher.poll(request(a), 0.5, 30))
        kept = asyncio.ensure_future(batcher.poll(request(b), 0.5, 30))
        await asyncio.sleep(0)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        return await kept

    polled = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert polled.result.returncode == 0
