"""`signal_schema`: the JSON Schema a Signal's data must match, and its refusals."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

import smithers
from smithers import Signal, Task, Workflow
from smithers import smithers as define
from smithers.errors import NotASignalError, SignalError, UnknownNodeError
from smithers.runtime.api import current_graph
from smithers.runtime.schema import signal_schema
from smithers.store import KVStore
from tests.runtime.helpers import final_graph


class Paid(msgspec.Struct):
    amount: int
    note: str | None = None


@define
def paying(ctx: Any) -> Any:
    return Workflow(
        Task(id="start", output=int, value=1),
        Signal(id="payment", output=Paid),
        Signal(id="count", output=int),
        name="paying",
    )


def test_signal_schema_is_the_json_schema_of_the_output_type() -> None:
    """A struct output gives msgspec's schema with $defs; a builtin gives its plain schema."""
    graph = smithers.render(paying)
    assert signal_schema(graph, "payment") == {
        "$ref": "#/$defs/Paid",
        "$defs": {
            "Paid": {
                "title": "Paid",
                "type": "object",
                "properties": {
                    "amount": {"type": "integer"},
                    "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
                },
                "required": ["amount"],
            }
        },
    }
    assert signal_schema(graph, "count") == {"type": "integer"}


def test_signal_schema_of_a_running_run_uses_its_current_render(store: KVStore) -> None:
    """The run's current graph (rendered against its state) gives the waiting Signal's schema."""
    smithers.run(paying, store=store, run_id="r")
    assert signal_schema(current_graph(store, "r", paying), "count") == {"type": "integer"}


def test_signal_schema_refuses_a_node_that_is_not_a_signal() -> None:
    """A task, or an id the graph lacks, is refused naming the node and the signals."""
    graph = smithers.render(paying)
    with pytest.raises(NotASignalError, match=r"^Node `start` of workflow `paying` is a task"):
        signal_schema(graph, "start")
    with pytest.raises(
        UnknownNodeError, match=r"no node `nope`; its signals: `payment`, `count`\.$"
    ):
        signal_schema(graph, "nope")


def test_signal_schema_refuses_a_graph_read_from_the_store(store: KVStore) -> None:
    """A stored frame carries no output types: the error says to render the definition."""
    smithers.run(paying, store=store, run_id="r")
    with pytest.raises(SignalError, match=r"holds no output type for signal `payment`"):
        signal_schema(final_graph(store), "payment")
