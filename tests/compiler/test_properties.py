"""Properties of the compiler over random component trees (strategies in strategies.py)."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from smithers import render, smithers
from smithers.compiler import Graph, compile_tree
from smithers.errors import CompileError
from tests.compiler.strategies import KIND_NAMES, TreeSpec, trees

CYCLE = re.compile(r"^Cycle through needs and Sequence order: (?P<chain>.+) at `(?P<path>[^`]+)`;")


def waited_loop(dep_loops: tuple[str, ...], reader_loops: tuple[str, ...]) -> str | None:
    """The outermost loop around a needs target that does not enclose the reader, if any."""
    shared = 0
    while (
        shared < min(len(dep_loops), len(reader_loops))
        and dep_loops[shared] == reader_loops[shared]
    ):
        shared += 1
    return dep_loops[shared] if shared < len(dep_loops) else None


def dependencies(graph_without_needs: Graph, spec: TreeSpec) -> dict[str, set[str]]:
    """Independent dependency relation: order edges, needs, loop containment, foreign loops.

    Order edges come from compiling the tree without needs (which cannot fail); needs, loop
    membership and which loop a needs must wait for come from the model.
    """
    units = {u.id: u for u in spec.units()}
    succ: dict[str, set[str]] = {uid: set() for uid in units}
    for edge in graph_without_needs.edges:
        succ[edge.source].add(edge.target)
    for unit in units.values():
        if unit.loops:
            succ[unit.id].add(unit.loops[-1])  # a loop ends only after its body
    for reader in spec.nodes():
        for _, dep in reader.spec.needs:  # type: ignore[union-attr]
            if dep not in units:
                continue  # a dangling needs waits for a node that is not mounted
            succ[dep].add(reader.id)
            outer = waited_loop(units[dep].loops, reader.loops)
            if outer is not None:
                succ[outer].add(reader.id)
    return succ


def has_cycle(succ: dict[str, set[str]]) -> bool:
    """Whether the relation has a cycle (Kahn's algorithm)."""
    indegree = dict.fromkeys(succ, 0)
    for targets in succ.values():
        for t in targets:
            indegree[t] += 1
    ready = [v for v, d in indegree.items() if d == 0]
    seen = 0
    while ready:
        vertex = ready.pop()
        seen += 1
        for t in succ[vertex]:
            indegree[t] -= 1
            if indegree[t] == 0:
                ready.append(t)
    return seen != len(succ)


@given(trees())
def test_compiling_twice_gives_equal_graphs_and_hashes(spec: TreeSpec) -> None:
    """Two compiles (and a render) of freshly built equal trees give equal graphs and hashes."""
    first = compile_tree(spec.element())
    second = compile_tree(spec.element())
    rendered = render(smithers(lambda ctx: spec.element()))
    assert first == second == rendered
    assert first.hash == second.hash == rendered.hash


@given(trees())
def test_nodes_mount_at_the_paths_the_model_predicts(spec: TreeSpec) -> None:
    """Node ids, kinds, paths, loops, iterations and skipped flags match the model."""
    graph = compile_tree(spec.element())
    assert [(n.id, n.kind, n.path, n.loops, n.iteration, n.skipped) for n in graph] == [
        (u.id, u.kind, u.path, u.loops, (0,) * len(u.loops), u.skipped) for u in spec.nodes()
    ]
    loops = {u.id: u.path for u in spec.units() if u.kind == "loop"}
    assert {name: group.path for name, group in graph.loops().items()} == loops


@given(trees())
def test_every_node_path_ends_with_kind_and_id(spec: TreeSpec) -> None:
    """Every node's path ends with Kind(id) and starts at the root."""
    graph = compile_tree(spec.element())
    for node in graph:
        assert node.path.endswith(f"/{KIND_NAMES[node.kind]}({node.id})")
        assert node.path.startswith(f"{graph.root}/")
        assert node.parent == node.path.rsplit("/", 1)[0]


@given(trees())
def test_every_approval_becomes_exactly_one_approval_node(spec: TreeSpec) -> None:
    """Each mounted Approval element is one node of kind approval; nothing else is."""
    graph = compile_tree(spec.element())
    expected = sorted(u.id for u in spec.nodes() if u.kind == "approval")
    approvals = sorted(n.id for n in graph if n.kind == "approval")
    assert approvals == expected
    assert len(set(approvals)) == len(approvals)
    for node_id in approvals:
        assert graph.node(node_id).output_type == "ApprovalDecision"


@given(trees())
def test_needs_edges_follow_needs(spec: TreeSpec) -> None:
    """Each mounted node's needs is one needs edge, dangling when the target is not mounted."""
    graph = compile_tree(spec.element())
    expected = sorted(
        (dep, u.id)
        for u in spec.nodes()
        for _, dep in u.spec.needs  # type: ignore[union-attr]
    )
    assert sorted((e.source, e.target) for e in graph.edges if e.kind == "needs") == expected
    mounted = {u.id for u in spec.units()}
    for edge in graph.edges:
        assert edge.target in mounted
        if edge.kind != "needs":
            assert edge.source in mounted


@given(trees(), st.integers(0, 2**32 - 1))
def test_flatten_and_drop_rules_do_not_change_the_graph(spec: TreeSpec, seed: int) -> None:
    """Children with None/False/True and nested lists/tuples/generators compile like clean ones."""
    clean = compile_tree(spec.element())
    noisy = compile_tree(spec.element(noise=seed))
    assert noisy == clean
    assert noisy.hash == clean.hash


@given(st.data())
def test_a_duplicate_id_is_reported_with_its_path(data: st.DataObject) -> None:
    """Renaming a later node or loop to an earlier id is refused naming both paths."""
    spec = data.draw(trees())
    units = spec.units()
    assume(len(units) >= 2)
    i, j = sorted(
        data.draw(st.lists(st.integers(0, len(units) - 1), min_size=2, max_size=2, unique=True))
    )
    earlier, later = units[i], units[j]
    renamed = spec.rename(later.id, earlier.id)
    head, _, _ = later.path.rpartition("/")
    kind = "Loop" if later.kind == "loop" else KIND_NAMES[later.kind]  # type: ignore[index]
    later_path = f"{head}/{kind}({earlier.id})"
    where = "the same place" if earlier.path == later_path else f"`{earlier.path}`"
    message = (
        f"Duplicate node id `{earlier.id}` at `{later_path}`; an element at {where} has it too; "
        "ids must be unique within a workflow."
    )
    with pytest.raises(CompileError, match=f"^{re.escape(message)}$"):
        compile_tree(renamed.element())


@given(st.sampled_from(["any", "across-loops"]).flatmap(lambda mode: trees(needs=mode)))
def test_graph_is_acyclic_or_the_cycle_is_named(spec: TreeSpec) -> None:
    """Compiling succeeds exactly when order+needs+loops is acyclic; else the cycle is named."""
    succ = dependencies(compile_tree(spec.without_needs().element()), spec)
    paths = {u.id: u.path for u in spec.units()}
    if has_cycle(succ):
        with pytest.raises(CompileError, match=CYCLE) as info:
            compile_tree(spec.element())
        found = CYCLE.match(str(info.value))
        assert found is not None
        chain = re.findall(r"`([^`]+)`", found["chain"])
        assert len(chain) >= 2
        assert chain[0] == chain[-1]
        for source, target in itertools.pairwise(chain):
            assert target in succ[source], f"{source} -> {target} is not a dependency"
        assert found["path"] == paths[chain[0]]
    else:
        graph = compile_tree(spec.element())
        graph_succ: dict[str, set[str]] = {uid: set() for uid in paths}
        for edge in graph.edges:
            if edge.source in graph_succ:
                graph_succ[edge.source].add(edge.target)
        for node in graph:
            if node.loops:
                graph_succ[node.id].add(node.loops[-1])
        assert not has_cycle(graph_succ)
        assert all(graph_succ[v] <= succ[v] for v in graph_succ)


@given(trees())
def test_trees_with_needs_only_on_earlier_nodes_always_compile(spec: TreeSpec) -> None:
    """Needs on earlier nodes never make a cycle, so such trees always compile."""
    graph = compile_tree(spec.element())
    assert len(graph) == len(spec.nodes())
