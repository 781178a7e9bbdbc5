"""Hypothesis strategies for random component trees, plus an independent model of them.

A strategy draws a `TreeSpec`: a plain description of a tree of Sequence, Parallel, Branch,
Loop, user components, Task, Approval and Signal with unique ids and random ``needs``.
`TreeSpec.element()` builds the real element tree (optionally with noise: None/False/True
children and nested lists, tuples and generators), and `TreeSpec.units()` says, without the
compiler, which nodes and loops mount and at which path, so properties can compare the two.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from typing import Any, Literal

from hypothesis import strategies as st

from smithers import (
    Approval,
    ApprovalRequest,
    Branch,
    Loop,
    Parallel,
    Sequence,
    Signal,
    Task,
    Workflow,
    component,
)
from smithers.components import Element

LeafKind = Literal["task", "approval", "signal"]
GroupKind = Literal["sequence", "parallel", "loop", "component"]
Structural = Literal["workflow", "sequence", "parallel", "branch", "loop"]

MAX_DEPTH = 3
MAX_CHILDREN = 3
GHOST = "ghost-node"  # a needs target that never mounts
ID_PREFIXES = ("n", "gate-", "a.b:", "x_")
KIND_NAMES = {"task": "Task", "approval": "Approval", "signal": "Signal"}
# The deny policies a gate may take where it sits: 'skip' only under these parents.
SKIP_PARENTS: frozenset[str] = frozenset({"workflow", "sequence", "loop"})


def never(*args: Any, **kwargs: Any) -> Any:
    """A run/request/until callable that must never be called while rendering."""
    raise AssertionError("called while rendering")


@component
def Stage(*, children: tuple[Element, ...] = (), id: str | None = None) -> Element:
    """A user component whose children run in order."""
    return Sequence(children)


@component
def Fanout(*, children: tuple[Element, ...] = (), id: str | None = None) -> Element:
    """A user component whose children run in parallel."""
    return Parallel(children)


COMPONENTS = {"Stage": (Stage, "Sequence", "sequence"), "Fanout": (Fanout, "Parallel", "parallel")}


@dataclasses.dataclass(frozen=True)
class LeafSpec:
    """A Task, Approval or Signal."""

    kind: LeafKind
    id: str
    needs: tuple[tuple[str, str], ...] = ()
    skip: bool = False
    on_deny: str = "fail"
    use_callable: bool = False


@dataclasses.dataclass(frozen=True)
class GroupSpec:
    """A Sequence, Parallel, Loop or user component with children."""

    kind: GroupKind
    children: tuple[Spec, ...]
    id: str | None = None  # a loop's id, or a component's optional id prop
    skip: bool = False
    component: str = ""


@dataclasses.dataclass(frozen=True)
class BranchSpec:
    """A Branch with its condition and two optional sides."""

    if_: bool
    then: Spec | None
    else_: Spec | None
    skip: bool = False


Spec = LeafSpec | GroupSpec | BranchSpec


@dataclasses.dataclass(frozen=True)
class Unit:
    """What the model says mounts: a node or a loop, with its path and context."""

    kind: str  # task, approval, signal or loop
    id: str
    path: str
    loops: tuple[str, ...]
    skipped: bool
    spec: LeafSpec | GroupSpec


@dataclasses.dataclass(frozen=True)
class TreeSpec:
    """A whole workflow: its name and the root's children."""

    name: str
    children: tuple[Spec, ...]

    @property
    def root(self) -> str:
        """The root group's path."""
        return f"Workflow({self.name})"

    def element(self, noise: int | None = None) -> Workflow:
        """Build the element tree; with a noise seed, children get junk and nesting."""
        rng = random.Random(noise) if noise is not None else None
        return Workflow(*_children(self.children, rng), name=self.name)

    def units(self) -> list[Unit]:
        """Every mounted node and loop, in tree (pre-)order."""
        return list(_walk_all(self.children, self.root, (), False))

    def nodes(self) -> list[Unit]:
        """Every mounted node, in tree order."""
        return [u for u in self.units() if u.kind != "loop"]

    def leaves(self) -> list[LeafSpec]:
        """Every leaf of the spec, mounted or not, in tree order."""
        return list(_leaves(self.children))

    def rename(self, old: str, new: str) -> TreeSpec:
        """The same tree with the node or loop ``old`` renamed to ``new`` (needs untouched)."""
        return TreeSpec(self.name, tuple(_rename(c, old, new) for c in self.children))

    def without_needs(self) -> TreeSpec:
        """The same tree with every needs removed."""
        return TreeSpec(self.name, tuple(_strip(c) for c in self.children))


# -- building elements -------------------------------------------------------------------------


def _noisy(items: list[Any], rng: random.Random) -> list[Any]:
    """Sprinkle None/False/True and wrap runs of items in lists, tuples and generators."""
    out: list[Any] = []
    i = 0
    while i < len(items):
        roll = rng.random()
        if roll < 0.2:
            out.append(rng.choice([None, False, True, [], ()]))
        if roll < 0.45 and len(items) - i >= 1:
            n = rng.randint(1, len(items) - i)
            chunk = _noisy(items[i : i + n], rng)
            wrap = rng.choice(["list", "tuple", "generator"])
            if wrap == "list":
                out.append(chunk)
            elif wrap == "tuple":
                out.append(tuple(chunk))
            else:
                out.append(x for x in chunk)
            i += n
        else:
            out.append(items[i])
            i += 1
    if rng.random() < 0.3:
        out.append(rng.choice([None, False, True, [None], (False,)]))
    return out


def _children(specs: tuple[Spec, ...], rng: random.Random | None) -> list[Any]:
    built = [_element(s, rng) for s in specs]
    return _noisy(built, rng) if rng is not None else built


def _element(spec: Spec, rng: random.Random | None) -> Element:
    if isinstance(spec, LeafSpec):
        needs = dict(spec.needs)
        if spec.kind == "task":
            if spec.use_callable:
                return Task(id=spec.id, output=int, run=never, needs=needs, skip_if=spec.skip)
            return Task(id=spec.id, output=int, value=1, needs=needs, skip_if=spec.skip)
        if spec.kind == "approval":
            request: Any = never if spec.use_callable else ApprovalRequest(title=spec.id)
            return Approval(
                id=spec.id,
                request=request,
                needs=needs,
                on_deny=spec.on_deny,  # type: ignore[arg-type]
                skip_if=spec.skip,
            )
        return Signal(id=spec.id, output=str, skip_if=spec.skip)
    if isinstance(spec, BranchSpec):
        return Branch(
            if_=spec.if_,
            then=_element(spec.then, rng) if spec.then is not None else None,
            else_=_element(spec.else_, rng) if spec.else_ is not None else None,
            skip_if=spec.skip,
        )
    children = _children(spec.children, rng)
    if spec.kind == "sequence":
        return Sequence(*children, skip_if=spec.skip)
    if spec.kind == "parallel":
        return Parallel(*children, skip_if=spec.skip)
    if spec.kind == "loop":
        assert spec.id is not None
        until = never if spec.skip else False
        return Loop(*children, id=spec.id, until=until, max_iterations=2, skip_if=spec.skip)
    make = COMPONENTS[spec.component][0]
    props = {"id": spec.id} if spec.id else {}
    return make(*children, **props)


# -- the model ---------------------------------------------------------------------------------


def _walk_all(
    specs: tuple[Spec, ...], parent: str, loops: tuple[str, ...], skipped: bool
) -> Iterator[Unit]:
    for position, spec in enumerate(specs):
        yield from _walk(spec, str(position), parent, loops, skipped)


def _walk(
    spec: Spec, position: str, parent: str, loops: tuple[str, ...], skipped: bool
) -> Iterator[Unit]:
    if isinstance(spec, LeafSpec):
        path = f"{parent}/{KIND_NAMES[spec.kind]}({spec.id})"
        yield Unit(spec.kind, spec.id, path, loops, skipped or spec.skip, spec)
    elif isinstance(spec, BranchSpec):
        path = f"{parent}/Branch[{position}]"
        side = spec.then if spec.if_ else spec.else_
        if side is not None:
            yield from _walk(
                side, "then" if spec.if_ else "else", path, loops, skipped or spec.skip
            )
    elif spec.kind == "loop":
        assert spec.id is not None
        path = f"{parent}/Loop({spec.id})"
        inner_skipped = skipped or spec.skip
        yield Unit("loop", spec.id, path, loops, inner_skipped, spec)
        yield from _walk_all(spec.children, path, (*loops, spec.id), inner_skipped)
    elif spec.kind == "component":
        name = spec.component
        path = f"{parent}/{name}({spec.id})" if spec.id else f"{parent}/{name}[{position}]"
        inner = f"{path}/{COMPONENTS[name][1]}[0]"
        yield from _walk_all(spec.children, inner, loops, skipped)
    else:
        path = f"{parent}/{spec.kind.capitalize()}[{position}]"
        yield from _walk_all(spec.children, path, loops, skipped or spec.skip)


def _leaves(specs: tuple[Spec | None, ...]) -> Iterator[LeafSpec]:
    for spec in specs:
        if isinstance(spec, LeafSpec):
            yield spec
        elif isinstance(spec, BranchSpec):
            yield from _leaves((spec.then, spec.else_))
        elif isinstance(spec, GroupSpec):
            yield from _leaves(spec.children)


def _map(spec: Spec | None, leaf: Any, group_id: Any) -> Any:
    if spec is None:
        return None
    if isinstance(spec, LeafSpec):
        return leaf(spec)
    if isinstance(spec, BranchSpec):
        return dataclasses.replace(
            spec, then=_map(spec.then, leaf, group_id), else_=_map(spec.else_, leaf, group_id)
        )
    return dataclasses.replace(
        spec,
        id=group_id(spec),
        children=tuple(_map(c, leaf, group_id) for c in spec.children),
    )


def _rename(spec: Spec, old: str, new: str) -> Spec:
    result: Spec = _map(
        spec,
        lambda leaf: dataclasses.replace(leaf, id=new) if leaf.id == old else leaf,
        lambda group: new if group.kind == "loop" and group.id == old else group.id,
    )
    return result


def _strip(spec: Spec) -> Spec:
    result: Spec = _map(spec, lambda leaf: dataclasses.replace(leaf, needs=()), lambda g: g.id)
    return result


# -- strategies --------------------------------------------------------------------------------


class _Ids:
    """Hands out unique ids in draw order."""

    def __init__(self) -> None:
        self.count = 0

    def next(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"


def _skip(draw: st.DrawFn) -> bool:
    return draw(st.sampled_from([False, False, False, False, True]))


def _spec(draw: st.DrawFn, depth: int, ids: _Ids, structural: Structural) -> Spec:
    leaf_kinds = ["task", "task", "approval", "approval", "signal"]
    group_kinds = ["sequence", "parallel", "branch", "loop", "component"]
    kind = draw(st.sampled_from(leaf_kinds + (group_kinds if depth < MAX_DEPTH else [])))
    if kind in ("task", "approval", "signal"):
        policies = (
            ["fail", "continue", "skip"] if structural in SKIP_PARENTS else ["fail", "continue"]
        )
        return LeafSpec(
            kind=kind,  # type: ignore[arg-type]
            id=ids.next(draw(st.sampled_from(ID_PREFIXES))),
            skip=_skip(draw),
            on_deny=draw(st.sampled_from(policies)) if kind == "approval" else "fail",
            use_callable=draw(st.booleans()),
        )
    if kind == "branch":
        # A missing `then` comes only with a missing `else_`: Branch(if_=True, then=None,
        # else_=X) mounts X (test_lower.py::test_branch_with_no_then_side_mounts_nothing pins
        # that bug); drawing it here would only repeat that failure, slowly, while shrinking.
        then = draw(st.none() | st.just(1))
        other = draw(st.none() | st.just(1)) if then is not None else None
        return BranchSpec(
            if_=draw(st.booleans()),
            then=_spec(draw, depth + 1, ids, "branch") if then is not None else None,
            else_=_spec(draw, depth + 1, ids, "branch") if other is not None else None,
            skip=_skip(draw),
        )
    count = draw(st.integers(0, MAX_CHILDREN))
    if kind == "component":
        name = draw(st.sampled_from(sorted(COMPONENTS)))
        inner: Any = COMPONENTS[name][2]
        comp_id = ids.next("c") if draw(st.booleans()) else None
        children = tuple(_spec(draw, depth + 1, ids, inner) for _ in range(count))
        return GroupSpec("component", children, id=comp_id, component=name)
    loop_id = ids.next("loop-") if kind == "loop" else None
    children = tuple(_spec(draw, depth + 1, ids, kind) for _ in range(count))  # type: ignore[arg-type]
    return GroupSpec(kind, children, id=loop_id, skip=_skip(draw))  # type: ignore[arg-type]


NeedsMode = Literal["earlier", "any", "across-loops"]


def _with_needs(draw: st.DrawFn, tree: TreeSpec, mode: NeedsMode) -> TreeSpec:
    """Give tasks and gates random needs on earlier leaves, plus (unless ``mode`` is
    "earlier") one more needs that may point anywhere: at any leaf ("any"), or from a
    mounted node to a mounted node of other loops ("across-loops"). One extra needs is
    enough to make cycles, and few enough that some run only through loop membership."""
    order = [leaf.id for leaf in tree.leaves()]
    chosen: dict[str, tuple[tuple[str, str], ...]] = {}
    for i, leaf in enumerate(tree.leaves()):
        if leaf.kind == "signal":
            continue
        deps = draw(st.lists(st.sampled_from([*order[:i], GHOST]), max_size=2, unique=True))
        chosen[leaf.id] = tuple((f"p{k}", dep) for k, dep in enumerate(deps))
    pairs: list[tuple[str, str]] = []
    if mode == "any":
        pairs = [(r, d) for r in chosen for d in order]
    elif mode == "across-loops":
        nodes = tree.nodes()
        pairs = [
            (r.id, d.id) for r in nodes for d in nodes if r.kind != "signal" and r.loops != d.loops
        ]
    if pairs:
        reader, dep = draw(st.sampled_from(pairs))
        if dep not in dict(chosen[reader]).values():
            chosen[reader] = (*chosen[reader], (f"p{len(chosen[reader])}", dep))
    return TreeSpec(
        tree.name,
        tuple(
            _map(
                c,
                lambda leaf: dataclasses.replace(leaf, needs=chosen.get(leaf.id, ())),
                lambda g: g.id,
            )
            for c in tree.children
        ),
    )


@st.composite
def trees(draw: st.DrawFn, *, needs: NeedsMode = "earlier") -> TreeSpec:
    """A random workflow with unique ids.

    Args:
        needs: "earlier": needs only name leaves earlier in tree order (or a node that never
            mounts), so the tree always compiles. "any": one extra needs may name any leaf,
            so some trees have cycles. "across-loops": the tree has a loop at the top level
            and the extra needs crosses a loop boundary.
    """
    ids = _Ids()
    count = draw(st.integers(1, 4))
    children = [_spec(draw, 1, ids, "workflow") for _ in range(count)]
    if needs == "across-loops":
        body = tuple(_spec(draw, 2, ids, "loop") for _ in range(draw(st.integers(1, 3))))
        loop = GroupSpec("loop", body, id=ids.next("loop-"))
        children.insert(draw(st.integers(0, len(children))), loop)
    name = draw(st.sampled_from(["w", "deploy", "release.v2", "a:b-c_d"]))
    return _with_needs(draw, TreeSpec(name, tuple(children)), needs)
