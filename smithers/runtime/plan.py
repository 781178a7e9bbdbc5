"""`Plan`: what the scheduler precomputes once per graph, so that a completion only looks at
the units that depend on it (no scan of the whole graph per step).

A *unit* is a node id, or a loop id standing for "that loop instance is done".
"""

from __future__ import annotations

from functools import cached_property

from smithers.compiler.graph import Graph, Group, Node, foreign_loop

__all__ = ["Plan"]

_SEQUENTIAL = ("workflow", "sequence", "loop")


class Plan:
    """Scheduling indexes over one `Graph`."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.loops: dict[str, Group] = graph.loops()
        self.units = units = _tree_order(graph)
        self.order = {unit: i for i, unit in enumerate(units)}
        self.after: dict[str, list[str]] = {}
        self.dependents: dict[str, list[str]] = {}
        self.foreign: dict[str, list[str]] = {}
        for edge in graph.edges:
            if edge.kind == "needs":
                self.dependents.setdefault(edge.source, []).append(edge.target)
            else:
                self.after.setdefault(edge.target, []).append(edge.source)
                self.dependents.setdefault(edge.source, []).append(edge.target)
        for node in graph.nodes:
            for dep in node.needs.values():
                dep_node = graph.by_id.get(dep)
                if dep_node is None:
                    continue
                outer = foreign_loop(dep_node.loops, node.loops)
                if outer is not None:
                    self.foreign.setdefault(node.id, []).append(outer)
                    self.dependents.setdefault(outer, []).append(node.id)
        self.loop_entries: dict[str, list[str]] = {loop: [] for loop in self.loops}
        for unit in units:
            inner = self.enclosing_loop(unit)
            if inner is not None and unit not in self.after:
                self.loop_entries[inner].append(unit)
        for loop_id, group in self.loops.items():
            for exit_unit in group.exits:
                self.dependents.setdefault(exit_unit, []).append(loop_id)

    def enclosing_loop(self, unit: str) -> str | None:
        """The innermost loop around a node or loop unit, or None."""
        node = self.graph.by_id.get(unit)
        if node is not None:
            return node.loops[-1] if node.loops else None
        loops = self.loops[unit].loops
        return loops[-2] if len(loops) > 1 else None

    @cached_property
    def _parents(self) -> dict[str, tuple[str | None, int | None]]:
        found: dict[str, tuple[str | None, int | None]] = {
            n.id: (n.parent, n.index) for n in self.graph.nodes
        }
        for group in self.graph.groups:
            if group.kind == "loop" and group.name:
                found[group.name] = (group.parent, group.index)
        return found

    def chain(self, unit: str) -> tuple[tuple[Group, int], ...]:
        """Sequential ancestors of a unit with the index of the child that holds it, outermost
        first (components, branches and parallels are looked through)."""
        parent, index = self._parents[unit]
        found: list[tuple[Group, int]] = []
        while parent:
            group = self.graph.by_path[parent]
            if group.kind in _SEQUENTIAL and index is not None:
                found.append((group, index))
            parent, index = group.parent, group.index
        return tuple(reversed(found))

    @cached_property
    def has_branches(self) -> bool:
        """Whether the graph has any branch group (else no start freezes anything)."""
        return any(group.kind == "branch" for group in self.graph.groups)

    def branches(self, unit: str) -> tuple[Group, ...]:
        """The branch groups around a unit (their sides freeze when it starts)."""
        parent = self._parents[unit][0]
        found = []
        while parent:
            group = self.graph.by_path[parent]
            if group.kind == "branch":
                found.append(group)
            parent = group.parent
        return tuple(found)

    @cached_property
    def caps(self) -> dict[str, tuple[tuple[str, int], ...]]:
        """Task id -> the capped Parallel groups around it, as (path, max_concurrency)."""
        by_group: dict[str, tuple[tuple[str, int], ...]] = {}
        for group in self.graph.groups:  # tree order: parents come first
            inherited = by_group.get(group.parent, ()) if group.parent else ()
            if group.kind == "parallel" and group.max_concurrency:
                inherited = (*inherited, (group.path, group.max_concurrency))
            by_group[group.path] = inherited
        return {n.id: by_group.get(n.parent, ()) for n in self.graph.nodes if n.kind == "task"}

    def node(self, unit: str) -> Node | None:
        """The node of a unit, or None for a loop unit."""
        return self.graph.by_id.get(unit)


def _tree_order(graph: Graph) -> list[str]:
    """Node ids and loop ids in tree order (a loop before its body)."""
    found: list[str] = []
    items = {n.path: n.id for n in graph.nodes}
    stack = [graph.root]
    while stack:
        path = stack.pop()
        if path in items:
            found.append(items[path])
            continue
        group = graph.by_path[path]
        if group.kind == "loop" and group.name:
            found.append(group.name)
        stack.extend(reversed(group.children))
    return found
