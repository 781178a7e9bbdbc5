"""Failures: fail-fast after an unhandled failure, continue_on_fail and upstream-skipped
dependents, and UnsatisfiedNeedsError for needs that can never be met."""

from __future__ import annotations

import threading

import smithers
from smithers import (
    Approval,
    ApprovalRequest,
    Context,
    Loop,
    Parallel,
    Sequence,
    Task,
    TaskInfo,
    Workflow,
)
from smithers.runtime.api import RunError
from smithers.store import EventRecord, KVStore
from tests.runtime.helpers import (
    Recorder,
    attempts,
    events,
    outputs,
    reasons,
    run,
    states,
)

WAIT_SECONDS = 10.0


def boom() -> int:
    raise RuntimeError("boom")


# -- fail-fast ------------------------------------------------------------------------------


def test_unhandled_failure_fails_the_run_with_type_message_and_node(store: KVStore) -> None:
    """A task that raises fails the run; the error carries the exception type, its message and
    the node id, and nothing after it starts."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Task(id="a", output=int, value=1),
            Task(id="bad", output=int, run=boom),
            Task(id="after", output=int, value=3),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "failed"
    assert result.error == RunError(type="RuntimeError", message="boom", node_id="bad")
    assert states(store) == {("a", ()): "finished", ("bad", ()): "failed"}
    assert result.outputs == {"a": 1}
    assert events(store)[-2:] == [("node.failed", "bad"), ("run.failed", None)]
    run_record = store.get_run("r")
    assert run_record is not None
    assert run_record.status == "failed"
    assert run_record.error is not None
    assert run_record.error.node_id == "bad"


def test_after_a_failure_in_flight_attempts_finish_and_nothing_new_starts(store: KVStore) -> None:
    """Once a task fails, a sibling already running finishes and is recorded, while siblings
    waiting for a slot and later nodes never start."""
    slow_started = threading.Event()
    release_slow = threading.Event()
    started = Recorder()

    def failing() -> int:
        assert slow_started.wait(WAIT_SECONDS), "slow never started"
        raise RuntimeError("boom")

    def slow() -> int:
        started.add("slow")
        slow_started.set()
        # Released only after the failure was committed (see on_event).
        assert release_slow.wait(WAIT_SECONDS), "the failure was never committed"
        return 7

    def later() -> int:
        started.add("later")
        return 0

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Parallel(
                Task(id="failing", output=int, run=failing),
                Task(id="slow", output=int, run=slow),
                Task(id="queued", output=int, run=later),
                max_concurrency=2,
            ),
            Task(id="after", output=int, run=later),
            name="flow",
        )

    def on_event(event: EventRecord) -> None:
        if event.type == "node.failed" and event.node_id == "failing":
            release_slow.set()

    result = run(flow, store, on_event=on_event)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.node_id == "failing"
    assert started.items == ["slow"]
    assert states(store) == {("failing", ()): "failed", ("slow", ()): "finished"}
    assert attempts(store, "slow") == [(1, "ok")]
    assert outputs(store) == {("slow", ()): 7}
    log = events(store)
    assert log.index(("node.failed", "failing")) < log.index(("node.finished", "slow"))
    assert log[-1] == ("run.failed", None)


def test_a_failure_cancels_pending_retries(store: KVStore) -> None:
    """A task waiting for its retry when another task fails never retries; it is cancelled."""
    calls = Recorder()
    retry_scheduled = threading.Event()

    def flaky() -> int:
        calls.add("flaky")
        raise RuntimeError("flaky")

    def failing() -> int:
        assert retry_scheduled.wait(WAIT_SECONDS), "flaky's retry was never scheduled"
        raise RuntimeError("fatal")

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Parallel(
                Task(id="flaky", output=int, run=flaky, retries=3, backoff=WAIT_SECONDS),
                Task(id="failing", output=int, run=failing),
            ),
            name="flow",
        )

    def on_event(event: EventRecord) -> None:
        if event.type == "node.retrying" and event.node_id == "flaky":
            retry_scheduled.set()

    result = run(flow, store, on_event=on_event)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.node_id == "failing"
    assert calls.items == ["flaky"]
    assert states(store) == {("flaky", ()): "cancelled", ("failing", ()): "failed"}
    assert reasons(store)[("flaky", ())] == "run-failed"
    assert attempts(store, "flaky") == [(1, "failed")]


def test_a_failure_withdraws_requested_gates(store: KVStore) -> None:
    """A run that fails while a gate is requested withdraws the gate and cancels its node."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Parallel(
                Approval(id="gate", request=ApprovalRequest(title="Go?")),
                Task(id="bad", output=int, run=boom),
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "failed"
    assert result.pending == ()
    assert states(store) == {("gate", ()): "cancelled", ("bad", ()): "failed"}
    [approval] = store.approvals("r")
    assert approval.status == "withdrawn"
    assert approval.withdrawn_because == "run-failed"
    assert ("approval.withdrawn", "gate") in events(store)
    assert store.requested_gates() == []


def test_a_failure_inside_a_loop_stops_the_loop(store: KVStore) -> None:
    """A body task failing in iteration 1 fails the run: no later iteration starts."""

    def body(task: TaskInfo) -> int:
        if task.iteration == (1,):
            raise RuntimeError("second iteration")
        return task.iteration[0]

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(Task(id="x", output=int, run=body), id="L", until=False, max_iterations=4),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.node_id == "x"
    assert states(store) == {("x", (0,)): "finished", ("x", (1,)): "failed"}


# -- continue_on_fail -----------------------------------------------------------------------


def test_continue_on_fail_lets_the_run_go_on_and_skips_dependents(store: KVStore) -> None:
    """A continue_on_fail task fails without failing the run; tasks needing it are skipped
    (upstream-skipped), transitively, and unrelated tasks run."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Task(id="optional", output=int, run=boom, continue_on_fail=True),
            Task(id="uses", output=int, run=lambda x: x, needs={"x": "optional"}),
            Task(id="uses_uses", output=int, run=lambda y: y, needs={"y": "uses"}),
            Task(id="unrelated", output=int, value=5),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert result.error is None
    assert result.outputs == {"unrelated": 5}
    assert states(store) == {
        ("optional", ()): "failed",
        ("uses", ()): "skipped",
        ("uses_uses", ()): "skipped",
        ("unrelated", ()): "finished",
    }
    assert reasons(store)[("uses", ())] == "upstream-skipped: optional"
    assert reasons(store)[("uses_uses", ())] == "upstream-skipped: uses"
    skipped = [e for e in store.events(run_id="r") if e.type == "node.skipped"]
    assert [(e.node_id, e.data) for e in skipped] == [
        ("uses", {"reason": "upstream-skipped", "dep": "optional"}),
        ("uses_uses", {"reason": "upstream-skipped", "dep": "uses"}),
    ]


def test_continue_on_fail_retries_before_giving_up(store: KVStore) -> None:
    """continue_on_fail applies after the retries are used up."""

    def body(task: TaskInfo) -> int:
        raise RuntimeError(f"attempt {task.attempt}")

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Task(id="t", output=int, run=body, retries=2, continue_on_fail=True),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert attempts(store, "t") == [(1, "failed"), (2, "failed"), (3, "failed")]
    assert states(store) == {("t", ()): "failed"}


def test_needs_on_a_skipped_node_is_upstream_skipped(store: KVStore) -> None:
    """A task that needs a skip_if node is skipped with reason upstream-skipped."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Parallel(
                Task(id="uses", output=int, run=lambda x: x, needs={"x": "off"}),
                Task(id="off", output=int, value=1, skip_if=True),
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert states(store) == {("off", ()): "skipped", ("uses", ()): "skipped"}
    assert reasons(store)[("uses", ())] == "upstream-skipped: off"


def test_a_skipped_dependency_does_not_skip_order_successors(store: KVStore) -> None:
    """An upstream-skipped task in a Sequence is terminal: the next child still runs."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Sequence(
                Task(id="optional", output=int, run=boom, continue_on_fail=True),
                Task(id="uses", output=int, run=lambda x: x, needs={"x": "optional"}),
                Task(id="next", output=int, value=3),
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert result.outputs == {"next": 3}


# -- UnsatisfiedNeedsError ------------------------------------------------------------------


def test_needs_on_a_node_that_never_mounts_fails_with_unsatisfied_needs(store: KVStore) -> None:
    """A needs naming a node that is never mounted fails the run with UnsatisfiedNeedsError
    naming both nodes, once nothing else can run (no hang)."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Parallel(
                Task(id="waiting", output=int, run=lambda g: g, needs={"g": "ghost"}),
                Task(id="other", output=int, value=1),
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.type == "UnsatisfiedNeedsError"
    assert result.error.node_id == "waiting"
    assert "`waiting`" in result.error.message
    assert "`ghost`" in result.error.message
    assert states(store) == {("other", ()): "finished"}
    assert events(store)[-1] == ("run.failed", None)


def test_needs_on_a_node_that_unmounts_before_running_is_unsatisfied(store: KVStore) -> None:
    """A needs on a node the build function stops mounting before it ran fails the run with
    UnsatisfiedNeedsError instead of hanging."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        gone = ctx.output_maybe("switch") is not None
        return Workflow(
            Task(id="switch", output=int, value=1),
            not gone and Task(id="maybe", output=int, value=2),
            Task(id="reader", output=int, run=lambda m: m, needs={"m": "maybe"}),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.type == "UnsatisfiedNeedsError"
    assert result.error.node_id == "reader"
    assert "`maybe`" in result.error.message


def test_needs_on_a_node_that_mounts_later_waits_for_it(store: KVStore) -> None:
    """A needs naming a node that is not mounted yet is not an error: the task waits until the
    node mounts and finishes."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        ready = ctx.output_maybe("first") is not None
        return Workflow(
            Parallel(
                Task(id="reader", output=int, run=lambda v: v + 1, needs={"v": "late"}),
                Sequence(
                    Task(id="first", output=int, run=lambda: 1),
                    ready and Task(id="late", output=int, run=lambda: 10),
                ),
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert result.outputs == {"first": 1, "late": 10, "reader": 11}


def test_needs_on_an_unmounted_node_with_a_kept_output_is_met(store: KVStore) -> None:
    """A needs on a node that finished and then unmounted is met by the output it left."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        done = ctx.output_maybe("early") is not None
        return Workflow(
            not done and Task(id="early", output=int, value=4),
            Task(id="reader", output=int, run=lambda v: v * 2, needs={"v": "early"}),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert result.outputs == {"early": 4, "reader": 8}
