"""Signals in process: waiting, delivery, early delivery, validation and refusals."""

from __future__ import annotations

import getpass
import re
import socket
from typing import Any

import msgspec
import pytest

import smithers
from smithers import (
    Approval,
    ApprovalRequest,
    Loop,
    Parallel,
    Signal,
    Task,
    TaskInfo,
    Workflow,
)
from smithers import smithers as define
from smithers.errors import (
    AlreadyDeliveredError,
    NotASignalError,
    RunNotFoundError,
    SignalError,
    UnknownNodeError,
)
from smithers.runtime.api import current_graph
from smithers.store import KVStore


class Item(msgspec.Struct):
    sku: str
    qty: int


class AgentResult(msgspec.Struct):
    patch: str
    tests_passed: bool
    items: list[Item] = []


def states(store: KVStore, run_id: str) -> dict[str, str]:
    """Node id -> durable state."""
    snapshot = store.load(run_id)
    assert snapshot is not None
    return {n: r.state for (n, _), r in sorted(snapshot.nodes.items())}


@define
def agent(ctx: Any) -> Any:
    return Workflow(
        Task(id="start", output=str, value="job-1"),
        Signal(id="done", output=AgentResult, label="agent callback"),
        Task(
            id="report",
            output=str,
            needs={"r": "done"},
            run=lambda r: f"{r.patch}:{r.tests_passed}:{len(r.items)}",
        ),
        name="agent",
    )


GOOD = {"patch": "diff", "tests_passed": True, "items": [{"sku": "a", "qty": 2}]}


def test_a_signal_waits_durably_with_its_own_status_and_event(store: KVStore) -> None:
    """Reaching a Signal records waiting-signal, emits signal.waiting and parks the run."""
    result = smithers.run(agent, store=store, run_id="r")
    assert result.status == "waiting-signal"
    assert [(p.node_id, p.iteration, p.kind, p.request) for p in result.pending] == [
        ("done", (), "signal", None)
    ]
    assert states(store, "r") == {"done": "waiting-signal", "start": "finished"}
    assert [(e.type, e.node_id) for e in store.events(run_id="r")] == [
        ("run.started", None),
        ("node.started", "start"),
        ("node.finished", "start"),
        ("signal.waiting", "done"),
        ("run.waiting", None),
    ]
    run = store.get_run("r")
    assert run is not None
    assert (run.status, run.lease) == ("waiting-signal", None)
    assert store.requested_gates() == []


def test_delivered_data_is_validated_into_the_output_type_and_becomes_the_output(
    store: KVStore,
) -> None:
    """signal() records the data once; resume turns it into the Signal's typed output."""
    smithers.run(agent, store=store, run_id="r")
    record = smithers.signal("r", "done", GOOD, store=store)
    assert (record.node_id, record.iteration) == ("done", ())
    assert (record.recorded_by, record.recorded_on) == (getpass.getuser(), socket.gethostname())
    assert msgspec.msgpack.decode(record.data) == GOOD
    [received] = [e for e in store.events(run_id="r") if e.type == "signal.received"]
    assert (received.node_id, received.data) == ("done", {"recorded_by": getpass.getuser()})
    assert states(store, "r")["done"] == "waiting-signal"  # recorded only

    done = smithers.resume("r", store=store, definition=agent)
    assert done.status == "finished"
    assert done.outputs["done"] == AgentResult(
        patch="diff", tests_passed=True, items=[Item(sku="a", qty=2)]
    )
    assert done.outputs["report"] == "diff:True:1"
    assert states(store, "r") == {"done": "finished", "report": "finished", "start": "finished"}
    assert [s.node_id for s in store.signals("r")] == ["done"]


def test_data_delivered_before_the_signal_is_reached_is_held_then_applied(
    store: KVStore,
) -> None:
    """Early data waits in the store; the Signal finishes the moment the run reaches it."""

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(
            Approval(id="gate", request=ApprovalRequest(title="Start?")),
            Signal(id="done", output=AgentResult),
            Task(id="after", output=bool, needs={"r": "done"}, run=lambda r: r.tests_passed),
            name="wf",
        )

    first = smithers.run(wf, store=store, run_id="r")
    assert [p.node_id for p in first.pending] == ["gate"]
    smithers.signal("r", "done", {"patch": "p", "tests_passed": False}, store=store)
    assert "done" not in states(store, "r")
    smithers.approve("r", "gate", store=store)
    done = smithers.resume("r", store=store, definition=wf)
    assert done.status == "finished"
    assert done.outputs["after"] is False
    assert [e.type for e in store.events(run_id="r") if e.node_id == "done"] == [
        "signal.received",
        "node.finished",
    ]


def test_a_second_delivery_is_refused_and_the_first_data_is_kept(store: KVStore) -> None:
    """A Signal takes one delivery; a second raises AlreadyDeliveredError, writing nothing."""
    smithers.run(agent, store=store, run_id="r")
    first = smithers.signal("r", "done", GOOD, store=store)
    before = (store.last_seq(), store.get_run("r"), store.signals("r"))
    with pytest.raises(
        AlreadyDeliveredError,
        match=rf"Signal `done` of run `r` already received data at {first.received_at}",
    ):
        smithers.signal("r", "done", {"patch": "other", "tests_passed": False}, store=store)
    assert (store.last_seq(), store.get_run("r"), store.signals("r")) == before
    done = smithers.resume("r", store=store, definition=agent)
    assert done.outputs["done"].patch == "diff"


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"patch": "p", "tests_passed": "yes"}, r"\$\.tests_passed"),
        (
            {"patch": "p", "tests_passed": True, "items": [{"sku": "a", "qty": "two"}]},
            r"\$\.items\[0\]\.qty",
        ),
    ],
)
def test_invalid_data_is_rejected_naming_the_field_and_the_signal_keeps_waiting(
    store: KVStore, data: Any, path: str
) -> None:
    """Bad data recorded unvalidated is rejected when applied (field path named); no failure."""
    smithers.run(agent, store=store, run_id="r")
    smithers.signal("r", "done", data, store=store)
    result = smithers.resume("r", store=store, definition=agent)
    assert result.status == "waiting-signal"
    assert result.error is None
    assert [(p.node_id, p.kind) for p in result.pending] == [("done", "signal")]
    assert states(store, "r") == {"done": "waiting-signal", "start": "finished"}
    [rejected] = [e for e in store.events(run_id="r") if e.type == "signal.rejected"]
    assert rejected.node_id == "done"
    assert rejected.data["error"].startswith("Data for signal `done` does not match `AgentResult`")
    assert re.search(path, rejected.data["error"]), rejected.data["error"]
    [record] = store.signals("r")
    assert record.rejected == rejected.data["error"]
    assert "report" not in result.outputs


def test_a_rejected_delivery_may_be_replaced_and_is_kept_in_history(store: KVStore) -> None:
    """After a rejection, corrected data is accepted and finishes the run; the bad one is kept."""
    smithers.run(agent, store=store, run_id="r")
    bad = smithers.signal("r", "done", {"patch": "p"}, store=store)
    smithers.resume("r", store=store, definition=agent)
    smithers.signal("r", "done", GOOD, store=store)
    with pytest.raises(AlreadyDeliveredError, match=r"a signal is delivered once"):
        smithers.signal("r", "done", {"patch": "late", "tests_passed": False}, store=store)
    done = smithers.resume("r", store=store, definition=agent)
    assert done.status == "finished"
    assert done.outputs["report"] == "diff:True:1"
    [record] = store.signals("r")
    assert record.rejected is None
    [earlier] = record.previous
    assert earlier["received_at"] == bad.received_at
    assert "missing required field `tests_passed`" in earlier["rejected"]
    assert [e.type for e in store.events(run_id="r") if e.node_id == "done"] == [
        "signal.waiting",
        "signal.received",
        "signal.rejected",
        "signal.received",
        "node.finished",
    ]


def test_bad_data_held_for_a_signal_not_yet_reached_is_rejected_when_reached(
    store: KVStore,
) -> None:
    """Early bad data is rejected once the run reaches the Signal, which then waits."""

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(
            Approval(id="gate", request=ApprovalRequest(title="Start?")),
            Signal(id="done", output=AgentResult),
            name="wf",
        )

    smithers.run(wf, store=store, run_id="r")
    smithers.signal("r", "done", {"patch": 1, "tests_passed": True}, store=store)
    smithers.approve("r", "gate", store=store)
    result = smithers.resume("r", store=store, definition=wf)
    assert result.status == "waiting-signal"
    assert states(store, "r") == {"done": "waiting-signal", "gate": "finished"}
    assert [e.type for e in store.events(run_id="r") if e.node_id == "done"] == [
        "signal.received",
        "signal.waiting",
        "signal.rejected",
    ]


def test_validation_against_the_current_graph_refuses_bad_data_before_recording(
    store: KVStore,
) -> None:
    """With the run's current graph (what the CLI passes), bad data is refused; nothing written."""
    smithers.run(agent, store=store, run_id="r")
    graph = current_graph(store, "r", agent)
    before = (store.last_seq(), store.signals("r"))
    with pytest.raises(SignalError, match=r"Data for signal `done`.*\$\.items\[0\]\.qty"):
        smithers.signal(
            "r",
            "done",
            {"patch": "p", "tests_passed": True, "items": [{"sku": "a", "qty": "x"}]},
            store=store,
            graph=graph,
        )
    assert (store.last_seq(), store.signals("r")) == before
    smithers.signal("r", "done", GOOD, store=store, graph=graph)
    assert smithers.resume("r", store=store, definition=agent).status == "finished"


@pytest.mark.parametrize(
    ("run_id", "node", "error", "pattern"),
    [
        ("nope", "done", RunNotFoundError, r"No run `nope`"),
        ("r", "ghost", UnknownNodeError, r"Run `r` has no node `ghost`; its signals: `done`\."),
        ("r", "start", NotASignalError, r"Node `start` of run `r` is a task, not a Signal"),
    ],
)
def test_signal_refusals_write_nothing(
    store: KVStore, run_id: str, node: str, error: type[Exception], pattern: str
) -> None:
    """Unknown run, unknown node and non-Signal node are refused with distinct errors."""
    smithers.run(agent, store=store, run_id="r")
    before = (store.last_seq(), store.get_run("r"), store.signals("r"))
    with pytest.raises(error, match=pattern):
        smithers.signal(run_id, node, GOOD, store=store)
    assert (store.last_seq(), store.get_run("r"), store.signals("r")) == before


def test_a_finished_run_takes_no_signal(store: KVStore) -> None:
    """Signalling a run that ended raises SignalError naming its status."""
    smithers.run(agent, store=store, run_id="r")
    smithers.signal("r", "done", GOOD, store=store)
    smithers.resume("r", store=store, definition=agent)
    with pytest.raises(SignalError, match=r"Run `r` is finished; a signal can only reach"):
        smithers.signal("r", "done", GOOD, store=store)


def test_a_signal_delivered_while_the_owner_runs_is_applied_without_parking(
    store: KVStore,
) -> None:
    """Data delivered during a sibling task is applied by the running owner."""

    def deliver(task: TaskInfo) -> int:
        smithers.signal(task.run_id, "done", GOOD, store=store)
        return 1

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(
            Parallel(
                Signal(id="done", output=AgentResult), Task(id="busy", output=int, run=deliver)
            ),
            Task(id="after", output=str, needs={"r": "done"}, run=lambda r: r.patch),
            name="wf",
        )

    result = smithers.run(wf, store=store, run_id="r")
    assert result.status == "finished"
    assert result.outputs["after"] == "diff"
    assert [e for e in store.events(run_id="r") if e.type in ("run.waiting", "run.resumed")] == []


def test_a_run_waiting_on_a_gate_and_a_signal_reports_waiting_approval(store: KVStore) -> None:
    """With both a gate and a Signal waiting, the run status is waiting-approval."""

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(
            Parallel(
                Signal(id="done", output=AgentResult),
                Approval(id="gate", request=ApprovalRequest(title="Go?")),
            ),
            name="wf",
        )

    result = smithers.run(wf, store=store, run_id="r")
    assert result.status == "waiting-approval"
    assert [(p.node_id, p.kind) for p in result.pending] == [
        ("done", "signal"),
        ("gate", "approval"),
    ]
    smithers.approve("r", "gate", store=store)
    middle = smithers.resume("r", store=store, definition=wf)
    assert middle.status == "waiting-signal"
    smithers.signal("r", "done", GOOD, store=store)
    assert smithers.resume("r", store=store, definition=wf).status == "finished"


def test_signals_in_loop_iterations_take_data_per_iteration(store: KVStore) -> None:
    """A Signal in a Loop body waits per iteration; data for a later iteration is held."""

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(
            Loop(
                Signal(id="tick", output=int),
                id="ticks",
                until=lambda c: sum(c.outputs("tick")) >= 5,
                max_iterations=3,
            ),
            Task(id="total", output=int, value=0),
            name="wf",
        )

    first = smithers.run(wf, store=store, run_id="r")
    assert [(p.node_id, p.iteration) for p in first.pending] == [("tick", (0,))]
    smithers.signal("r", "tick", 4, store=store, iteration=(1,))  # early, for iteration 1
    smithers.signal("r", "tick", 2, store=store)  # the current iteration
    done = smithers.resume("r", store=store, definition=wf)
    assert done.status == "finished"
    assert [s.iteration for s in store.signals("r")] == [(0,), (1,)]
    assert [store.output("r", "tick", (i,)) for i in range(2)] == [
        msgspec.msgpack.encode(2),
        msgspec.msgpack.encode(4),
    ]
