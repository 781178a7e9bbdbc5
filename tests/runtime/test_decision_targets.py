"""A decision or a signal reaches exactly the gate and iteration named, or nothing is written."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

import smithers
from smithers import Approval, ApprovalRequest, Loop, Signal, Task, Workflow
from smithers import smithers as define
from smithers.errors import GateNotRequestedError, InputError
from smithers.store import KVStore


@define
def looped(ctx: Any) -> Any:
    return Workflow(
        Loop(
            Task(id="draft", output=int, run=lambda task: task.iteration[0]),
            Approval(id="review", request=ApprovalRequest(title="ok?"), on_deny="continue"),
            id="rounds",
            until=False,
            max_iterations=3,
        ),
        name="looped",
    )


class Paid(msgspec.Struct):
    amount: int


@define
def paying(ctx: Any) -> Any:
    return Workflow(
        Signal(id="payment", output=Paid),
        Loop(
            Signal(id="tick", output=int),
            id="ticks",
            until=lambda c: len(c.outputs("tick")) >= 2,
            max_iterations=3,
        ),
        name="paying",
    )


def written(store: KVStore, run_id: str = "r") -> tuple[int, list[Any], list[Any]]:
    """What a refusal must leave alone: the event count, approvals and signals."""
    return len(store.events(run_id=run_id)), store.approvals(run_id), store.signals(run_id)


@pytest.mark.parametrize("decide", [smithers.approve, smithers.deny])
def test_an_iteration_never_requested_is_refused_when_the_node_is_left_out(
    store: KVStore, decide: Any
) -> None:
    """deny(run, iteration=(7,)) with iteration 0 requested refuses; nothing is written."""
    smithers.run(looped, store=store, run_id="r")
    before = written(store)
    with pytest.raises(
        GateNotRequestedError,
        match=r"^Run `r` has no gate requested at iteration 7; requested: `review` iteration 0;",
    ):
        decide("r", iteration=(7,), store=store)
    assert written(store) == before
    assert [a.status for a in store.approvals("r")] == ["requested"]


def test_an_iteration_never_requested_is_refused_for_a_named_gate(store: KVStore) -> None:
    """approve(run, "review", iteration=(7,)) is refused, naming the gate and the iteration."""
    smithers.run(looped, store=store, run_id="r")
    before = written(store)
    with pytest.raises(
        GateNotRequestedError,
        match=r"^Gate `review` iteration 7 of run `r` has not been requested;",
    ):
        smithers.approve("r", "review", iteration=(7,), store=store)
    assert written(store) == before


def test_the_requested_iteration_named_without_the_node_is_decided(store: KVStore) -> None:
    """Naming the requested iteration without the node decides exactly that gate."""
    smithers.run(looped, store=store, run_id="r")
    record = smithers.deny("r", iteration=(0,), store=store)
    assert (record.node_id, record.iteration, record.status) == ("review", (0,), "denied")


@pytest.mark.parametrize("node", [None, "review"])
def test_a_huge_iteration_is_an_input_error_for_a_decision(store: KVStore, node: Any) -> None:
    """A part of 2**32 or more is refused by value (not a struct.error); nothing written."""
    smithers.run(looped, store=store, run_id="r")
    before = written(store)
    with pytest.raises(InputError, match=r"\(4294967296,\) for .* is out of range"):
        smithers.approve("r", node, iteration=(2**32,), store=store)
    assert written(store) == before


def test_a_decision_with_an_iteration_of_the_wrong_depth_is_refused(store: KVStore) -> None:
    """(0, 0) for a gate inside one loop was never requested; the message says what is meant."""
    smithers.run(looped, store=store, run_id="r")
    before = written(store)
    with pytest.raises(
        GateNotRequestedError,
        match=r"^Gate `review` iteration 0.0 of run `r` has not been requested: the gate is "
        r"inside 1 loop\(s\); use --iteration 0\.$",
    ):
        smithers.approve("r", "review", iteration=(0, 0), store=store)
    assert written(store) == before


@pytest.mark.parametrize(
    ("node", "iteration", "message"),
    [
        (
            "payment",
            (3,),
            r"Iteration 3 does not fit signal `payment` of run `r`, which is "
            r"outside any loop; leave --iteration out\.",
        ),
        ("payment", (3, 1), r"Iteration 3.1 does not fit signal `payment`"),
        (
            "tick",
            (3, 1),
            r"Iteration 3.1 does not fit signal `tick` of run `r`, which is inside "
            r"1 loop\(s\); pass 1 dot-separated part, such as --iteration 0\.",
        ),
        ("tick", (1, 0), r"; use --iteration 1\.$"),
        ("tick", (2**32,), r"\(4294967296,\) for signal `tick` of run `r` is out of range"),
    ],
)
def test_a_signal_iteration_must_fit_the_signal_loops(
    store: KVStore, node: str, iteration: tuple[int, ...], message: str
) -> None:
    """Data for an iteration the Signal never has is refused before anything is written."""
    smithers.run(paying, store=store, run_id="r")
    before = written(store)
    with pytest.raises(InputError, match=message):
        smithers.signal(
            "r", node, {"amount": 1} if node == "payment" else 1, iteration=iteration, store=store
        )
    assert written(store) == before


def test_a_signal_iteration_is_checked_against_the_last_frame_without_a_graph(
    store: KVStore,
) -> None:
    """Without the definition the run's last stored frame tells the Signal's depth."""
    smithers.run(paying, store=store, run_id="r")
    with pytest.raises(InputError, match=r"which is outside any loop"):
        smithers.signal("r", "payment", {"amount": 1}, iteration=(3,), store=store, graph=None)


def test_a_signal_with_the_right_iteration_is_delivered_and_applied(store: KVStore) -> None:
    """The depth check lets through the iterations the Signal has."""
    smithers.run(paying, store=store, run_id="r")
    smithers.signal("r", "payment", {"amount": 5}, iteration=(), store=store)
    smithers.signal("r", "tick", 1, iteration=(0,), store=store)
    result = smithers.resume("r", store=store, definition=paying)
    assert result.outputs["payment"] == Paid(5)
    assert [(p.node_id, p.iteration) for p in result.pending] == [("tick", (1,))]
