"""The runtime's clock: one injectable source of "now" for timestamps, leases and heartbeats."""

from __future__ import annotations

import os
import re
import threading
import time

import pytest

import smithers
from smithers import Context, Task, Workflow
from smithers.runtime import clock
from smithers.runtime.clock import ManualClock, SystemClock, format_iso, use_clock
from smithers.runtime.lease import DEAD_AFTER, HEARTBEAT_EVERY, is_dead, new_lease, now_iso
from smithers.store import KVStore
from tests.runtime.helpers import GUARD_SECONDS, run

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def test_format_iso_gives_utc_with_microseconds() -> None:
    """Epoch seconds format as ISO 8601 UTC with six fractional digits and a Z."""
    assert format_iso(START) == "2026-01-01T00:00:00.000000Z"
    assert format_iso(START + 61.25) == "2026-01-01T00:01:01.250000Z"
    assert format_iso(START + 0.0000015) == "2026-01-01T00:00:00.000002Z"


def test_a_manual_clock_moves_only_when_advanced() -> None:
    """Wall and monotonic time stand still until `advance`, then move together."""
    manual = ManualClock(START)
    assert (manual.time(), manual.monotonic()) == (START, 0.0)
    manual.advance(2.5)
    assert (manual.time(), manual.monotonic()) == (START + 2.5, 2.5)
    with pytest.raises(ValueError, match=re.escape("advance(-1) would go back in time")):
        manual.advance(-1)


def test_use_clock_swaps_the_runtime_clock_and_restores_it() -> None:
    """Inside `use_clock` every "now" comes from the given clock; after it, the old one."""
    before = clock.current_clock()
    manual = ManualClock(START)
    with use_clock(manual):
        assert clock.now() == START
        assert now_iso() == "2026-01-01T00:00:00.000000Z"
        manual.advance(90)
        assert clock.monotonic() == 90
        assert now_iso() == "2026-01-01T00:01:30.000000Z"
    assert clock.current_clock() is before
    assert isinstance(before, SystemClock)
    assert clock.now() > START


def test_a_lease_goes_dead_when_the_clock_passes_the_silence_limit() -> None:
    """A live owner's lease is dead once the clock moves past DEAD_AFTER without a heartbeat."""
    manual = ManualClock(START)
    with use_clock(manual):
        lease = new_lease()
        assert lease.pid == os.getpid()
        assert lease.heartbeat == START
        assert lease.acquired_at == "2026-01-01T00:00:00.000000Z"
        manual.advance(DEAD_AFTER)
        assert not is_dead(lease)
        manual.advance(0.5)
        assert is_dead(lease)


def test_a_run_stamps_every_record_from_the_clock(store: KVStore) -> None:
    """Under a manual clock, a run's events, attempts and records carry the clock's time."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(Task(id="a", output=int, run=lambda: 1), name="flow")

    with use_clock(ManualClock(START + 3600)):
        assert run(flow, store).status == "finished"
    stamp = "2026-01-01T01:00:00.000000Z"
    assert {e.at for e in store.events(run_id="r")} == {stamp}
    assert [(a.started_at, a.ended_at) for a in store.attempts("r")] == [(stamp, stamp)]
    record = store.get_run("r")
    assert record is not None
    assert (record.created_at, record.updated_at) == (stamp, stamp)


def test_the_heartbeat_is_written_when_the_clock_says_it_is_due(store: KVStore) -> None:
    """Advancing the clock past HEARTBEAT_EVERY makes the owner write the clock's time."""
    manual = ManualClock(START)
    beats: list[float] = []

    def body() -> int:
        manual.advance(HEARTBEAT_EVERY)
        give_up = time.monotonic() + GUARD_SECONDS  # a hang guard, not a timing
        while not beats and time.monotonic() < give_up:
            record = store.get_run("r")
            if record is not None and record.lease is not None and record.lease.heartbeat > START:
                beats.append(record.lease.heartbeat)
            threading.Event().wait(0.02)
        return 1

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(Task(id="a", output=int, run=body), name="flow")

    with use_clock(manual):
        assert run(flow, store).status == "finished"
    assert beats == [START + HEARTBEAT_EVERY]
