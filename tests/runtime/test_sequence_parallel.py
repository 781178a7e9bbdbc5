"""Sequence order, Parallel concurrency, concurrency caps and `needs` between siblings."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

import smithers
from smithers import (
    Approval,
    ApprovalRequest,
    Parallel,
    Sequence,
    Signal,
    Task,
    TaskInfo,
    Workflow,
)
from smithers.errors import InputError
from smithers.store import EventRecord, KVStore
from tests.runtime.helpers import (
    Gauge,
    Recorder,
    attempts,
    index_of,
    most_running,
    outputs,
    run,
    states,
)

BARRIER_SECONDS = 10.0


def recording(order: Recorder, name: str, value: int = 0) -> Callable[[], int]:
    """A task body that records its start and returns ``value``."""

    def body() -> int:
        order.add(name)
        return value

    return body


def meeting(barrier: threading.Barrier, gauge: Gauge, value: int) -> Callable[[], int]:
    """A task body that cannot return until ``barrier.parties`` task bodies run at once."""

    def body() -> int:
        with gauge:
            barrier.wait(BARRIER_SECONDS)
        return value

    return body


# -- Sequence -------------------------------------------------------------------------------


def test_sequence_runs_children_in_order(store: KVStore) -> None:
    """Sequence children start one after another, in the order written."""
    order = Recorder()

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        return Workflow(
            Sequence(
                *[Task(id=f"t{i}", output=int, run=recording(order, f"t{i}", i)) for i in range(5)]
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert order.items == ["t0", "t1", "t2", "t3", "t4"]
    assert result.outputs == {"t0": 0, "t1": 1, "t2": 2, "t3": 3, "t4": 4}


def test_sequence_child_starts_only_after_previous_is_terminal(store: KVStore) -> None:
    """Each Sequence child's node.started comes after its predecessor's node.finished."""

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        return Workflow(
            Sequence(
                Task(id="a", output=int, run=lambda: 1),
                Task(id="b", output=int, value=2),
                Task(id="c", output=int, run=lambda: 3),
            ),
            name="flow",
        )

    assert run(flow, store).status == "finished"
    assert index_of(store, "node.finished", "a") < index_of(store, "node.started", "b")
    assert index_of(store, "node.finished", "b") < index_of(store, "node.started", "c")


def test_workflow_children_run_in_order_like_a_sequence(store: KVStore) -> None:
    """The Workflow root runs its own children in order."""
    order = Recorder()

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        return Workflow(
            Task(id="a", output=int, run=recording(order, "a")),
            Task(id="b", output=int, run=recording(order, "b")),
            Task(id="c", output=int, run=recording(order, "c")),
            name="flow",
        )

    assert run(flow, store).status == "finished"
    assert order.items == ["a", "b", "c"]
    assert index_of(store, "node.finished", "b") < index_of(store, "node.started", "c")


def test_sequence_empty_and_skipped_children_pass_order_through(store: KVStore) -> None:
    """Empty groups, dropped children and skipped children keep the next child after the last
    real one."""
    release = threading.Event()
    order = Recorder()

    def slow() -> int:
        order.add("a")
        # `c` must not start while `a` runs: nothing frees `a` but a test-side event, which
        # is set as soon as `a` started (so a `c` that jumped the queue would be observed).
        release.wait(BARRIER_SECONDS)
        order.add("a-done")
        return 1

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        return Workflow(
            Sequence(
                Task(id="a", output=int, run=slow),
                Sequence(),
                None,
                False,
                Parallel(),
                Task(id="skipped", output=int, value=0, skip_if=True),
                Sequence(Task(id="inner-skipped", output=int, value=0), skip_if=True),
                Task(id="c", output=int, run=recording(order, "c", 3)),
            ),
            name="flow",
        )

    def on_event(event: EventRecord) -> None:
        if event.type == "node.started" and event.node_id == "a":
            release.set()

    result = run(flow, store, on_event=on_event)
    assert result.status == "finished"
    assert order.items == ["a", "a-done", "c"]
    assert states(store) == {
        ("a", ()): "finished",
        ("skipped", ()): "skipped",
        ("inner-skipped", ()): "skipped",
        ("c", ()): "finished",
    }
    assert index_of(store, "node.finished", "a") < index_of(store, "node.started", "c")


def test_sequence_after_parallel_waits_for_every_parallel_child(store: KVStore) -> None:
    """A Sequence child after a Parallel starts only once all the Parallel's children are
    terminal."""

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        return Workflow(
            Sequence(
                Parallel(
                    Task(id="p1", output=int, run=lambda: 1),
                    Task(id="p2", output=int, run=lambda: 2),
                    Sequence(
                        Task(id="p3", output=int, run=lambda: 3), Task(id="p4", output=int, value=4)
                    ),
                ),
                Task(id="after", output=int, value=5),
            ),
            name="flow",
        )

    assert run(flow, store).status == "finished"
    started = index_of(store, "node.started", "after")
    for node_id in ("p1", "p2", "p3", "p4"):
        assert index_of(store, "node.finished", node_id) < started


def test_sequence_goes_on_after_a_continue_on_fail_failure(store: KVStore) -> None:
    """A child that failed under continue_on_fail is terminal: the next child starts."""

    def boom() -> int:
        raise RuntimeError("boom")

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        return Workflow(
            Sequence(
                Task(id="a", output=int, run=boom, continue_on_fail=True),
                Task(id="b", output=int, value=2),
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert states(store) == {("a", ()): "failed", ("b", ()): "finished"}
    assert index_of(store, "node.failed", "a") < index_of(store, "node.started", "b")


# -- Parallel -------------------------------------------------------------------------------


def test_parallel_children_run_concurrently(store: KVStore) -> None:
    """Every Parallel child runs at once: four task bodies meet at one barrier."""
    barrier = threading.Barrier(4)
    gauge = Gauge()

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        return Workflow(
            Parallel(
                *[Task(id=f"p{i}", output=int, run=meeting(barrier, gauge, i)) for i in range(4)]
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert result.outputs == {"p0": 0, "p1": 1, "p2": 2, "p3": 3}
    assert gauge.most == 4


def test_parallel_sequences_interleave(store: KVStore) -> None:
    """Sequences inside a Parallel progress side by side: the second step of each needs the
    other's first step to have run."""
    first_a, first_b = threading.Event(), threading.Event()

    def step(mine: threading.Event, other: threading.Event, value: int) -> Callable[[], int]:
        def body() -> int:
            mine.set()
            assert other.wait(BARRIER_SECONDS), "the other Sequence never ran its first step"
            return value

        return body

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        return Workflow(
            Parallel(
                Sequence(
                    Task(id="a1", output=int, run=step(first_a, first_b, 1)),
                    Task(id="a2", output=int, value=2),
                ),
                Sequence(
                    Task(id="b1", output=int, run=step(first_b, first_a, 3)),
                    Task(id="b2", output=int, value=4),
                ),
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert result.outputs == {"a1": 1, "a2": 2, "b1": 3, "b2": 4}


def test_parallel_max_concurrency_caps_its_running_tasks(store: KVStore) -> None:
    """Parallel(max_concurrency=2) runs two of its tasks at a time, never more."""
    barrier = threading.Barrier(2)
    gauge = Gauge()

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        return Workflow(
            Parallel(
                *[Task(id=f"p{i}", output=int, run=meeting(barrier, gauge, i)) for i in range(6)],
                max_concurrency=2,
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert result.outputs == {f"p{i}": i for i in range(6)}
    assert gauge.most == 2
    assert most_running(store) == 2


def test_every_enclosing_parallel_cap_applies(store: KVStore) -> None:
    """A task counts against every capped Parallel around it: an outer cap of 3 holds two inner
    groups together, and an inner cap of 2 holds its own group."""

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        return Workflow(
            Parallel(
                Parallel(
                    *[Task(id=f"a{i}", output=int, value=i) for i in range(4)],
                    max_concurrency=2,
                ),
                Parallel(*[Task(id=f"b{i}", output=int, value=i) for i in range(4)]),
                max_concurrency=3,
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert len(result.outputs) == 8
    assert most_running(store) == 3
    assert most_running(store, {f"a{i}" for i in range(4)}) == 2


def test_inner_parallel_cap_is_not_loosened_by_a_larger_outer_cap(store: KVStore) -> None:
    """An inner cap of 1 under an outer cap of 4 still runs that inner group one at a time."""
    gauge = Gauge()

    def body(i: int) -> Callable[[], int]:
        def run_it() -> int:
            with gauge:
                return i

        return run_it

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        return Workflow(
            Parallel(
                Parallel(
                    *[Task(id=f"a{i}", output=int, run=body(i)) for i in range(4)],
                    max_concurrency=1,
                ),
                max_concurrency=4,
            ),
            name="flow",
        )

    assert run(flow, store).status == "finished"
    assert gauge.most == 1
    assert most_running(store) == 1


def test_run_level_max_concurrency_caps_every_task(store: KVStore) -> None:
    """run(max_concurrency=2) runs at most two tasks at once, even in an uncapped Parallel."""
    barrier = threading.Barrier(2)
    gauge = Gauge()

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        return Workflow(
            Parallel(
                Parallel(
                    *[
                        Task(id=f"a{i}", output=int, run=meeting(barrier, gauge, i))
                        for i in range(3)
                    ]
                ),
                Parallel(
                    *[
                        Task(id=f"b{i}", output=int, run=meeting(barrier, gauge, i))
                        for i in range(3)
                    ]
                ),
            ),
            name="flow",
        )

    result = run(flow, store, max_concurrency=2)
    assert result.status == "finished"
    assert len(result.outputs) == 6
    assert gauge.most == 2
    assert most_running(store) == 2


def test_run_level_default_cap_is_eight(store: KVStore) -> None:
    """Without max_concurrency a run starts at most 8 tasks at once."""

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        return Workflow(
            Parallel(*[Task(id=f"p{i}", output=int, value=i) for i in range(12)]),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert len(result.outputs) == 12
    assert most_running(store) == 8


def test_waiting_gates_and_signals_take_no_slot(store: KVStore) -> None:
    """With one run-level slot, a waiting approval and a waiting signal do not stop the tasks
    beside them from running."""

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        return Workflow(
            Parallel(
                Approval(id="gate", request=ApprovalRequest(title="Go?")),
                Signal(id="callback", output=int),
                Task(id="a", output=int, run=lambda: 1),
                Task(id="b", output=int, run=lambda: 2),
            ),
            name="flow",
        )

    result = run(flow, store, max_concurrency=1)
    assert result.status == "waiting-approval"
    assert states(store) == {
        ("gate", ()): "waiting-approval",
        ("callback", ()): "waiting-signal",
        ("a", ()): "finished",
        ("b", ()): "finished",
    }
    assert sorted(p.node_id for p in result.pending) == ["callback", "gate"]


def test_capped_tasks_after_a_retry_still_respect_the_cap(store: KVStore) -> None:
    """A task waiting for its retry holds no slot, and its retry queues behind the cap."""
    gauge = Gauge()
    calls = Recorder()

    def flaky(task: TaskInfo) -> int:
        with gauge:
            calls.add(task.attempt)
            if task.attempt == 1:
                raise RuntimeError("first attempt fails")
            return 10

    def plain(i: int) -> Callable[[], int]:
        def body() -> int:
            with gauge:
                return i

        return body

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        return Workflow(
            Parallel(
                Task(id="flaky", output=int, run=flaky, retries=1),
                *[Task(id=f"p{i}", output=int, run=plain(i)) for i in range(3)],
                max_concurrency=1,
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert result.outputs["flaky"] == 10
    assert calls.items == [1, 2]
    assert attempts(store, "flaky") == [(1, "failed"), (2, "ok")]
    assert gauge.most == 1
    assert most_running(store) == 1


# -- needs ----------------------------------------------------------------------------------


def test_needs_pass_outputs_as_keyword_arguments(store: KVStore) -> None:
    """A task's needs arrive as keyword arguments named by the needs keys."""
    seen = Recorder()

    def join(left: int, right: list[str]) -> str:
        seen.add({"left": left, "right": right})
        return f"{left}:{','.join(right)}"

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        return Workflow(
            Task(id="x", output=int, value=7),
            Task(id="y", output=list[str], run=lambda: ["p", "q"]),
            Task(id="z", output=str, run=join, needs={"left": "x", "right": "y"}),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert seen.items == [{"left": 7, "right": ["p", "q"]}]
    assert result.outputs["z"] == "7:p,q"


def test_needs_orders_tasks_across_a_parallel(store: KVStore) -> None:
    """Inside a Parallel, a task that needs a later sibling runs after that sibling."""
    order = Recorder()

    def consumer(value: int) -> int:
        order.add("consumer")
        return value + 1

    def producer() -> int:
        order.add("producer")
        return 41

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        return Workflow(
            Parallel(
                Task(id="consumer", output=int, run=consumer, needs={"value": "producer"}),
                Task(id="producer", output=int, run=producer),
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert order.items == ["producer", "consumer"]
    assert result.outputs == {"consumer": 42, "producer": 41}
    assert index_of(store, "node.finished", "producer") < index_of(
        store, "node.started", "consumer"
    )


def test_needs_across_parallel_branches_of_sequences(store: KVStore) -> None:
    """A task in one Parallel branch waits for a needed node deep in another branch."""

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        return Workflow(
            Parallel(
                Sequence(
                    Task(id="a1", output=int, value=1),
                    Task(id="a2", output=int, run=lambda b2: b2 * 10, needs={"b2": "b2"}),
                ),
                Sequence(
                    Task(id="b1", output=int, run=lambda: 2),
                    Task(id="b2", output=int, run=lambda b1: b1 + 1, needs={"b1": "b1"}),
                ),
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert result.outputs == {"a1": 1, "a2": 30, "b1": 2, "b2": 3}


def test_task_info_is_passed_only_when_declared(store: KVStore) -> None:
    """`task` reaches a run callable that declares it, and never one that takes **kwargs."""
    seen: dict[str, Any] = {}

    def with_info(x: int, task: TaskInfo) -> int:
        seen["with_info"] = task
        return x

    def with_kwargs(**kwargs: Any) -> int:
        seen["with_kwargs"] = sorted(kwargs)
        return 0

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        return Workflow(
            Task(id="x", output=int, value=3),
            Task(id="info", output=int, run=with_info, needs={"x": "x"}),
            Task(id="kw", output=int, run=with_kwargs, needs={"x": "x"}),
            name="flow",
        )

    assert run(flow, store, run_id="info-run").status == "finished"
    assert seen["with_info"].artifact_putter is not None  # the run's artifacts, a closure
    info = msgspec.structs.replace(seen["with_info"], artifact_putter=None)
    assert info == TaskInfo(
        run_id="info-run",
        node_id="info",
        iteration=(),
        attempt=1,
        idempotency_key="info-run/info",
    )
    assert seen["with_kwargs"] == ["x"]
    assert outputs(store, "info-run")[("info", ())] == 3


def test_run_refuses_a_max_concurrency_below_one(store: KVStore) -> None:
    """run(max_concurrency=0) raises InputError and creates no run."""

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        return Workflow(Task(id="a", output=int, value=1), name="flow")

    with pytest.raises(InputError, match="max_concurrency=0"):
        smithers.run(flow, store=store, run_id="r", max_concurrency=0)
    assert store.get_run("r") is None
