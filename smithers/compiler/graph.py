"""`Graph`: the immutable, serializable node graph a render produces. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

import attrs

from smithers.components.element import Element
from smithers.components.groups import Loop

__all__ = [
    "Edge",
    "EdgeKind",
    "Graph",
    "Group",
    "GroupKind",
    "Node",
    "NodeKind",
    "a_kind",
    "foreign_loop",
]

NodeKind = Literal["task", "approval", "signal", "timer"]
GroupKind = Literal["workflow", "sequence", "parallel", "branch", "loop", "component"]
EdgeKind = Literal["sequence", "loop", "needs"]


def a_kind(kind: NodeKind) -> str:
    """A node kind with its article, for messages: ``an approval``, ``a task``."""
    return f"an {kind}" if kind == "approval" else f"a {kind}"


@attrs.frozen(kw_only=True, slots=True)
class Node:
    """A durable node: a task, an approval gate or a signal wait.

    Attributes:
        id: The node id, unique in the graph.
        kind: ``"task"``, ``"approval"`` or ``"signal"``.
        path: Where it sits, e.g. ``Workflow(deploy)/Sequence[0]/Approval(approve-deploy)``.
        label: Display text (the ``label`` prop, else the id).
        output_type: The output type's name (``ApprovalDecision`` for gates).
        iteration: The loop iteration tuple, outermost first; ``()`` outside loops.
        loops: Ids of the enclosing loops, outermost first.
        parent: The path of the enclosing group.
        index: The position in the parent group's children.
        needs: Parameter name to node id.
        props: Kind-specific settings (retries, timeout, on_deny, ...), JSON-able.
        skipped: True when ``skip_if`` holds here or on an ancestor.
    """

    id: str
    kind: NodeKind
    path: str
    label: str
    output_type: str
    iteration: tuple[int, ...] = ()
    loops: tuple[str, ...] = ()
    parent: str
    index: int
    needs: dict[str, str] = attrs.field(factory=dict)
    props: dict[str, Any] = attrs.field(factory=dict)
    skipped: bool = False


@attrs.frozen(kw_only=True, slots=True)
class Group:
    """A structural group: workflow, sequence, parallel, branch, loop or user component.

    Attributes:
        path: Its path; unique in the graph.
        kind: The group kind.
        name: The workflow name, loop id or component name; None for unnamed groups.
        parent: The enclosing group's path, None for the root.
        index: The position in the parent's children (0 for a branch's mounted side).
        children: Paths of the child nodes and groups, in order.
        iteration: The iteration of its contents (a loop's includes its own counter).
        loops: Ids of the loops enclosing its contents (a loop's includes itself).
        skipped: True when ``skip_if`` holds here or on an ancestor.
        max_concurrency: A parallel group's cap.
        condition: A branch's ``if_`` as rendered.
        taken: The mounted side of a branch, or None when neither is.
        frozen: True when a branch keeps its side because a node under it started.
        max_iterations: A loop's bound.
        on_max_reached: A loop's policy at the bound.
        until: A loop's ``until`` as rendered; None when it is a callable.
        exits: A loop's body units an iteration ends with (the rest finish before them).
    """

    path: str
    kind: GroupKind
    name: str | None = None
    parent: str | None = None
    index: int | None = None
    children: tuple[str, ...] = ()
    iteration: tuple[int, ...] = ()
    loops: tuple[str, ...] = ()
    skipped: bool = False
    max_concurrency: int | None = None
    condition: bool | None = None
    taken: Literal["then", "else"] | None = None
    frozen: bool = False
    max_iterations: int | None = None
    on_max_reached: str | None = None
    until: bool | None = None
    exits: tuple[str, ...] = ()


@attrs.frozen(kw_only=True, slots=True)
class Edge:
    """A dependency: ``target`` waits for ``source``.

    ``sequence`` and ``loop`` edges come from order (``source`` terminal first); ``needs`` edges
    from ``needs`` (``source``'s output first). A source may be a loop id: the target waits for
    the whole loop. A ``needs`` source that is not mounted makes a dangling edge.
    """

    source: str
    target: str
    kind: EdgeKind


def foreign_loop(dep_loops: tuple[str, ...], reader_loops: tuple[str, ...]) -> str | None:
    """The outermost loop around a dependency that does not also enclose its reader.

    A ``needs`` on a node inside such a loop waits for that whole loop to finish.
    """
    for i, loop in enumerate(dep_loops):
        if i >= len(reader_loops) or reader_loops[i] != loop:
            return loop
    return None


def _index_nodes(graph: Graph) -> dict[str, Node]:
    return {node.id: node for node in graph.nodes}


def _index_groups(graph: Graph) -> dict[str, Group]:
    return {group.path: group for group in graph.groups}


@attrs.frozen(kw_only=True, slots=True)
class Graph:
    """The compiled form of one render: nodes, groups, edges and a stable content hash.

    Graphs compare equal when their serializable content is equal; the callables behind the
    nodes (``run``, ``request``, ``until``) ride along for the runtime but are not part of it.

    Attributes:
        workflow: The workflow's name.
        root: The root group's path.
        nodes: Every mounted node, in tree order.
        groups: Every mounted group, in tree order.
        edges: Order and ``needs`` dependencies.
    """

    workflow: str
    root: str
    nodes: tuple[Node, ...]
    groups: tuple[Group, ...]
    edges: tuple[Edge, ...]
    elements: Mapping[str, Element] = attrs.field(factory=dict, eq=False, repr=False, kw_only=True)
    loop_elements: Mapping[str, Loop] = attrs.field(
        factory=dict, eq=False, repr=False, kw_only=True
    )
    by_id: dict[str, Node] = attrs.field(
        init=False, eq=False, repr=False, default=attrs.Factory(_index_nodes, takes_self=True)
    )
    by_path: dict[str, Group] = attrs.field(
        init=False, eq=False, repr=False, default=attrs.Factory(_index_groups, takes_self=True)
    )
    _cache: dict[str, Any] = attrs.field(init=False, eq=False, repr=False, factory=dict)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self.by_id

    def node(self, node_id: str) -> Node:
        """Return the node with this id; raise ``KeyError`` if it is not mounted."""
        return self.by_id[node_id]

    def group(self, path: str) -> Group:
        """Return the group at this path; raise ``KeyError`` if there is none."""
        return self.by_path[path]

    def output_types(self) -> dict[str, Any]:
        """Node id to its declared output type, where known (gates always; tasks and signals
        when the graph carries its elements, i.e. it was rendered, not decoded)."""
        from smithers.components.nodes import ApprovalDecision, Signal, Task
        from smithers.components.policy import TimerFired

        found: dict[str, Any] = {}
        for node in self.nodes:
            element = self.elements.get(node.id)
            if node.kind == "approval":
                found[node.id] = ApprovalDecision
            elif node.kind == "timer":
                found[node.id] = TimerFired
            elif isinstance(element, Task | Signal):
                found[node.id] = element.output
        return found

    def loops(self) -> dict[str, Group]:
        """Return the mounted loop groups by loop id."""
        return {g.name: g for g in self.groups if g.kind == "loop" and g.name is not None}

    @property
    def hash(self) -> str:
        """A stable content hash (32 hex digits) of the serializable graph."""
        cached = self._cache.get("hash")
        if cached is None:
            from smithers.compiler.codec import graph_hash

            cached = self._cache["hash"] = graph_hash(self)
        return str(cached)

    def to_dict(self) -> dict[str, Any]:
        """Return the graph as JSON-able builtins (what ``to_json`` prints)."""
        from smithers.compiler.codec import graph_to_builtins

        data = graph_to_builtins(self)
        data["hash"] = self.hash
        return data

    def to_json(self, *, indent: int | None = 2) -> str:
        """Return the graph as a JSON document with its hash."""
        from smithers.compiler.export import to_json

        return to_json(self, indent=indent)

    def to_mermaid(self, states: Mapping[str, str] | None = None) -> str:
        """Return a Mermaid ``flowchart TD``; gates are hexagons, signals parallelograms.

        With ``states`` (node id -> state), nodes are coloured by state, as ``to_text``
        marks them.
        """
        from smithers.compiler.export import to_mermaid

        return to_mermaid(self, states=states)

    def to_dot(self, states: Mapping[str, str] | None = None) -> str:
        """Return a Graphviz DOT digraph; gates are hexagons, signals parallelograms.

        With ``states`` (node id -> state), nodes are filled by state, as ``to_text``
        marks them.
        """
        from smithers.compiler.export import to_dot

        return to_dot(self, states=states)

    def to_text(self, states: Mapping[str, str] | None = None) -> str:
        """Return the indented text tree, optionally with a state per node id."""
        from smithers.compiler.export import to_text

        return to_text(self, states=states)

    def __str__(self) -> str:
        return self.to_text()
