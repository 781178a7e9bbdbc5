"""Lowering: an element tree becomes a `Graph`. Pure: no I/O, no clock, no store.

User components are expanded here (they are part of the build); ``run`` callables and
request functions are never called.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import attrs

from smithers.compiler.codec import decoder_for, type_name
from smithers.compiler.graph import (
    Edge,
    EdgeKind,
    Graph,
    Group,
    GroupKind,
    Node,
    NodeKind,
    foreign_loop,
)
from smithers.compiler.origin import raised_at
from smithers.components.component import ComponentElement
from smithers.components.element import Element
from smithers.components.groups import Branch, Loop, Parallel, Sequence, Workflow
from smithers.components.nodes import Approval, ApprovalDecision, ApprovalRequest, Signal, Task
from smithers.components.policy import TimerFired, format_duration
from smithers.components.timer import Timer
from smithers.errors import BuildError, CompileError, SmithersError

__all__ = ["LoweringView", "compile_tree"]

Iteration = tuple[int, ...]
# An incoming dependency handed to the entries of a subtree: (source unit, edge kind).
_Prev = tuple[tuple[str, EdgeKind], ...]


class LoweringView(Protocol):
    """Run state the compiler needs: where each loop is, and which branch sides are frozen."""

    def loop_iteration(self, loop_id: str, outer: Iteration) -> int:
        """The current iteration of ``loop_id`` inside outer iteration ``outer``."""

    def frozen_side(self, path: str, iteration: Iteration) -> bool | None:
        """True/False when the branch at ``path`` is frozen on then/else, else None."""


class _Preview:
    def loop_iteration(self, loop_id: str, outer: Iteration) -> int:
        return 0

    def frozen_side(self, path: str, iteration: Iteration) -> bool | None:
        return None


@attrs.frozen(slots=True)
class _Scope:
    parent: str | None
    index: int
    iteration: Iteration
    loops: tuple[str, ...]
    skipped: bool
    # The nearest enclosing group that is not a user component (on_deny="skip" checks it).
    structural: GroupKind | None

    def at(self, index: int) -> _Scope:
        """This scope for the child at ``index`` (`attrs.evolve` costs more, once per node)."""
        return _Scope(self.parent, index, self.iteration, self.loops, self.skipped, self.structural)


def compile_tree(root: Element, *, view: LoweringView | None = None) -> Graph:
    """Lower an element tree (rooted at a `Workflow`) to a `Graph`.

    Args:
        root: The element the build function returned.
        view: Loop iterations and frozen branch sides; without one every loop is at
            iteration 0 and no branch is frozen.

    Returns:
        The graph.

    Raises:
        CompileError: For duplicate ids, a cycle through needs and order, ``on_deny="skip"``
            outside a Sequence, Workflow or Loop body, an output type msgspec cannot validate,
            or a root that is not a Workflow.
        BuildError: When a user component raises.
    """
    return _Lowering(view or _Preview()).run(root)


class _Lowering:
    def __init__(self, view: LoweringView) -> None:
        self.view = view
        self.nodes: list[Node] = []
        self.groups: list[Group] = []
        self.edges: list[Edge] = []
        self.elements: dict[str, Element] = {}
        self.loop_elements: dict[str, Loop] = {}
        self.paths: dict[str, str] = {}  # node or loop id -> path
        self.children: dict[str, list[str]] = {}
        self.loop_exits: dict[str, tuple[str, ...]] = {}

    def run(self, root: Element) -> Graph:
        root = self._expand_root(root)
        segment = f"Workflow({root.name})"
        scope = _Scope(None, 0, (), (), False, None)
        self._group(root, segment, scope, ())
        self._needs_edges()
        self._check_cycles()
        groups = [
            attrs.evolve(
                g,
                children=tuple(self.children.get(g.path, ())),
                exits=self.loop_exits.get(g.name, ()) if g.kind == "loop" and g.name else (),
            )
            for g in self.groups
        ]
        return Graph(
            workflow=root.name,
            root=segment,
            nodes=tuple(self.nodes),
            groups=tuple(groups),
            edges=tuple(self.edges),
            elements=self.elements,
            loop_elements=self.loop_elements,
        )

    def _expand_root(self, root: object) -> Workflow:
        seen = 0
        while isinstance(root, ComponentElement) and seen < 100:
            root = self._call_component(root, root.name)
            seen += 1
        if not isinstance(root, Workflow):
            got = root.describe() if isinstance(root, Element) else type(root).__name__
            raise CompileError(
                f"The build function returned {got}; it must return Workflow(..., name=...) "
                "at the root."
            )
        return root

    def _call_component(self, element: ComponentElement, path: str) -> Element:
        try:
            result = element.func(**element.props)
        except SmithersError as exc:
            # Keep the error's class (a DefinitionError stays one) and say where it happened.
            raise type(exc)(f"{str(exc).rstrip('.')} (in `{path}`).") from exc
        except Exception as exc:
            where = raised_at(exc, element.func)
            raise BuildError(
                f"Component `{element.name}` at `{path}` raised {type(exc).__name__}: {exc}"
                + (f" (at {where})" if where else "")
            ) from exc
        if not isinstance(result, Element):
            raise CompileError(
                f"Component `{element.name}` at `{path}` returned `{type(result).__name__}`; "
                "a component must return one element such as Sequence(...)."
            )
        return result

    # -- tree walk ----------------------------------------------------------------------------

    def _lower(self, element: Element, segment: str, scope: _Scope, prev: _Prev) -> _Prev:
        """Lower ``element``; return the units a following sibling must wait for."""
        path = f"{scope.parent}/{segment}" if scope.parent else segment
        if isinstance(element, Task | Approval | Signal | Timer):
            return self._node(element, path, scope, prev)
        return self._group(element, path, scope, prev)

    def _register(self, ident: str, path: str) -> None:
        other = self.paths.get(ident)
        if other is not None:
            where = "the same place" if other == path else f"`{other}`"
            raise CompileError(
                f"Duplicate node id `{ident}` at `{path}`; an element at {where} has it too; "
                "ids must be unique within a workflow."
            )
        self.paths[ident] = path

    def _add_child(self, scope: _Scope, path: str) -> None:
        if scope.parent is not None:
            self.children.setdefault(scope.parent, []).append(path)

    def _node(
        self, element: Task | Approval | Signal | Timer, path: str, scope: _Scope, prev: _Prev
    ) -> _Prev:
        self._register(element.id, path)
        self._add_child(scope, path)
        skipped = scope.skipped or element.skip_if
        kind: NodeKind
        props: dict[str, Any] = {}
        if isinstance(element, Task):
            kind, output = "task", element.output
            props["mode"] = "run" if element.run is not None else "value"
            if element.is_async:
                props["async"] = True
            if element.retries:
                props["retries"] = element.retries
            if element.backoff is not None:
                props["backoff"] = (
                    list(element.backoff) if isinstance(element.backoff, tuple) else element.backoff
                )
            if element.timeout is not None:
                props["timeout"] = element.timeout
            if element.continue_on_fail:
                props["continue_on_fail"] = True
        elif isinstance(element, Approval):
            kind, output = "approval", ApprovalDecision
            props["on_deny"] = element.on_deny
            if isinstance(element.request, ApprovalRequest):
                props["title"] = element.request.title
            policy = element.policy()
            if policy is not None:
                props["policy"] = policy
            if element.on_deny == "skip" and scope.structural not in (
                "sequence",
                "workflow",
                "loop",
            ):
                raise CompileError(
                    f"Approval `{element.id}` at `{path}` has on_deny='skip' but its parent is "
                    f"a {(scope.structural or 'none').capitalize()}; 'skip' skips later "
                    "siblings, so wrap the gate in a Sequence or use on_deny='continue'."
                )
        elif isinstance(element, Timer):
            kind, output = "timer", TimerFired
            if element.duration is not None:
                props["duration"] = format_duration(element.duration)
            else:
                props["until"] = element.until
        else:
            kind, output = "signal", element.output
            if element.timeout is not None:
                props["timeout"] = element.timeout
                props["on_timeout"] = element.on_timeout
        try:
            decoder_for(output)
        except TypeError as exc:
            raise CompileError(
                f"{element.describe()} at `{path}` declares output `{type_name(output)}` that "
                f"msgspec cannot validate ({exc}); use a msgspec.Struct, a dataclass, a "
                "TypedDict or a builtin type."
            ) from None
        self.elements[element.id] = element
        self.nodes.append(
            Node(
                id=element.id,
                kind=kind,
                path=path,
                label=element.label or element.id,
                output_type=type_name(output),
                iteration=scope.iteration,
                loops=scope.loops,
                parent=scope.parent or "",
                index=scope.index,
                needs=dict(element.needs) if isinstance(element, Task | Approval) else {},
                props=props,
                skipped=skipped,
            )
        )
        for source, edge_kind in prev:
            self.edges.append(Edge(source=source, target=element.id, kind=edge_kind))
        return prev if skipped else ((element.id, "sequence"),)

    def _group(self, element: Element, path: str, scope: _Scope, prev: _Prev) -> _Prev:
        if isinstance(element, ComponentElement):
            return self._component(element, path, scope, prev)
        kind: GroupKind = element.kind  # type: ignore[assignment]
        skipped = scope.skipped or bool(getattr(element, "skip_if", False))
        extra: dict[str, Any] = {}
        iteration, loops = scope.iteration, scope.loops
        if isinstance(element, Workflow):
            if scope.parent is not None:
                raise CompileError(
                    f"Workflow(name={element.name!r}) at `{path}` is nested; Workflow can only "
                    "be the root, so use Sequence(...) here."
                )
            extra["name"] = element.name
        elif isinstance(element, Parallel):
            extra["max_concurrency"] = element.max_concurrency
        elif isinstance(element, Loop):
            self._register(element.id, path)
            self.loop_elements[element.id] = element
            at = self.view.loop_iteration(element.id, scope.iteration)
            iteration, loops = (*scope.iteration, at), (*scope.loops, element.id)
            extra.update(
                name=element.id,
                max_iterations=element.max_iterations,
                on_max_reached=element.on_max_reached,
                until=element.until if isinstance(element.until, bool) else None,
            )
        elif isinstance(element, Branch):
            frozen = self.view.frozen_side(path, scope.iteration)
            take_then = element.if_ if frozen is None else frozen
            side = element.then if take_then else element.else_
            extra.update(
                condition=element.if_,
                taken=("then" if take_then else "else") if side is not None else None,
                frozen=frozen is not None and frozen != element.if_,
            )
        elif not isinstance(element, Sequence):
            raise CompileError(f"Unknown element {element!r} at `{path}`.")
        self._add_child(scope, path)
        self.groups.append(
            Group(
                path=path,
                kind=kind,
                parent=scope.parent,
                index=scope.index,
                iteration=iteration,
                loops=loops,
                skipped=skipped,
                **extra,
            )
        )
        inner = _Scope(path, 0, iteration, loops, skipped, kind)
        if isinstance(element, Branch):
            if extra["taken"] is None:  # the chosen side is None: nothing mounts
                return prev
            side = element.then if extra["taken"] == "then" else element.else_
            assert side is not None
            return self._lower(side, _segment(side, str(extra["taken"])), inner, prev)
        if isinstance(element, Parallel):
            outs: list[tuple[str, EdgeKind]] = []
            for i, child in enumerate(element.children):
                got = self._lower(child, _segment(child, i), inner.at(i), prev)
                if got != prev:
                    outs.extend(got)
            return tuple(dict.fromkeys(outs)) if outs else prev
        assert isinstance(element, Workflow | Sequence | Loop)
        children = element.children
        order: EdgeKind = "loop" if isinstance(element, Loop) else "sequence"
        # A loop's body starts when the loop starts an iteration, so its entries have no
        # incoming edges; the loop itself waits for ``prev``.
        current: _Prev = () if isinstance(element, Loop) else prev
        for i, child in enumerate(children):
            got = self._lower(child, _segment(child, i), inner.at(i), current)
            if got != current:  # a skipped or empty child passes its predecessors through
                current = tuple((unit, order) for unit, _ in got)
        if isinstance(element, Loop):
            self.loop_exits[element.id] = tuple(unit for unit, _ in current)
            for source, edge_kind in prev:
                self.edges.append(Edge(source=source, target=element.id, kind=edge_kind))
            return prev if skipped else ((element.id, "sequence"),)
        return current if current else prev

    def _component(self, element: ComponentElement, path: str, scope: _Scope, prev: _Prev) -> _Prev:
        result = self._call_component(element, path)
        self._add_child(scope, path)
        self.groups.append(
            Group(
                path=path,
                kind="component",
                name=element.name,
                parent=scope.parent,
                index=scope.index,
                iteration=scope.iteration,
                loops=scope.loops,
                skipped=scope.skipped,
            )
        )
        inner = _Scope(path, 0, scope.iteration, scope.loops, scope.skipped, scope.structural)
        return self._lower(result, _segment(result, 0), inner, prev)

    # -- needs and cycles ---------------------------------------------------------------------

    def _needs_edges(self) -> None:
        for node in self.nodes:
            for param, dep in sorted(node.needs.items()):  # dict order must not change hashes
                if dep in self.loop_elements:
                    raise CompileError(
                        f"{node.kind.capitalize()} `{node.id}` at `{node.path}` has "
                        f"needs={{{param!r}: {dep!r}}} naming a Loop; needs must name a task, "
                        "approval or signal inside it."
                    )
                self.edges.append(Edge(source=dep, target=node.id, kind="needs"))

    def _check_cycles(self) -> None:
        nodes = {n.id: n for n in self.nodes}
        succ: dict[str, list[str]] = {v: [] for v in self.paths}
        for edge in self.edges:
            if edge.source in succ:
                succ[edge.source].append(edge.target)
        # A loop finishes only after its body: every body unit points at its innermost loop.
        for node in self.nodes:
            if node.loops:
                succ[node.id].append(node.loops[-1])
        for group in self.groups:
            if group.kind == "loop" and len(group.loops) > 1:
                assert group.name is not None
                succ[group.name].append(group.loops[-2])
        # A needs on a node inside a loop that does not enclose the reader waits for that loop.
        for node in self.nodes:
            for dep in node.needs.values():
                dep_node = nodes.get(dep)
                if dep_node is None:
                    continue
                outer = foreign_loop(dep_node.loops, node.loops)
                if outer is not None:
                    succ[outer].append(node.id)
        cycle = _find_cycle(succ)
        if cycle:
            chain = " -> ".join(f"`{v}`" for v in cycle)
            raise CompileError(
                f"Cycle through needs and Sequence order: {chain} at `{self.paths[cycle[0]]}`; "
                "remove one of these needs or reorder the Sequence."
            )


def _find_cycle(succ: Mapping[str, list[str]]) -> list[str] | None:
    """Return one cycle as a closed list of vertices, or None (iterative DFS)."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(succ, white)
    for start in succ:
        if color[start] != white:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        trail: list[str] = [start]
        color[start] = grey
        while stack:
            vertex, i = stack[-1]
            targets = succ[vertex]
            if i < len(targets):
                stack[-1] = (vertex, i + 1)
                nxt = targets[i]
                if nxt not in color:
                    continue
                if color[nxt] == grey:
                    return [*trail[trail.index(nxt) :], nxt]
                if color[nxt] == white:
                    color[nxt] = grey
                    stack.append((nxt, 0))
                    trail.append(nxt)
            else:
                color[vertex] = black
                stack.pop()
                trail.pop()
    return None


def _segment(element: Element, position: int | str) -> str:
    """Name an element in a path: by id when it has one, else by position."""
    if isinstance(element, Task | Approval | Signal | Timer | Loop):
        return f"{type(element).__name__}({element.id})"
    if isinstance(element, Workflow):
        return f"Workflow({element.name})"
    if isinstance(element, ComponentElement):
        return f"{element.name}({element.id})" if element.id else f"{element.name}[{position}]"
    return f"{type(element).__name__}[{position}]"
