"""Poll output parsing, progress counting from event bytes, the event fold, assess()."""

from __future__ import annotations

import pytest

from airflow_provider_locusts.swarm.progress import (
    EventFold,
    ManagerStatus,
    PollResult,
    SwarmProgress,
    assess,
    parse_poll_output,
)


def poll_bytes(now: int, managers: list[tuple[str, str, str, str, bytes]]) -> bytes:
    out = f"@now {now}\n".encode()
    for name, state, age, job, chunk in managers:
        out += f"@manager {name} {state} {age} {job} {len(chunk)}\n".encode() + chunk
    return out


def test_parse_poll_output_several_managers():
    m0 = b"1.5 0 start - h1\n1.7 0 end 0 h1 0\n"
    m1 = b"2.0 1 start - h2\n2.9 1 end 3 h2 1\n2.95 3 sta"  # ends with a partial line
    data = poll_bytes(1700000000, [
        ("r0m0", "running", "2", "-", m0),
        ("r0m1", "done", "-", "COMPLETED", m1),
        ("r0m2", "queued", "-", "PENDING", b""),
    ])
    p = parse_poll_output(data)
    assert p.now == 1700000000
    assert p.managers == {
        "r0m0": ManagerStatus("r0m0", "running", 2, None),
        "r0m1": ManagerStatus("r0m1", "done", None, "COMPLETED"),
        "r0m2": ManagerStatus("r0m2", "queued", None, "PENDING"),
    }
    assert p.chunks == {"r0m0": m0, "r0m1": m1, "r0m2": b""}


def test_parse_poll_output_chunk_may_hold_header_lookalikes():
    """The byte count, not line content, delimits a chunk."""
    chunk = b"@manager fake done - - 0\n@now 1\n"
    p = parse_poll_output(poll_bytes(5, [("a", "running", "0", "-", chunk), ("b", "starting", "-", "-", b"")]))
    assert p.chunks == {"a": chunk, "b": b""}
    assert set(p.managers) == {"a", "b"}
    assert p.now == 5


def test_parse_poll_output_rejects_garbage():
    with pytest.raises(ValueError, match="unexpected line in poll output: b.hello world."):
        parse_poll_output(b"@now 1\nhello world\n")


def test_parse_empty_poll():
    p = parse_poll_output(b"@now 7\n")
    assert (p.now, p.managers, p.chunks) == (7, {}, {})


# --- SwarmProgress.feed -----------------------------------------------------------------------


def test_feed_counts_complete_lines_and_advances_offsets_only_over_them():
    prog = SwarmProgress(total=3, offsets={"m0": 0})
    first = b"1.0 0 start - h\n1.1 1 start - h\n1.2 0 end 0 h 0\n1.3 1 en"
    prog.feed("m0", first)
    complete = len(b"1.0 0 start - h\n1.1 1 start - h\n1.2 0 end 0 h 0\n")
    assert prog.offsets["m0"] == complete
    assert (prog.started, prog.finished, prog.failed, prog.running) == (2, 1, 0, 1)
    # the next poll returns the partial line again, from the new offset, now complete
    prog.feed("m0", b"1.3 1 end 2 h 0\n1.4 2 start - h\n")
    assert prog.offsets["m0"] == complete + len(b"1.3 1 end 2 h 0\n1.4 2 start - h\n")
    assert (prog.started, prog.finished, prog.failed, prog.running) == (3, 2, 1, 1)
    prog.feed("m0", b"1.5 2 end 0 h 1\n")  # exit 0 but a compulsory output missing
    assert (prog.finished, prog.failed, prog.running) == (3, 2, 0)
    assert prog.line() == "3/3 done, 2 failed, 0 running"


def test_feed_without_newline_changes_nothing():
    prog = SwarmProgress(total=1, offsets={"m0": 10})
    prog.feed("m0", b"1.0 0 sta")
    assert prog.offsets == {"m0": 10}
    assert (prog.started, prog.finished) == (0, 0)
    prog.feed("m0", b"")
    assert prog.offsets == {"m0": 10}


def test_feed_keeps_managers_apart():
    prog = SwarmProgress(total=2, offsets={"a": 0, "b": 100})
    prog.feed("a", b"1 0 start - h\n")
    prog.feed("b", b"1 1 start - h\n1 1 end 0 h 0\n")
    prog.feed("c", b"1 2 start - h\n")  # a manager not known yet starts at 0
    assert prog.offsets == {"a": 14, "b": 100 + 28, "c": 14}
    assert (prog.started, prog.finished, prog.running) == (3, 1, 2)


def test_feed_ignores_short_lines():
    prog = SwarmProgress(total=1, offsets={})
    prog.feed("m", b"junk\n\n1.0 0 start - h\n")
    assert prog.started == 1
    assert prog.offsets["m"] == len(b"junk\n\n1.0 0 start - h\n")


# --- EventFold -----------------------------------------------------------------------------------


def test_event_fold_retried_attempt_resets():
    fold = EventFold()
    fold.feed_bytes(b"10.0 4 start - hostA\n11.5 4 end 3 hostA 1\n")
    first = fold.outcomes[4]
    assert (first.attempts, first.exit_code, first.missing_outputs, first.finished, first.ok) == (1, 3, True, True, False)
    assert first.duration == 1.5
    # second attempt (a later round): start resets the previous end
    fold.feed_bytes(b"20.0 4 start - hostB\n")
    o = fold.outcomes[4]
    assert (o.attempts, o.exit_code, o.missing_outputs, o.finished, o.ok, o.host) == (2, None, False, False, False, "hostB")
    assert o.duration is None
    fold.feed_bytes(b"20.25 4 end 0 hostB 0\n")
    assert (o.attempts, o.exit_code, o.ok, o.duration, o.started_at, o.ended_at) == (2, 0, True, 0.25, 20.0, 20.25)


def test_event_fold_several_tasks_and_torn_lines():
    fold = EventFold()
    fold.feed_lines([
        b"1.0 0 start - h",
        b"1.0 1 start - h",
        b"1.2 1 end 0 h 0",
        b"1.3 0 end 1",  # torn line from a killed writer
        b"x.y 0 end 0 h 0",  # not a number
        b"",
    ])
    assert set(fold.outcomes) == {0, 1}
    assert fold.outcomes[0].finished is False
    assert fold.outcomes[0].attempts == 1
    assert fold.outcomes[1].ok is True


def test_event_fold_old_format_end_without_missing_field():
    fold = EventFold()
    fold.feed_bytes(b"1 7 start - h\n2 7 end 0 h\n")
    assert fold.outcomes[7].ok is True


# --- assess ------------------------------------------------------------------------------------------


def poll_of(*statuses: ManagerStatus) -> PollResult:
    return PollResult(now=0, managers={s.name: s for s in statuses}, chunks={})


def test_assess_all_done():
    v = assess(poll_of(ManagerStatus("a", "done", 50, None), ManagerStatus("b", "done", None, "COMPLETED")), 10, 1000)
    assert (v.finished, v.lost, v.detail) == (True, [], "")


def test_assess_running_with_fresh_heartbeat_is_not_finished():
    v = assess(poll_of(ManagerStatus("a", "done", 0, None), ManagerStatus("b", "running", 3, None)), 10, 1000)
    assert (v.finished, v.lost) == (False, [])


def test_assess_dead_manager_is_lost():
    v = assess(poll_of(ManagerStatus("a", "done", 0, None), ManagerStatus("b", "dead", 1, "FAILED")), 10, 5)
    assert (v.finished, v.lost) == (True, ["b"])
    assert v.detail == "b: dead (job FAILED)"


def test_assess_stale_heartbeat_is_lost():
    v = assess(poll_of(ManagerStatus("a", "running", 11, None), ManagerStatus("b", "running", 10, None)), 10, 5)
    assert (v.finished, v.lost, v.detail) == (False, ["a"], "a: running")
    v = assess(poll_of(ManagerStatus("a", "running", 11, None)), 10, 5)
    assert (v.finished, v.lost) == (True, ["a"])


def test_assess_never_started():
    starting = ManagerStatus("a", "starting", None, None)
    assert assess(poll_of(starting), 30, 29).finished is False
    v = assess(poll_of(starting), 30, 31)
    assert (v.finished, v.lost) == (True, ["a"])
    # a queued scheduler job may wait as long as the scheduler says, and so may a job starting
    queued = ManagerStatus("q", "queued", None, "PENDING")
    job_starting = ManagerStatus("s", "starting", None, "RUNNING")
    v = assess(poll_of(queued, job_starting), 30, 10_000)
    assert (v.finished, v.lost) == (False, [])


@pytest.mark.parametrize("data", [b"@now 1\n\n", b"Welcome to host\n@now 1\n", b"\xff\xfe\n"])
def test_parse_poll_output_rejects_stray_lines_with_value_error(data):
    """A stray line (e.g. a login banner) is a ValueError naming the line, not an IndexError."""
    with pytest.raises(ValueError, match="unexpected line in poll output"):
        parse_poll_output(data)


def _poll_of(*statuses):
    from airflow_provider_locusts.swarm.progress import ManagerStatus, PollResult

    return PollResult(now=0, managers={s.name: s for s in (ManagerStatus(*fields) for fields in statuses)}, chunks={})


def test_a_done_manager_whose_job_timed_out_is_lost():
    from airflow_provider_locusts.swarm.progress import assess

    verdict = assess(_poll_of(("m0", "done", 1, "TIMEOUT"), ("m1", "done", 1, "COMPLETED")), 60, 0)
    assert verdict.finished and verdict.lost == ["m0"]
    assert "TIMEOUT" in verdict.detail


def test_a_done_manager_waits_for_its_job_to_end():
    from airflow_provider_locusts.swarm.progress import assess

    assert not assess(_poll_of(("m0", "done", 1, "COMPLETING")), 60, 0).finished
    assert assess(_poll_of(("m0", "done", 1, "COMPLETED")), 60, 0).finished
    assert assess(_poll_of(("m0", "done", 1, None)), 60, 0).finished


def test_a_cut_task_is_unfinished_and_not_counted_as_running():
    from airflow_provider_locusts.swarm.progress import EventFold, SwarmProgress

    lines = b"1.0 4 start - vm\n2.0 4 cut 143 vm 0\n"
    fold = EventFold()
    fold.feed_bytes(lines)
    assert fold.outcomes[4].attempts == 1 and not fold.outcomes[4].finished and not fold.outcomes[4].ok
    progress = SwarmProgress(total=1, offsets={})
    progress.feed("m", lines)
    assert (progress.started, progress.finished, progress.failed, progress.running) == (0, 0, 0, 0)


def test_poll_headers_of_every_generation_parse():
    from airflow_provider_locusts.swarm.progress import parse_poll_output

    data = (
        b"@now 1700000000\n"
        b"@manager r0m0 running 3 RUNNING 40 1234 node7 6\nabcdef"
        b"@manager r0m1 starting - - 12 2\nxy"
        b"@manager r0m2 done 1 - 0\n"
    )
    poll = parse_poll_output(data)
    m0, m1, m2 = (poll.managers[m] for m in ("r0m0", "r0m1", "r0m2"))
    assert (m0.state, m0.heartbeat_age, m0.job_state, m0.since_launch, m0.job_id, m0.host) == ("running", 3, "RUNNING", 40, "1234", "node7")
    assert (m1.since_launch, m1.job_id, m1.host) == (12, None, None)
    assert (m2.state, m2.since_launch, m2.job_id) == ("done", None, None)
    assert poll.chunks == {"r0m0": b"abcdef", "r0m1": b"xy", "r0m2": b""}
