"""Timer (durable sleep) and Signal timeouts, with the injectable clock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import smithers
from smithers import Signal, Task, Timer, TimerFired, Workflow
from smithers import smithers as define
from smithers.runtime.clock import ManualClock, format_iso, use_clock
from smithers.store import Store


@pytest.fixture
def clock() -> Iterator[ManualClock]:
    """A manual clock the runtime reads for the whole test."""
    with use_clock(ManualClock()) as manual:
        assert isinstance(manual, ManualClock)
        yield manual


@define
def sleepy(ctx: Any) -> Any:
    """Sleep an hour between two tasks."""
    return Workflow(
        Task(id="before", output=int, value=1),
        Timer(id="nap", duration="1h"),
        Task(id="after", output=int, value=2),
        name="sleepy",
    )


def test_a_timer_parks_the_run_until_it_is_due(store: Store, clock: ManualClock) -> None:
    """run parks waiting-timer with wake_at; resume before the time waits, after it fires."""
    first = smithers.run(sleepy, store=store, run_id="r")
    assert first.status == "waiting-timer"
    assert [(p.node_id, p.kind) for p in first.pending] == [("nap", "timer")]
    run = store.get_run("r")
    assert run is not None
    assert run.wake_at == clock.time() + 3600
    assert run.lease is None
    assert [d.run.run_id for d in store.due_runs(clock.time() + 3600, 10)] == ["r"]
    assert store.due_runs(clock.time() + 3599, 10) == []
    clock.advance(1800)
    assert smithers.resume("r", store=store, definition=sleepy).status == "waiting-timer"
    clock.advance(1800)
    done = smithers.resume("r", store=store, definition=sleepy)
    assert done.status == "finished"
    assert done.outputs["nap"] == TimerFired(fired_at=format_iso(clock.time()))
    assert done.outputs["after"] == 2
    types = [e.type for e in store.events(run_id="r") if e.type.startswith("timer.")]
    assert types == ["timer.waiting", "timer.fired"]


def test_a_timer_until_a_past_moment_fires_at_once(store: Store, clock: ManualClock) -> None:
    """until= in the past: the timer fires when reached and the run finishes."""

    @define
    def late(ctx: Any) -> Any:
        return Workflow(Timer(id="t", until="2020-01-01T00:00:00Z"), name="late")

    assert smithers.run(late, store=store, run_id="r").status == "finished"


def test_a_timer_fires_while_the_owner_is_alive(store: Store, clock: ManualClock) -> None:
    """A timer due while a parallel task still runs fires in the same process."""

    def slow() -> int:
        clock.advance(120)
        import time

        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
            e.type == "timer.fired" for e in store.events(run_id="r")
        ):
            time.sleep(0.05)
        return 1

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(
            smithers.Parallel(Timer(id="t", duration="1m"), Task(id="slow", output=int, run=slow)),
            name="wf",
        )

    assert smithers.run(wf, store=store, run_id="r").status == "finished"


def signalled(on_timeout: str) -> Any:
    """A workflow waiting 30 minutes for a signal, then a task needing it."""

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(
            Signal(id="callback", output=int, timeout="30m", on_timeout=on_timeout),
            Task(id="use", output=int, needs={"n": "callback"}, run=lambda n: n + 1),
            Task(id="last", output=str, value="done"),
            name="wf",
        )

    return wf


def test_a_signal_timeout_fails_the_run(store: Store, clock: ManualClock) -> None:
    """on_timeout="fail": once due, the signal fails and so does the run."""
    wf = signalled("fail")
    assert smithers.run(wf, store=store, run_id="r").status == "waiting-signal"
    run = store.get_run("r")
    assert run is not None
    assert run.wake_at == clock.time() + 1800
    clock.advance(1800)
    done = smithers.resume("r", store=store, definition=wf)
    assert done.status == "failed"
    assert done.error is not None
    assert done.error.type == "SignalTimeout"
    assert "received no data within 30m" in done.error.message


def test_a_signal_timeout_skips_the_signal_and_its_dependents(
    store: Store, clock: ManualClock
) -> None:
    """on_timeout="skip": the signal and what needs it are skipped; the run goes on."""
    wf = signalled("skip")
    smithers.run(wf, store=store, run_id="r")
    clock.advance(1800)
    done = smithers.resume("r", store=store, definition=wf)
    assert done.status == "finished"
    assert done.outputs == {"last": "done"}
    assert "signal.expired" in [e.type for e in store.events(run_id="r")]


def test_data_delivered_before_the_timeout_is_applied_wins(
    store: Store, clock: ManualClock
) -> None:
    """A delivery recorded before anyone applied the timeout is used, late or not."""
    wf = signalled("fail")
    smithers.run(wf, store=store, run_id="r")
    clock.advance(3600)
    smithers.signal("r", "callback", 41, store=store)
    done = smithers.resume("r", store=store, definition=wf)
    assert done.status == "finished"
    assert done.outputs["use"] == 42


def test_cancelling_a_run_parked_on_a_timer_cancels_the_timer(
    store: Store, clock: ManualClock
) -> None:
    """cancel on a timer-parked run ends it at once; the timer node is cancelled."""
    smithers.run(sleepy, store=store, run_id="r")
    assert smithers.cancel("r", store=store).status == "cancelled"
    snapshot = store.load("r")
    assert snapshot is not None
    assert snapshot.nodes[("nap", ())].state == "cancelled"
