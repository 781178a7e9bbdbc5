"""What a `Signal` expects: the JSON Schema of its output type, for `smithers signal --schema`."""

from __future__ import annotations

from typing import Any

import msgspec

from smithers.compiler.graph import Graph, a_kind
from smithers.components.nodes import Signal
from smithers.errors import NotASignalError, SignalError, UnknownNodeError

__all__ = ["signal_schema"]


def signal_schema(graph: Graph, node_id: str) -> dict[str, Any]:
    """The JSON Schema of the data a Signal takes (its output type, per msgspec).

    Args:
        graph: A rendered graph (it carries the Signal elements and their output types),
            e.g. `smithers.runtime.api.current_graph` of the run.
        node_id: The Signal's id.

    Returns:
        The JSON Schema document, with ``$defs`` for named structs.

    Raises:
        UnknownNodeError: When the graph has no node ``node_id``.
        NotASignalError: When the node is not a Signal.
        SignalError: When the graph was decoded from a stored frame (no output types).
    """
    node = graph.by_id.get(node_id)
    if node is None:
        signals = [n.id for n in graph.nodes if n.kind == "signal"]
        known = f"; its signals: {', '.join(f'`{s}`' for s in signals)}" if signals else ""
        raise UnknownNodeError(f"Workflow `{graph.workflow}` has no node `{node_id}`{known}.")
    if node.kind != "signal":
        raise NotASignalError(
            f"Node `{node_id}` of workflow `{graph.workflow}` is {a_kind(node.kind)}, "
            "not a Signal; "
            "only Signal nodes take data."
        )
    element = graph.elements.get(node_id)
    if not isinstance(element, Signal):
        raise SignalError(
            f"The graph of `{graph.workflow}` holds no output type for signal `{node_id}` (it "
            "was read from the store); render the run's definition to get its schema."
        )
    return msgspec.json.schema(element.output)
