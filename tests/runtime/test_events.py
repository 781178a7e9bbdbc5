"""Events: what a run appends to the log, in which order, with gap-free sequence numbers, and
what `on_event` receives."""

from __future__ import annotations

import contextlib

import smithers
from smithers import Context, Loop, Parallel, Task, TaskInfo, Workflow
from smithers.store import EventRecord, KVStore
from tests.runtime.helpers import Recorder, events, guarded, run


def test_a_simple_run_logs_its_events_in_order(store: KVStore) -> None:
    """A two-task run logs run.started, each node's started/finished, then run.finished."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Task(id="a", output=int, run=lambda: 1),
            Task(id="b", output=int, value=2),
            name="flow",
        )

    assert run(flow, store).status == "finished"
    assert events(store) == [
        ("run.started", None),
        ("node.started", "a"),
        ("node.finished", "a"),
        ("node.started", "b"),
        ("node.finished", "b"),
        ("run.finished", None),
    ]
    logged = store.events(run_id="r")
    assert all(e.run_id == "r" for e in logged)
    assert logged[0].data["workflow"] == "flow"
    assert logged[1].data == {"attempt": 1}
    assert logged[2].data["attempt"] == 1
    assert logged[1].iteration == ()
    assert all(e.at.endswith("Z") for e in logged)


def test_event_sequence_numbers_are_gap_free_across_runs(store: KVStore) -> None:
    """Every event gets the next global sequence number: no gaps, no repeats, across runs."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Parallel(*[Task(id=f"t{i}", output=int, run=lambda: 1) for i in range(5)]),
            Loop(Task(id="x", output=int, value=0), id="L", until=False, max_iterations=3),
            name="flow",
        )

    assert run(flow, store, run_id="one").status == "finished"
    assert run(flow, store, run_id="two").status == "finished"
    every = store.events()
    assert [e.seq for e in every] == list(range(1, len(every) + 1))
    one = [e.seq for e in store.events(run_id="one")]
    two = [e.seq for e in store.events(run_id="two")]
    assert sorted(one + two) == [e.seq for e in every]
    assert max(one) < min(two)
    assert store.last_seq() == len(every)
    assert [e.seq for e in store.events(after=one[-1])] == two


def test_on_event_receives_every_committed_event_in_order(store: KVStore) -> None:
    """on_event is called once per event, in log order, with the stored records."""
    received = Recorder()

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Parallel(Task(id="a", output=int, run=lambda: 1), Task(id="b", output=int, value=2)),
            name="flow",
        )

    assert run(flow, store, on_event=received.add).status == "finished"
    assert received.items == store.events(run_id="r")


def test_retrying_failed_and_skipped_nodes_log_their_events(store: KVStore) -> None:
    """A retried task logs node.retrying between its attempts, a final failure under
    continue_on_fail logs node.failed, and its dependent logs node.skipped."""

    def flaky(task: TaskInfo) -> int:
        if task.attempt == 1:
            raise RuntimeError("flaky")
        return 1

    def broken() -> int:
        raise ValueError("broken")

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Task(id="off", output=int, value=0, skip_if=True),
            Task(id="flaky", output=int, run=flaky, retries=1),
            Task(id="broken", output=int, run=broken, continue_on_fail=True),
            Task(id="dependent", output=int, run=lambda x: x, needs={"x": "broken"}),
            name="flow",
        )

    assert run(flow, store).status == "finished"
    assert events(store) == [
        ("run.started", None),
        ("node.skipped", "off"),
        ("node.started", "flaky"),
        ("node.retrying", "flaky"),
        ("node.started", "flaky"),
        ("node.finished", "flaky"),
        ("node.started", "broken"),
        ("node.failed", "broken"),
        ("node.skipped", "dependent"),
        ("run.finished", None),
    ]
    by_type = {(e.type, e.node_id): e for e in store.events(run_id="r")}
    retrying = by_type[("node.retrying", "flaky")]
    assert retrying.data["attempt"] == 1
    assert retrying.data["error"] == "RuntimeError: flaky"
    failed = by_type[("node.failed", "broken")]
    assert failed.data["error"] == "ValueError: broken"
    assert by_type[("node.skipped", "off")].data == {"reason": "skip_if"}


def test_a_failed_run_ends_with_run_failed_carrying_the_error(store: KVStore) -> None:
    """The last event of a failed run is run.failed with the error's type, message and node."""

    def broken() -> int:
        raise KeyError("missing")

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(Task(id="t", output=int, run=broken), name="flow")

    assert run(flow, store).status == "failed"
    last = store.events(run_id="r")[-1]
    assert last.type == "run.failed"
    assert last.data["error"] == {
        "type": "KeyError",
        "message": "'missing'",
        "node_id": "t",
    }


def test_loop_iterations_are_carried_by_node_events(store: KVStore) -> None:
    """Node events inside loops carry the iteration tuple."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(Task(id="x", output=int, value=0), id="L", until=False, max_iterations=2),
            name="flow",
        )

    assert run(flow, store).status == "finished"
    node_events = [(e.type, e.iteration) for e in store.events(run_id="r") if e.node_id == "x"]
    assert node_events == [
        ("node.started", (0,)),
        ("node.finished", (0,)),
        ("node.started", (1,)),
        ("node.finished", (1,)),
    ]


def test_each_event_is_committed_with_the_state_it_describes(store: KVStore) -> None:
    """When on_event sees node.finished, the node's output is already readable in the store."""
    seen = Recorder()

    def on_event(event: EventRecord) -> None:
        if event.type == "node.finished":
            assert event.node_id is not None
            assert event.iteration is not None
            seen.add((event.node_id, store.output("r", event.node_id, event.iteration)))

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Task(id="a", output=int, run=lambda: 1),
            Task(id="b", output=int, value=2),
            name="flow",
        )

    assert run(flow, store, on_event=on_event).status == "finished"
    assert seen.items == [("a", b"\x01"), ("b", b"\x02")]


def test_the_commit_that_finishes_a_node_records_the_start_of_its_successor(
    store: KVStore,
) -> None:
    """When node.finished of a Sequence child is committed, the next child's start is already
    committed with it (one write transaction)."""
    seen = Recorder()

    def on_event(event: EventRecord) -> None:
        if event.type == "node.finished" and event.node_id == "a":
            snapshot = store.load("r")
            assert snapshot is not None
            record = snapshot.nodes.get(("b", ()))
            seen.add(None if record is None else record.state)
            seen.add(("node.started", "b") in events(store))

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Task(id="a", output=int, run=lambda: 1),
            Task(id="b", output=int, run=lambda: 2),
            name="flow",
        )

    assert run(flow, store, on_event=on_event).status == "finished"
    assert seen.items == ["in-progress", True]


def test_an_on_event_callback_that_raises_leaves_the_run_resumable(store: KVStore) -> None:
    """A progress callback that raises may stop run(), but the run is not left locked by a
    process that no longer executes it: resuming it in the same process finishes it."""
    calls = Recorder()

    def on_event(event: EventRecord) -> None:
        if event.type == "node.finished" and event.node_id == "a":
            raise ValueError("the progress printer broke")

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Task(id="a", output=int, run=lambda: calls.add("a") or 1),
            Task(id="b", output=int, run=lambda: calls.add("b") or 2),
            name="flow",
        )

    with contextlib.suppress(ValueError):  # whether run() re-raises it is not pinned here
        run(flow, store, on_event=on_event)
    resumed = guarded(lambda: smithers.resume("r", store=store, definition=flow))
    assert resumed.status == "finished"
    assert resumed.outputs == {"a": 1, "b": 2}
    assert calls.items.count("a") == 1
