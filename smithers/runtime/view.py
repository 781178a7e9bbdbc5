"""`RunView`: a run's committed state as the compiler and ``ctx`` see it.

It is the `OutputSource` behind every `Context` of a run and the `LoweringView` that tells
the compiler where each loop is and which branch sides are frozen.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smithers.compiler.codec import decode_value
from smithers.compiler.context import MISSING, Context
from smithers.compiler.graph import Graph
from smithers.compiler.render import render_settled
from smithers.components.definition import WorkflowDefinition
from smithers.runtime.state import RunState
from smithers.store.records import Iteration

__all__ = ["RunView", "render_run"]


class RunView:
    """Reads outputs (fresh copies), loop iterations and frozen branches from a `RunState`."""

    def __init__(self, state: RunState, graph: Graph | None = None) -> None:
        self.state = state
        self.types: dict[str, Any] = {}
        self.hidden: frozenset[str] = frozenset()
        self.loops_of: dict[str, tuple[str, ...]] = {}
        # Loop id -> the loops enclosing it, for the loops of the last render (None before one).
        self.mounted_loops: dict[str, tuple[str, ...]] | None = None
        for record in state.nodes.values():
            self.loops_of.setdefault(record.node_id, record.loops)
        if graph is not None:
            self.learn(graph)

    def learn(self, graph: Graph) -> None:
        """Adopt a render's node types, loop membership and mounted loops."""
        for node in graph.nodes:
            self.loops_of[node.id] = node.loops
        self.types.update(graph.output_types())
        self.mounted_loops = {
            g.name: g.loops[:-1] for g in graph.groups if g.kind == "loop" and g.name
        }

    # -- OutputSource -------------------------------------------------------------------------

    def type_of(self, node_id: str) -> Any:
        return self.types.get(node_id, MISSING)

    def default_iteration(self, node_id: str) -> Iteration | None:
        """The iteration a read without one means; None when the node is unknown."""
        loops = self.loops_of.get(node_id)
        if loops is None:
            return None
        return self.state.current_iteration(loops)

    def read(self, node_id: str, iteration: Iteration | None, tp: Any) -> Any:
        if node_id in self.hidden:
            return MISSING
        if iteration is None:
            iteration = self.default_iteration(node_id)
            if iteration is None:
                found = self.state.latest_output(node_id)
                return MISSING if found is None else decode_value(found[1], tp)
        raw = self.state.outputs.get((node_id, iteration))
        return MISSING if raw is None else decode_value(raw, tp)

    def read_all(self, node_id: str, tp: Any) -> list[Any]:
        if node_id in self.hidden:
            return []
        return [
            decode_value(self.state.outputs[(node_id, it)], tp)
            for it in self.state.output_iterations.get(node_id, ())
        ]

    def read_latest(self, node_id: str, tp: Any) -> Any:
        if node_id in self.hidden:
            return MISSING
        found = self.state.latest_output(node_id)
        return MISSING if found is None else decode_value(found[1], tp)

    def iterations(self) -> Mapping[str, int] | None:
        if self.mounted_loops is None:
            return None
        result = {}
        for loop_id, enclosing in self.mounted_loops.items():
            outer = self.state.current_iteration(enclosing)
            result[loop_id] = self.state.loop_iteration(loop_id, outer)
        return result

    # -- LoweringView -------------------------------------------------------------------------

    def loop_iteration(self, loop_id: str, outer: Iteration) -> int:
        return self.state.loop_iteration(loop_id, outer)

    def frozen_side(self, path: str, iteration: Iteration) -> bool | None:
        record = self.state.groups.get(("branch", path, iteration))
        return None if record is None else record.side


def render_run(
    definition: WorkflowDefinition, view: RunView, run_id: str, input_raw: bytes | None
) -> tuple[Graph, Context]:
    """Render a run's graph against its committed state (see `render_settled`)."""
    return render_settled(definition, source=view, view=view, run_id=run_id, input_raw=input_raw)
