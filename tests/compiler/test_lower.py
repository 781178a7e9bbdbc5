"""Lowering an element tree to a Graph: nodes, paths, groups and edges."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
import pytest

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
from smithers.compiler import Graph, compile_tree
from smithers.components import Element


class Build(msgspec.Struct):
    """A task output used across these tests."""

    version: str
    plan: str


@dataclasses.dataclass
class Callback:
    """A signal payload used across these tests."""

    ok: bool


def task(node_id: str, **props: Any) -> Task:
    """A value task with an int output."""
    return Task(id=node_id, output=int, value=1, **props)


def gate(node_id: str, **props: Any) -> Approval:
    """An approval with a static request."""
    return Approval(id=node_id, request=ApprovalRequest(title=f"{node_id}?"), **props)


def edges(graph: Graph) -> set[tuple[str, str, str]]:
    """The graph's edges as (source, target, kind) triples."""
    return {(e.source, e.target, e.kind) for e in graph.edges}


def order_edges(graph: Graph) -> set[tuple[str, str]]:
    """The non-needs edges as (source, target) pairs."""
    return {(e.source, e.target) for e in graph.edges if e.kind != "needs"}


def paths(graph: Graph) -> dict[str, str]:
    """Node id to path."""
    return {n.id: n.path for n in graph.nodes}


class View:
    """A LoweringView with fixed loop iterations and frozen branch sides."""

    def __init__(
        self,
        loops: dict[tuple[str, tuple[int, ...]], int] | None = None,
        frozen: dict[tuple[str, tuple[int, ...]], bool] | None = None,
    ) -> None:
        self.loops = loops or {}
        self.frozen = frozen or {}
        self.asked: list[tuple[str, tuple[int, ...]]] = []

    def loop_iteration(self, loop_id: str, outer: tuple[int, ...]) -> int:
        self.asked.append((loop_id, outer))
        return self.loops.get((loop_id, outer), 0)

    def frozen_side(self, path: str, iteration: tuple[int, ...]) -> bool | None:
        return self.frozen.get((path, iteration))


def deploy_tree() -> Workflow:
    """The DESIGN §3 example tree, before any output exists."""
    return Workflow(
        Sequence(
            Task(id="build", output=Build, run=lambda: Build("1", "roll out")),
            Approval(
                id="approve-deploy",
                needs={"build": "build"},
                request=lambda build: ApprovalRequest(title=f"Deploy {build.version}?"),
                on_deny="continue",
            ),
        ),
        name="deploy",
    )


# -- nodes -------------------------------------------------------------------------------------


def test_design_example_lowers_to_two_nodes() -> None:
    """The deploy example gives a task and a gate with their kinds, paths and types."""
    graph = compile_tree(deploy_tree())
    assert graph.workflow == "deploy"
    assert graph.root == "Workflow(deploy)"
    build, approve = graph.nodes
    assert (build.id, build.kind, build.path, build.label, build.output_type) == (
        "build",
        "task",
        "Workflow(deploy)/Sequence[0]/Task(build)",
        "build",
        "Build",
    )
    assert (approve.id, approve.kind, approve.path, approve.output_type) == (
        "approve-deploy",
        "approval",
        "Workflow(deploy)/Sequence[0]/Approval(approve-deploy)",
        "ApprovalDecision",
    )
    assert approve.needs == {"build": "build"}
    assert approve.props == {"on_deny": "continue"}
    assert build.props == {"mode": "run"}
    assert (build.parent, build.index, approve.index) == ("Workflow(deploy)/Sequence[0]", 0, 1)
    assert (build.iteration, build.loops, build.skipped) == ((), (), False)


def test_task_props_reach_the_node() -> None:
    """retries, backoff, timeout, continue_on_fail and async show in node props."""

    async def run() -> int:
        return 1

    graph = compile_tree(
        Workflow(
            Task(
                id="a",
                output=list[int],
                run=run,
                retries=2,
                backoff=[1, 2],
                timeout=5,
                continue_on_fail=True,
                label="Fetch",
            ),
            Task(id="b", output=int, value=1, backoff=0.5),
            name="w",
        )
    )
    a, b = graph.nodes
    assert a.props == {
        "mode": "run",
        "async": True,
        "retries": 2,
        "backoff": [1.0, 2.0],
        "timeout": 5.0,
        "continue_on_fail": True,
    }
    assert (a.label, a.output_type) == ("Fetch", "list[int]")
    assert b.props == {"mode": "value", "backoff": 0.5}


def test_gate_and_signal_props_reach_the_node() -> None:
    """A static request's title and on_deny are gate props; a signal has its output type."""
    graph = compile_tree(
        Workflow(
            Approval(id="g", request=ApprovalRequest(title="Ship?"), label="Ship gate"),
            Approval(id="h", request=lambda: ApprovalRequest(title="dynamic")),
            Signal(id="s", output=Callback, label="Callback"),
            name="w",
        )
    )
    g, h, s = graph.nodes
    assert (g.kind, g.label, g.props) == (
        "approval",
        "Ship gate",
        {"on_deny": "fail", "title": "Ship?"},
    )
    assert h.props == {"on_deny": "fail"}
    assert (s.kind, s.label, s.output_type, s.props, s.needs) == (
        "signal",
        "Callback",
        "Callback",
        {},
        {},
    )


@pytest.mark.parametrize(
    ("output", "name"),
    [
        (int, "int"),
        (str, "str"),
        (dict[str, int], "dict[str, int]"),
        (list[Build], "list[Build]"),
        (int | None, "int | None"),
        (None, "None"),
        (Any, "Any"),
    ],
)
def test_output_type_names(output: Any, name: str) -> None:
    """Output types are named briefly and stably."""
    graph = compile_tree(Workflow(Signal(id="s", output=output), name="w"))
    assert graph.node("s").output_type == name


def test_graph_lookup_helpers() -> None:
    """node(), group(), loops(), `in`, len() and iteration work on the graph."""
    graph = compile_tree(Workflow(task("a"), Loop(task("b"), id="L", until=False), name="w"))
    assert graph.node("b").path == "Workflow(w)/Loop(L)/Task(b)"
    assert graph.group("Workflow(w)/Loop(L)").kind == "loop"
    assert list(graph.loops()) == ["L"]
    assert "a" in graph
    assert "L" not in graph
    assert len(graph) == 2
    assert [n.id for n in graph] == ["a", "b"]
    with pytest.raises(KeyError, match="zz"):
        graph.node("zz")
    with pytest.raises(KeyError, match="nope"):
        graph.group("nope")


# -- paths -------------------------------------------------------------------------------------


def test_paths_name_unnamed_by_position_and_named_by_id() -> None:
    """Unnamed groups are Kind[i] by position; nodes and loops are Kind(id)."""
    graph = compile_tree(
        Workflow(
            task("a"),
            Parallel(task("b"), Sequence(task("c")), max_concurrency=2),
            Loop(Sequence(task("d")), id="L", until=False),
            Signal(id="s", output=int),
            name="w",
        )
    )
    assert paths(graph) == {
        "a": "Workflow(w)/Task(a)",
        "b": "Workflow(w)/Parallel[1]/Task(b)",
        "c": "Workflow(w)/Parallel[1]/Sequence[1]/Task(c)",
        "d": "Workflow(w)/Loop(L)/Sequence[0]/Task(d)",
        "s": "Workflow(w)/Signal(s)",
    }


def test_positions_count_mounted_children_only() -> None:
    """Dropped children (None/False) do not take a position."""
    decided = False
    graph = compile_tree(Workflow(None, decided and task("x"), Sequence(task("a")), name="w"))
    assert paths(graph) == {"a": "Workflow(w)/Sequence[0]/Task(a)"}


def test_branch_sides_are_named_then_and_else() -> None:
    """A branch's unnamed side is Kind[then]/Kind[else]; a named side keeps its id."""
    then_graph = compile_tree(
        Workflow(Branch(if_=True, then=Sequence(task("a")), else_=task("b")), name="w")
    )
    else_graph = compile_tree(
        Workflow(Branch(if_=False, then=Sequence(task("a")), else_=Parallel(task("b"))), name="w")
    )
    named = compile_tree(Workflow(Branch(if_=False, then=None, else_=task("b")), name="w"))
    assert paths(then_graph) == {"a": "Workflow(w)/Branch[0]/Sequence[then]/Task(a)"}
    assert paths(else_graph) == {"b": "Workflow(w)/Branch[0]/Parallel[else]/Task(b)"}
    assert paths(named) == {"b": "Workflow(w)/Branch[0]/Task(b)"}


def test_user_components_are_named_in_paths() -> None:
    """A component is Name[i], or Name(id) with an id prop; its result sits under it."""

    @component
    def ReleaseGate(*, version: str, id: str | None = None) -> Element:
        return Sequence(task(f"build-{version}"), gate(f"approve-{version}"))

    graph = compile_tree(
        Workflow(
            task("first"), ReleaseGate(version="1"), ReleaseGate(version="2", id="rg"), name="w"
        )
    )
    assert paths(graph) == {
        "first": "Workflow(w)/Task(first)",
        "build-1": "Workflow(w)/ReleaseGate[1]/Sequence[0]/Task(build-1)",
        "approve-1": "Workflow(w)/ReleaseGate[1]/Sequence[0]/Approval(approve-1)",
        "build-2": "Workflow(w)/ReleaseGate(rg)/Sequence[0]/Task(build-2)",
        "approve-2": "Workflow(w)/ReleaseGate(rg)/Sequence[0]/Approval(approve-2)",
    }
    group = graph.group("Workflow(w)/ReleaseGate[1]")
    assert (group.kind, group.name, group.children) == (
        "component",
        "ReleaseGate",
        ("Workflow(w)/ReleaseGate[1]/Sequence[0]",),
    )


def test_component_returning_a_node_and_nested_components() -> None:
    """Components may return a single node or another component; each adds a path segment."""

    @component
    def Inner() -> Element:
        return task("leaf")

    @component
    def Outer() -> Element:
        return Inner()

    graph = compile_tree(Workflow(Outer(), name="w"))
    assert paths(graph) == {"leaf": "Workflow(w)/Outer[0]/Inner[0]/Task(leaf)"}
    assert graph.node("leaf").parent == "Workflow(w)/Outer[0]/Inner[0]"


def test_component_may_return_the_root_workflow() -> None:
    """A component returned by the build is expanded before the root check."""

    @component
    def App() -> Element:
        return Workflow(task("a"), name="app")

    graph = compile_tree(App())
    assert graph.root == "Workflow(app)"
    assert paths(graph) == {"a": "Workflow(app)/Task(a)"}


def test_every_node_path_ends_with_kind_and_id() -> None:
    """Each node's path ends with Task(id), Approval(id) or Signal(id)."""
    graph = compile_tree(
        Workflow(
            Parallel(task("a"), gate("b")),
            Loop(Branch(if_=True, then=Signal(id="c", output=int)), id="L", until=True),
            name="w",
        )
    )
    ends = {n.id: n.path.rsplit("/", 1)[-1] for n in graph.nodes}
    assert ends == {"a": "Task(a)", "b": "Approval(b)", "c": "Signal(c)"}


# -- groups ------------------------------------------------------------------------------------


def test_groups_record_structure() -> None:
    """Groups list their kind, parent, index and children in tree order."""
    graph = compile_tree(
        Workflow(task("a"), Parallel(task("b"), task("c"), max_concurrency=1), name="w")
    )
    root, par = graph.groups
    assert (root.path, root.kind, root.name, root.parent) == (
        "Workflow(w)",
        "workflow",
        "w",
        None,
    )
    assert root.children == ("Workflow(w)/Task(a)", "Workflow(w)/Parallel[1]")
    assert (par.kind, par.parent, par.index, par.max_concurrency) == (
        "parallel",
        "Workflow(w)",
        1,
        1,
    )
    assert par.children == ("Workflow(w)/Parallel[1]/Task(b)", "Workflow(w)/Parallel[1]/Task(c)")


def test_branch_group_records_condition_and_taken_side() -> None:
    """A branch group keeps if_ and the mounted side; only that side is mounted."""
    taken_then = compile_tree(
        Workflow(Branch(if_=True, then=task("yes"), else_=task("no")), name="w")
    )
    taken_else = compile_tree(
        Workflow(Branch(if_=False, then=task("yes"), else_=task("no")), name="w")
    )
    nothing = compile_tree(Workflow(Branch(if_=False, then=task("yes")), name="w"))
    b1 = taken_then.group("Workflow(w)/Branch[0]")
    b2 = taken_else.group("Workflow(w)/Branch[0]")
    b3 = nothing.group("Workflow(w)/Branch[0]")
    assert (b1.condition, b1.taken, b1.frozen, [n.id for n in taken_then]) == (
        True,
        "then",
        False,
        ["yes"],
    )
    assert (b2.condition, b2.taken, [n.id for n in taken_else]) == (False, "else", ["no"])
    assert (b3.condition, b3.taken, list(nothing), b3.children) == (False, None, [], ())


def test_branch_with_no_then_side_mounts_nothing() -> None:
    """if_=True with then=None mounts nothing; the else_ side stays unmounted."""
    graph = compile_tree(
        Workflow(Branch(if_=True, then=None, else_=task("no")), task("after"), name="w")
    )
    branch = graph.group("Workflow(w)/Branch[0]")
    assert (branch.condition, branch.taken, branch.children) == (True, None, ())
    assert [n.id for n in graph] == ["after"]


def test_unmounted_branch_side_may_reuse_an_id() -> None:
    """Only the mounted side is lowered, so both sides may use the same id."""
    graph = compile_tree(
        Workflow(Branch(if_=False, then=task("x", label="then"), else_=task("x")), name="w")
    )
    assert [(n.id, n.label) for n in graph] == [("x", "x")]


def test_frozen_branch_keeps_its_side() -> None:
    """A view that froze a branch mounts the frozen side, and marks it frozen if it differs."""
    tree = Workflow(Branch(if_=True, then=task("yes"), else_=task("no")), name="w")
    path = "Workflow(w)/Branch[0]"
    differ = compile_tree(tree, view=View(frozen={(path, ()): False}))
    same = compile_tree(tree, view=View(frozen={(path, ()): True}))
    assert [n.id for n in differ] == ["no"]
    assert (differ.group(path).taken, differ.group(path).frozen) == ("else", True)
    assert [n.id for n in same] == ["yes"]
    assert (same.group(path).taken, same.group(path).frozen) == ("then", False)


def test_loop_group_records_bounds() -> None:
    """A loop group keeps its id, bound, policy, a bool until, and its exits."""
    graph = compile_tree(
        Workflow(
            Loop(
                task("a"), task("b"), id="L", until=False, max_iterations=3, on_max_reached="fail"
            ),
            Loop(task("c"), id="M", until=lambda ctx: True),
            name="w",
        )
    )
    loop_l, loop_m = graph.loops()["L"], graph.loops()["M"]
    assert (loop_l.name, loop_l.max_iterations, loop_l.on_max_reached, loop_l.until) == (
        "L",
        3,
        "fail",
        False,
    )
    assert (loop_l.iteration, loop_l.loops, loop_l.exits) == ((0,), ("L",), ("b",))
    assert (loop_m.max_iterations, loop_m.on_max_reached, loop_m.until) == (5, "return-last", None)


def test_nested_loops_give_iteration_tuples_outermost_first() -> None:
    """Nodes in nested loops carry (outer, inner) iterations and both loop ids."""
    tree = Workflow(
        task("before"),
        Loop(task("o"), Loop(task("i"), id="inner", until=False), id="outer", until=False),
        name="w",
    )
    view = View(loops={("outer", ()): 2, ("inner", (2,)): 1})
    graph = compile_tree(tree, view=view)
    assert [(n.id, n.iteration, n.loops) for n in graph] == [
        ("before", (), ()),
        ("o", (2,), ("outer",)),
        ("i", (2, 1), ("outer", "inner")),
    ]
    inner = graph.loops()["inner"]
    assert (inner.iteration, inner.loops, inner.parent) == (
        (2, 1),
        ("outer", "inner"),
        "Workflow(w)/Loop(outer)",
    )
    assert view.asked == [("outer", ()), ("inner", (2,))]


def test_without_a_view_every_loop_is_at_iteration_zero() -> None:
    """compile_tree without a view puts every loop at iteration 0."""
    graph = compile_tree(
        Workflow(Loop(Loop(task("i"), id="b", until=False), id="a", until=False), name="w")
    )
    assert graph.node("i").iteration == (0, 0)


# -- skip_if -----------------------------------------------------------------------------------


def test_skip_if_marks_the_whole_subtree_skipped() -> None:
    """skip_if on a group marks every group and node under it skipped, and nothing else."""
    graph = compile_tree(
        Workflow(
            task("before"),
            Sequence(
                task("a"), Parallel(gate("b"), Loop(task("c"), id="L", until=False)), skip_if=True
            ),
            task("after"),
            name="w",
        )
    )
    assert {n.id: n.skipped for n in graph} == {
        "before": False,
        "a": True,
        "b": True,
        "c": True,
        "after": False,
    }
    assert {g.path: g.skipped for g in graph.groups} == {
        "Workflow(w)": False,
        "Workflow(w)/Sequence[1]": True,
        "Workflow(w)/Sequence[1]/Parallel[1]": True,
        "Workflow(w)/Sequence[1]/Parallel[1]/Loop(L)": True,
    }


@pytest.mark.parametrize(
    "make",
    [
        lambda: task("x", skip_if=True),
        lambda: gate("x", skip_if=True),
        lambda: Signal(id="x", output=int, skip_if=True),
        lambda: Parallel(task("x"), skip_if=True),
        lambda: Branch(if_=True, then=task("x"), skip_if=True),
        lambda: Loop(task("x"), id="L", until=False, skip_if=True),
    ],
)
def test_skip_if_on_any_component_skips_its_nodes(make: Any) -> None:
    """skip_if=True on nodes, Parallel, Branch and Loop marks the node under it skipped."""
    graph = compile_tree(Workflow(make(), name="w"))
    assert graph.node("x").skipped is True


def test_skipped_node_passes_its_predecessors_through() -> None:
    """A later sibling of a skipped node waits for what the skipped node waited for."""
    graph = compile_tree(Workflow(task("a"), task("b", skip_if=True), task("c"), name="w"))
    assert edges(graph) == {("a", "b", "sequence"), ("a", "c", "sequence")}


# -- edges -------------------------------------------------------------------------------------


def test_sequence_order_gives_sequence_edges() -> None:
    """Each child of a Sequence or Workflow waits for the previous one."""
    graph = compile_tree(Workflow(task("a"), Sequence(task("b"), task("c")), task("d"), name="w"))
    assert edges(graph) == {
        ("a", "b", "sequence"),
        ("b", "c", "sequence"),
        ("c", "d", "sequence"),
    }


def test_needs_give_needs_edges() -> None:
    """needs adds a needs edge from each named node, besides order edges."""
    graph = compile_tree(
        Workflow(
            Parallel(task("a"), task("b")),
            task("c", needs={"x": "a", "y": "b"}),
            name="w",
        )
    )
    assert {(s, t) for s, t, k in edges(graph) if k == "needs"} == {("a", "c"), ("b", "c")}


def test_parallel_children_share_predecessors_and_all_exits_feed_the_next() -> None:
    """Parallel children all wait for the previous sibling; the next waits for every exit."""
    graph = compile_tree(
        Workflow(
            task("a"),
            Parallel(task("b"), Sequence(task("c"), task("d")), Parallel()),
            task("e"),
            name="w",
        )
    )
    assert order_edges(graph) == {
        ("a", "b"),
        ("a", "c"),
        ("c", "d"),
        ("b", "e"),
        ("d", "e"),
    }


def test_empty_groups_pass_order_through() -> None:
    """An empty Sequence/Parallel or an unmounted branch leaves its neighbours linked."""
    graph = compile_tree(
        Workflow(
            task("a"),
            Sequence(),
            Parallel(),
            Branch(if_=False, then=task("x")),
            task("b"),
            name="w",
        )
    )
    assert order_edges(graph) == {("a", "b")}


def test_loop_is_an_edge_endpoint_by_its_id() -> None:
    """Predecessors point at the loop id and the loop id points at successors."""
    graph = compile_tree(
        Workflow(
            task("a"),
            Loop(task("b"), task("c"), id="L", until=False),
            task("d"),
            name="w",
        )
    )
    assert edges(graph) == {
        ("a", "L", "sequence"),
        ("b", "c", "loop"),
        ("L", "d", "sequence"),
    }


def test_loop_body_entries_have_no_incoming_order_edges() -> None:
    """The first body units of a loop wait for nothing but the loop itself."""
    graph = compile_tree(
        Workflow(
            task("a"),
            Loop(Parallel(task("b"), task("c")), task("d"), id="L", until=False),
            name="w",
        )
    )
    incoming = {e.target for e in graph.edges}
    assert "b" not in incoming
    assert "c" not in incoming
    assert edges(graph) == {
        ("a", "L", "sequence"),
        ("b", "d", "loop"),
        ("c", "d", "loop"),
    }
    assert graph.loops()["L"].exits == ("d",)


def test_nested_loops_are_endpoints_inside_their_outer_loop() -> None:
    """An inner loop is a unit of the outer body: loop edges go to and from its id."""
    graph = compile_tree(
        Workflow(
            Loop(
                task("a"),
                Loop(task("b"), task("c"), id="in", until=False),
                task("d"),
                id="out",
                until=False,
            ),
            task("z"),
            name="w",
        )
    )
    assert edges(graph) == {
        ("a", "in", "loop"),
        ("b", "c", "loop"),
        ("in", "d", "loop"),
        ("out", "z", "sequence"),
    }


def test_sequence_inside_a_loop_body_keeps_sequence_edges() -> None:
    """Order inside a nested Sequence in a loop body is sequence order, the body's is loop."""
    graph = compile_tree(
        Workflow(Loop(Sequence(task("a"), task("b")), task("c"), id="L", until=False), name="w")
    )
    assert edges(graph) == {("a", "b", "sequence"), ("b", "c", "loop")}


def test_needs_on_an_unmounted_node_is_a_dangling_edge() -> None:
    """A needs naming a node that is not mounted compiles, with a dangling needs edge."""
    graph = compile_tree(
        Workflow(
            Branch(if_=False, then=task("later")),
            task("reader", needs={"x": "later"}),
            name="w",
        )
    )
    assert "later" not in graph
    assert edges(graph) == {("later", "reader", "needs")}
    assert graph.node("reader").needs == {"x": "later"}
