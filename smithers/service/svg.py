"""The run's graph as an SVG picture, drawn in Python from the `Graph` and the node states:
no JavaScript, no network, no Graphviz binary. Nodes are laid out in layers (the longest
path from a start); gates are hexagons, signals parallelograms, timers stadiums, tasks
rectangles; the fill is the node's state. Everything drawn from the graph is escaped."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import assert_never
from urllib.parse import quote

from smithers.compiler.graph import Graph, Node, NodeKind

__all__ = ["STATE_COLOURS", "graph_svg"]

STATE_COLOURS = {
    "pending": "#eef0f3",
    "in-progress": "#b9d7ff",
    "waiting-approval": "#ffd866",
    "waiting-signal": "#ffbf8a",
    "finished": "#a8e0b8",
    "failed": "#f29b9b",
    "skipped": "#d9d9d9",
    "cancelled": "#c4c4c4",
}
_W, _H, _GX, _GY, _PAD = 168, 44, 28, 36, 12


def _endpoints(graph: Graph, unit: str, *, first: bool) -> list[str]:
    """Node ids an edge endpoint stands for: the node, or a loop's entry (or exit) nodes."""
    if unit in graph.by_id:
        return [unit]
    inside = [n.id for n in graph.nodes if unit in n.loops]
    inner = {(e.source, e.target) for e in graph.edges}
    if first:
        return [n for n in inside if not any((m, n) in inner for m in inside)]
    return [n for n in inside if not any((n, m) in inner for m in inside)]


def _layers(graph: Graph) -> tuple[dict[str, int], list[tuple[str, str, str]]]:
    """Each node's layer (longest path from a start) and the drawable edges."""
    edges: list[tuple[str, str, str]] = []
    for edge in graph.edges:
        for source in _endpoints(graph, edge.source, first=False):
            edges.extend(
                (source, target, edge.kind)
                for target in _endpoints(graph, edge.target, first=True)
                if target != source
            )
    layer = {node.id: 0 for node in graph.nodes}
    for _ in range(len(graph.nodes)):  # longest path; bounded, so a bad graph cannot spin
        moved = False
        for source, target, _kind in edges:
            if layer[target] < layer[source] + 1:
                layer[target] = layer[source] + 1
                moved = True
        if not moved:
            break
    return layer, edges


def _shape(kind: NodeKind, x: int, y: int, style: str) -> str:
    w, h = _W, _H
    match kind:
        case "task":
            return f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="4" {style}/>'
        case "approval":
            d = 14
            points = [(x + d, y), (x + w - d, y), (x + w, y + h / 2), (x + w - d, y + h)]
            points += [(x + d, y + h), (x, y + h / 2)]
            return f'<polygon points="{" ".join(f"{a},{b}" for a, b in points)}" {style}/>'
        case "signal":
            d = 14
            points = [(x + d, y), (x + w, y), (x + w - d, y + h), (x, y + h)]
            return f'<polygon points="{" ".join(f"{a},{b}" for a, b in points)}" {style}/>'
        case "timer":
            return f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="{h // 2}" {style}/>'
        case unknown:
            assert_never(unknown)


def _label(node: Node) -> str:
    text = node.label if node.label and node.label != node.id else node.id
    return text if len(text) <= 22 else text[:21] + "…"


def graph_svg(graph: Graph, states: Mapping[str, str], run_id: str) -> str:
    """The SVG markup of ``graph`` with each node filled by its state; requested gates link
    to their gate page."""
    layer, edges = _layers(graph)
    rows: dict[int, list[Node]] = {}
    for node in graph.nodes:
        rows.setdefault(layer[node.id], []).append(node)
    place: dict[str, tuple[int, int]] = {}
    widest = max((len(r) for r in rows.values()), default=1)
    for depth, row in rows.items():
        offset = (widest - len(row)) * (_W + _GX) // 2
        for i, node in enumerate(row):
            place[node.id] = (_PAD + offset + i * (_W + _GX), _PAD + depth * (_H + _GY))
    width = _PAD * 2 + widest * _W + (widest - 1) * _GX
    height = _PAD * 2 + max(len(rows), 1) * (_H + _GY) - _GY
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-label="Graph of run {escape(run_id)}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#555"/></marker></defs>',
    ]
    for source, target, kind in edges:
        (x1, y1), (x2, y2) = place[source], place[target]
        dash = ' stroke-dasharray="5 4"' if kind == "needs" else ""
        out.append(
            f'<line x1="{x1 + _W // 2}" y1="{y1 + _H}" x2="{x2 + _W // 2}" y2="{y2}" '
            f'stroke="#555" stroke-width="1.4"{dash} marker-end="url(#arrow)"/>'
        )
    for node in graph.nodes:
        x, y = place[node.id]
        state = states.get(node.id, "pending")
        fill = STATE_COLOURS.get(state, "#ffffff")
        dash = ' stroke-dasharray="4 3"' if state in ("skipped", "cancelled") else ""
        style = f'fill="{fill}" stroke="#333" stroke-width="1.5"{dash}'
        title = f"{node.id} ({node.kind}): {state}"
        shape = (
            f'<g class="node kind-{node.kind} state-{escape(state)}" '
            f'data-node="{escape(node.id)}" data-kind="{node.kind}" data-state="{escape(state)}">'
            f"<title>{escape(title)}</title>{_shape(node.kind, x, y, style)}"
            f'<text x="{x + _W // 2}" y="{y + 18}" text-anchor="middle" font-size="13">'
            f"{escape(_label(node))}</text>"
            f'<text x="{x + _W // 2}" y="{y + 34}" text-anchor="middle" font-size="11" '
            f'fill="#333">{escape(state)}</text></g>'
        )
        if node.kind == "approval" and state == "waiting-approval":
            href = f"/runs/{quote(run_id, safe='')}/gates/{quote(node.id, safe='')}"
            shape = f'<a href="{escape(href)}">{shape}</a>'
        out.append(shape)
    out.append("</svg>")
    return "".join(out)
