"""Graph exports checked structurally: DOT parsed by pydot, Mermaid line grammar, text tree."""

from __future__ import annotations

import json
import re
import warnings
from typing import Any

import pydot
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


def task(node_id: str, **props: Any) -> Task:
    """A value task with an int output."""
    return Task(id=node_id, output=int, value=1, **props)


def gate(node_id: str, **props: Any) -> Approval:
    """An approval with a static request."""
    return Approval(id=node_id, request=ApprovalRequest(title="ok?"), **props)


def sample() -> Graph:
    """A graph with every node kind, nested groups, a loop, needs and a dangling needs."""
    return compile_tree(
        Workflow(
            task("a", label='say "hi" \\ back'),
            Parallel(gate("g"), Signal(id="s", output=str), max_concurrency=2),
            Loop(task("b"), task("b2"), id="L", until=False),
            task("c", needs={"x": "a", "y": "ghost"}, skip_if=True),
            name="w",
        )
    )


# -- DOT ---------------------------------------------------------------------------------------


def unquote(text: str) -> str:
    """A DOT ID as written -> its value (quotes stripped, escapes undone)."""
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return re.sub(r'\\(["\\])', r"\1", text[1:-1])
    return text


def parse_dot(graph: Graph) -> pydot.Dot:
    """Parse the graph's DOT export; there must be exactly one digraph."""
    with warnings.catch_warnings():
        # pydot 4 builds its grammar with pyparsing 3.3's deprecated camelCase names.
        warnings.simplefilter("ignore", DeprecationWarning)
        parsed = pydot.graph_from_dot_data(graph.to_dot())
    assert parsed is not None
    assert len(parsed) == 1
    return parsed[0]


def dot_nodes(
    dot: pydot.Graph, clusters: tuple[str, ...] = ()
) -> list[tuple[str, dict[str, str], tuple[str, ...]]]:
    """Every node statement as (name, attributes, enclosing cluster labels), recursively."""
    found = [
        (
            unquote(n.get_name()),
            {k: unquote(v) for k, v in n.get_attributes().items()},
            clusters,
        )
        for n in dot.get_nodes()
        if unquote(n.get_name()) not in ("node", "edge", "graph")
    ]
    for sub in dot.get_subgraphs():
        label = unquote(sub.get_label() or "")
        found.extend(dot_nodes(sub, (*clusters, label)))
    return found


def dot_edges(dot: pydot.Graph) -> set[tuple[str, str, str]]:
    """Every edge as (source, target, style) with style "solid" when unset."""
    out = set()
    for edge in dot.get_edges():
        attrs = {k: unquote(v) for k, v in edge.get_attributes().items()}
        out.add(
            (
                unquote(edge.get_source()),
                unquote(edge.get_destination()),
                attrs.get("style", "solid"),
            )
        )
    return out


@pytest.fixture(scope="module")
def sample_dot() -> pydot.Dot:
    """The sample graph's DOT export, parsed once (pydot parsing is slow)."""
    return parse_dot(sample())


def test_dot_parses_as_one_named_digraph(sample_dot: pydot.Dot) -> None:
    """to_dot() is one digraph named after the workflow, with compound edges enabled."""
    dot = sample_dot
    assert dot.get_type() == "digraph"
    assert unquote(dot.get_name()) == "w"
    assert dot.get_attributes()["compound"] == "true"


def test_dot_node_shapes_show_the_kind(sample_dot: pydot.Dot) -> None:
    """Tasks are boxes, approvals hexagons and signals parallelograms."""
    shapes = {name: attrs.get("shape") for name, attrs, _ in dot_nodes(sample_dot)}
    assert shapes["a"] == "box"
    assert shapes["b"] == "box"
    assert shapes["g"] == "hexagon"
    assert shapes["s"] == "parallelogram"


def test_dot_labels_escape_quotes_and_backslashes(sample_dot: pydot.Dot) -> None:
    """A label with quotes and a backslash parses back to the same text."""
    labels = {name: attrs.get("label") for name, attrs, _ in dot_nodes(sample_dot)}
    assert labels["a"] == 'say "hi" \\ back\\ntask -> int'
    assert labels["g"] == "g\\napproval -> ApprovalDecision"
    assert labels["s"] == "s\\nsignal -> str"


def test_dot_groups_are_nested_clusters(sample_dot: pydot.Dot) -> None:
    """Each group is a cluster subgraph; nodes sit in their group's cluster."""
    dot = sample_dot
    assert all(unquote(s.get_name()).startswith("cluster_") for s in dot.get_subgraphs())
    where = {name: clusters for name, _, clusters in dot_nodes(dot)}
    loop_label = "Loop(L)  (iteration 0, until=False, max_iterations=5, return-last)"
    assert where["a"] == ("Workflow(w)",)
    assert where["g"] == ("Workflow(w)", "Parallel[1]  (max_concurrency=2)")
    assert where["s"] == ("Workflow(w)", "Parallel[1]  (max_concurrency=2)")
    assert where["b"] == ("Workflow(w)", loop_label)
    assert where["loop L"] == ("Workflow(w)", loop_label)
    assert where["ghost"] == ()


def test_dot_edges_follow_the_graph(sample_dot: pydot.Dot) -> None:
    """Order edges are solid, needs edges dashed; a loop is reached through its anchor."""
    assert dot_edges(sample_dot) == {
        ("a", "g", "solid"),
        ("a", "s", "solid"),
        ("g", "loop L", "solid"),
        ("s", "loop L", "solid"),
        ("b", "b2", "solid"),
        ("loop L", "c", "solid"),
        ("a", "c", "dashed"),
        ("ghost", "c", "dashed"),
    }


def test_dot_loop_edges_attach_to_the_loop_cluster(sample_dot: pydot.Dot) -> None:
    """Edges into and out of a loop carry lhead/ltail naming the loop's cluster."""
    dot = sample_dot
    loop_cluster = next(
        unquote(s.get_name())
        for s in dot.get_subgraphs()[0].get_subgraphs()
        if unquote(s.get_label()).startswith("Loop(L)")
    )
    heads = {
        unquote(e.get_source()): unquote(e.get("lhead"))
        for e in dot.get_edges()
        if e.get("lhead") is not None
    }
    tails = {
        unquote(e.get_destination()): unquote(e.get("ltail"))
        for e in dot.get_edges()
        if e.get("ltail") is not None
    }
    assert heads == {"g": loop_cluster, "s": loop_cluster}
    assert tails == {"c": loop_cluster}


def test_dot_dangling_needs_has_a_placeholder_node(sample_dot: pydot.Dot) -> None:
    """A needs on an unmounted node points at a dashed placeholder saying so."""
    nodes = {name: attrs for name, attrs, _ in dot_nodes(sample_dot)}
    assert nodes["ghost"]["style"] == "dashed"
    assert nodes["ghost"]["label"] == "ghost (not mounted)"


def test_dot_declares_every_node_once(sample_dot: pydot.Dot) -> None:
    """Every mounted node is declared exactly once, plus one anchor per loop."""
    names = [name for name, _, _ in dot_nodes(sample_dot)]
    assert sorted(names) == sorted(["a", "g", "s", "b", "b2", "c", "loop L", "ghost"])


def test_dot_node_names_never_collide_with_loop_anchors() -> None:
    """A node whose id looks like a loop anchor stays distinct from that loop."""
    graph = compile_tree(Workflow(Loop(task("a"), id="L", until=False), task("loop:L"), name="w"))
    dot = parse_dot(graph)
    names = [name for name, _, _ in dot_nodes(dot)]
    assert len(names) == len(set(names)), names
    assert all(src != dst for src, dst, _ in dot_edges(dot))


def test_dot_skipped_group_is_dashed() -> None:
    """A skipped group's cluster is drawn dashed."""
    graph = compile_tree(Workflow(Sequence(task("a"), skip_if=True), name="w"))
    inner = parse_dot(graph).get_subgraphs()[0].get_subgraphs()[0]
    assert unquote(inner.get_label()) == "Sequence[0]  (skipped)"
    assert inner.get("style") == "dashed"


# -- Mermaid -----------------------------------------------------------------------------------

ID = r"[A-Za-z0-9_]+"
LABEL = r'"[^"\n]*"'
MERMAID_LINES = {
    "subgraph": re.compile(rf"^ *subgraph (?P<id>{ID})\[(?P<label>{LABEL})\]$"),
    "end": re.compile(r"^ *end$"),
    "node": re.compile(
        rf"^ *(?P<id>{ID})(?P<shape>\[{LABEL}\]|\{{\{{{LABEL}\}}\}}|\[/{LABEL}/\])$"
    ),
    "edge": re.compile(rf"^ *(?P<src>{ID}) --> (?P<dst>{ID})$"),
    "needs": re.compile(rf"^ *(?P<src>{ID}) -\. needs \.-> (?P<dst>{ID})$"),
    "classDef": re.compile(rf"^ *classDef (?P<id>{ID}) \S.*$"),
    "class": re.compile(rf"^ *class (?P<members>{ID}(,{ID})*) (?P<id>{ID})$"),
}


def mermaid_lines(graph: Graph) -> list[tuple[str, re.Match[str]]]:
    """Classify each line after the header; fail on any line outside the grammar."""
    text = graph.to_mermaid()
    assert text.endswith("\n")
    lines = text.rstrip("\n").split("\n")
    assert lines[0] == "flowchart TD"
    out = []
    for line in lines[1:]:
        matches = [(kind, m) for kind, rx in MERMAID_LINES.items() if (m := rx.match(line))]
        assert len(matches) == 1, f"line outside the grammar: {line!r}"
        out.append(matches[0])
    return out


def mermaid_nodes(graph: Graph) -> dict[str, tuple[str, str]]:
    """Declared mermaid id -> (shape kind, label text)."""
    nodes = {}
    for kind, m in mermaid_lines(graph):
        if kind == "node":
            shape = m["shape"]
            shape_kind = (
                "hexagon"
                if shape.startswith("{{")
                else "parallelogram"
                if shape.startswith("[/")
                else "rect"
            )
            assert m["id"] not in nodes, f"{m['id']} declared twice"
            label = re.search(LABEL, shape)
            assert label is not None
            nodes[m["id"]] = (shape_kind, label.group(0)[1:-1])
    return nodes


def mermaid_ids(graph: Graph) -> dict[str, str]:
    """Node label (without ": type") -> declared Mermaid id."""
    return {label.rsplit(": ", 1)[0]: mid for mid, (_, label) in mermaid_nodes(graph).items()}


A_LABEL = "say #quot;hi#quot; \\ back"


def test_mermaid_every_line_follows_the_flowchart_grammar() -> None:
    """Each line is a header, subgraph, end, node, edge, classDef or class statement."""
    kinds = [kind for kind, _ in mermaid_lines(sample())]
    assert set(kinds) == set(MERMAID_LINES)
    assert kinds.count("subgraph") == kinds.count("end") == 3


def test_mermaid_subgraphs_are_balanced_and_nested() -> None:
    """subgraph/end pairs nest properly and close before the edges."""
    depth = 0
    seen_edge = False
    for kind, _ in mermaid_lines(sample()):
        if kind == "subgraph":
            assert not seen_edge
            depth += 1
        elif kind == "end":
            depth -= 1
            assert depth >= 0
        elif kind in ("edge", "needs"):
            seen_edge = True
    assert depth == 0


def test_mermaid_shapes_show_the_kind() -> None:
    """Tasks are rectangles, approvals hexagons, signals parallelograms."""
    by_label = {
        label.rsplit(": ", 1)[0]: shape for shape, label in mermaid_nodes(sample()).values()
    }
    assert by_label["g"] == "hexagon"
    assert by_label["s"] == "parallelogram"
    assert by_label["b"] == "rect"
    assert by_label["ghost (not mounted)"] == "rect"


def test_mermaid_labels_are_quoted_without_raw_quotes() -> None:
    """Labels are quoted; a quote inside a label is written as #quot;."""
    labels = [label for _, label in mermaid_nodes(sample()).values()]
    assert f"{A_LABEL}: int" in labels
    assert all('"' not in label for label in labels)


def test_mermaid_edges_connect_declared_ids() -> None:
    """Every edge endpoint is a declared node or subgraph, needs edges are dotted."""
    lines = mermaid_lines(sample())
    declared = {m["id"] for kind, m in lines if kind in ("node", "subgraph")}
    name = mermaid_ids(sample())
    name["a"] = name[A_LABEL]
    loop_id = next(m["id"] for kind, m in lines if kind == "subgraph" and "Loop(L)" in m["label"])
    order = {(m["src"], m["dst"]) for kind, m in lines if kind == "edge"}
    needs = {(m["src"], m["dst"]) for kind, m in lines if kind == "needs"}
    assert all(src in declared and dst in declared for src, dst in order | needs)
    assert order == {
        (name["a"], name["g"]),
        (name["a"], name["s"]),
        (name["g"], loop_id),
        (name["s"], loop_id),
        (name["b"], name["b2"]),
        (loop_id, name["c"]),
    }
    assert needs == {(name["a"], name["c"]), (name["ghost (not mounted)"], name["c"])}


def test_mermaid_classes_mark_gates_signals_skipped_and_missing() -> None:
    """classDef lines exist for each style and class lines list the right members."""
    lines = mermaid_lines(sample())
    name = mermaid_ids(sample())
    defined = {m["id"] for kind, m in lines if kind == "classDef"}
    assert defined == {"approval", "signal", "skipped", "missing"}
    classes = {m["id"]: set(m["members"].split(",")) for kind, m in lines if kind == "class"}
    assert classes == {
        "approval": {name["g"]},
        "signal": {name["s"]},
        "skipped": {name["c"]},
        "missing": {name["ghost (not mounted)"]},
    }


def test_mermaid_sanitized_ids_stay_unique() -> None:
    """Ids differing only by - _ . : still get distinct Mermaid ids."""
    graph = compile_tree(
        Workflow(
            task("a-b"),
            task("a_b"),
            task("a.b"),
            task("a:b"),
            task("a_b_2"),
            Loop(task("x"), id="a-b-loop", until=False),
            task("end"),
            name="w",
        )
    )
    ids = mermaid_ids(graph)
    assert set(ids) == {"a-b", "a_b", "a.b", "a:b", "a_b_2", "x", "end"}
    assert len(set(ids.values())) == 7
    assert "end" not in ids.values()
    subgraph_ids = [m["id"] for kind, m in mermaid_lines(graph) if kind == "subgraph"]
    assert len(set(subgraph_ids) | set(ids.values())) == len(subgraph_ids) + len(ids)


def test_mermaid_dangling_needs_shows_a_placeholder() -> None:
    """A needs on an unmounted node is drawn from a placeholder saying it is not mounted."""
    graph = compile_tree(Workflow(task("r", needs={"x": "not-yet"}), name="w"))
    nodes = mermaid_nodes(graph)
    placeholder = [mid for mid, (_, label) in nodes.items() if label == "not-yet (not mounted)"]
    assert len(placeholder) == 1
    lines = mermaid_lines(graph)
    assert [(m["src"], m["dst"]) for kind, m in lines if kind == "needs"] == [
        (placeholder[0], next(mid for mid, (_, lb) in nodes.items() if lb == "r: int"))
    ]


def test_mermaid_groups_use_descriptions_as_labels() -> None:
    """Subgraph labels describe the group: name plus settings."""
    labels = [json.loads(m["label"]) for kind, m in mermaid_lines(sample()) if kind == "subgraph"]
    assert labels == [
        "Workflow(w)",
        "Parallel[1]  (max_concurrency=2)",
        "Loop(L)  (iteration 0, until=False, max_iterations=5, return-last)",
    ]


# -- text tree ---------------------------------------------------------------------------------


def test_text_tree_shows_structure_and_kinds() -> None:
    """str(graph) is an indented tree with a distinct tag per node kind."""
    graph = compile_tree(
        Workflow(
            task("a"),
            Parallel(gate("g"), Signal(id="s", output=int, label="Callback"), max_concurrency=2),
            Loop(task("b", retries=1, needs={"x": "a"}), id="L", until=False),
            Branch(if_=False, then=task("t"), skip_if=True),
            name="w",
        )
    )
    assert str(graph) == "\n".join(
        [
            "Workflow(w)",
            "├── [task] a  -> int",
            "├── Parallel[1]  (max_concurrency=2)",
            "│   ├── [approval] g  -> ApprovalDecision  on_deny=fail",
            '│   └── [signal] s  "Callback"  -> int',
            "├── Loop(L)  (iteration 0, until=False, max_iterations=5, return-last)",
            "│   └── [task] b  -> int  @0  retries=1  needs a",
            "└── Branch[3]  (if=False -> nothing; skipped)",
        ]
    )


def test_text_tree_with_states() -> None:
    """to_text(states=...) appends each node's state, pending when not given."""
    graph = compile_tree(
        Workflow(task("a"), Sequence(gate("g"), task("c", skip_if=True)), name="w")
    )
    assert graph.to_text(states={"a": "finished", "g": "waiting-approval"}) == "\n".join(
        [
            "Workflow(w)",
            "├── [task] a  -> int  [finished]",
            "└── Sequence[1]",
            "    ├── [approval] g  -> ApprovalDecision  on_deny=fail  [waiting-approval]",
            "    └── [task] c  -> int  skipped  [pending]",
        ]
    )


def test_text_tree_names_components_and_branch_sides() -> None:
    """Components and branch sides appear under their path names."""

    @component
    def Stage() -> Element:
        return Branch(if_=True, then=Sequence(task("a")))

    assert str(compile_tree(Workflow(Stage(), name="w"))) == "\n".join(
        [
            "Workflow(w)",
            "└── Stage[0]",
            "    └── Branch[0]  (if=True -> then)",
            "        └── Sequence[then]",
            "            └── [task] a  -> int",
        ]
    )


@pytest.mark.parametrize("export", ["to_dot", "to_mermaid", "to_json", "to_text"])
def test_exports_are_deterministic(export: str) -> None:
    """Each export of equal graphs is identical text."""
    assert getattr(sample(), export)() == getattr(sample(), export)()
