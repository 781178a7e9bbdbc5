"""Graph exports: the indented text tree, JSON, Mermaid and Graphviz DOT. Pure: no I/O."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import msgspec

from smithers.compiler.iterations import iteration_text

if TYPE_CHECKING:
    from smithers.compiler.graph import Graph, Group, Node

__all__ = ["STATE_COLOURS", "describe_group", "to_dot", "to_json", "to_mermaid", "to_text"]

_KIND_TAG = {"task": "[task]", "approval": "[approval]", "signal": "[signal]", "timer": "[timer]"}

# One colour per node state (fill, stroke), shared by Mermaid and DOT; a node the states
# do not mention is pending, as in the text tree.
STATE_COLOURS: dict[str, tuple[str, str]] = {
    "pending": ("#ffffff", "#9ca3af"),
    "in-progress": ("#e0e7ff", "#4338ca"),
    "waiting-approval": ("#fef3c7", "#b45309"),
    "waiting-signal": ("#e0f2fe", "#0369a1"),
    "waiting-timer": ("#ede9fe", "#6d28d9"),
    "finished": ("#d1fae5", "#047857"),
    "failed": ("#fee2e2", "#b91c1c"),
    "skipped": ("#f3f4f6", "#9ca3af"),
    "cancelled": ("#e5e7eb", "#4b5563"),
}


def _walk(graph: Graph) -> Iterator[tuple[int, bool, Node | Group]]:
    """Yield (depth, is_last, item) in tree order, groups before their children."""
    items: dict[str, Node | Group] = {n.path: n for n in graph.nodes}
    items.update(graph.by_path)
    stack: list[tuple[str, int, bool]] = [(graph.root, 0, True)]
    while stack:
        path, depth, last = stack.pop()
        item = items[path]
        yield depth, last, item
        children = getattr(item, "children", ()) if item.__class__.__name__ == "Group" else ()
        for i, child in reversed(list(enumerate(children))):
            stack.append((child, depth + 1, i == len(children) - 1))


def describe_group(group: Group) -> str:
    """One line for a group: its name in the path plus its settings."""
    head = group.path.rsplit("/", 1)[-1]
    bits: list[str] = []
    if group.kind == "parallel" and group.max_concurrency:
        bits.append(f"max_concurrency={group.max_concurrency}")
    if group.kind == "branch":
        taken = group.taken or "nothing"
        bits.append(f"if={group.condition} -> {taken}" + (" (frozen)" if group.frozen else ""))
    if group.kind == "loop":
        until = "callable" if group.until is None else str(group.until)
        bits.append(
            f"iteration {group.iteration[-1]}, until={until}, "
            f"max_iterations={group.max_iterations}, {group.on_max_reached}"
        )
    if group.skipped:
        bits.append("skipped")
    return head + (f"  ({'; '.join(bits)})" if bits else "")


def describe_node(node: Node) -> str:
    """One line for a node: kind tag, id, output type and the props that matter."""
    bits = [f"{_KIND_TAG[node.kind]} {node.id}"]
    if node.label != node.id:
        bits.append(f'"{node.label}"')
    bits.append(f"-> {node.output_type}")
    if node.iteration:
        bits.append("@" + iteration_text(node.iteration))
    props = {k: v for k, v in node.props.items() if k not in ("mode", "title", "policy")}
    bits.extend(f"{k}={v}" for k, v in props.items())
    policy = node.props.get("policy") or {}
    # Only what differs from a plain gate: the text tree stays one short line per node.
    plain_gate = {"forbid_self": False, "quorum": 1, "escalate": []}
    bits.extend(
        f"{k}={v}"
        for k, v in policy.items()
        if v is not None and plain_gate.get(k, object()) != v
        if k != "on_timeout" or policy.get("timeout") is not None
    )
    if node.needs:
        bits.append("needs " + ", ".join(sorted(set(node.needs.values()))))
    if node.skipped:
        bits.append("skipped")
    return "  ".join(bits)


def to_text(graph: Graph, states: Mapping[str, str] | None = None) -> str:
    """The graph as an indented tree; ``states`` (node id -> state) is appended per node."""
    lines: list[str] = []
    prefix: list[str] = []
    for depth, last, item in _walk(graph):
        del prefix[max(depth - 1, 0) :]
        branch = "" if depth == 0 else ("└── " if last else "├── ")
        if item.__class__.__name__ == "Group":
            text = describe_group(item)  # type: ignore[arg-type]
        else:
            text = describe_node(item)  # type: ignore[arg-type]
            if states is not None:
                text += f"  [{states.get(item.id, 'pending')}]"  # type: ignore[union-attr]
        lines.append("".join(prefix) + branch + text)
        if depth > 0:
            prefix.append("    " if last else "│   ")
    return "\n".join(lines)


def to_json(graph: Graph, *, indent: int | None = 2) -> str:
    """The graph as JSON: workflow, root, nodes, groups, edges and hash."""
    raw = msgspec.json.encode(graph.to_dict())
    if indent:
        raw = msgspec.json.format(raw, indent=indent)
    return raw.decode()


# -- Mermaid -----------------------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


class _Ids:
    """Sanitized, collision-free ids for one export."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.used: set[str] = set()

    def __call__(self, key: str, prefix: str) -> str:
        found = self.ids.get(key)
        if found is not None:
            return found
        base = prefix + _UNSAFE.sub("_", key.split(":", 1)[-1])
        name, n = base, 2
        while name in self.used:
            name, n = f"{base}_{n}", n + 1
        self.used.add(name)
        self.ids[key] = name
        return name


def _mermaid_label(text: str) -> str:
    return '"' + text.replace('"', "#quot;").replace("\n", " ") + '"'


def _state_class(state: str) -> str:
    return "s_" + state.replace("-", "_")


def to_mermaid(graph: Graph, states: Mapping[str, str] | None = None) -> str:
    """The graph as a Mermaid ``flowchart TD``.

    Groups are subgraphs; tasks are rectangles, approval gates hexagons, signals
    parallelograms; ``needs`` edges are dotted; a needs on an unmounted node points at a
    dashed placeholder.

    Args:
        graph: The graph.
        states: Node id -> state (a run's); each node then shows its state in its label
            and is coloured by state (``class ... s_finished``) instead of by kind.
    """
    ids = _Ids()
    lines = ["flowchart TD"]
    loops = graph.loops()
    depth_of: dict[str, int] = {}
    groups_seen = 0
    for depth, _last, item in _walk(graph):
        lines.extend(_mermaid_close(depth_of, depth))
        pad = "  " * (depth + 1)
        if item.__class__.__name__ == "Group":
            group: Group = item  # type: ignore[assignment]
            if group.kind == "loop":
                sid = ids(f"loop:{group.name}", "l_")
            else:  # groups have no id of their own; other ids carry n_/l_ prefixes
                groups_seen += 1
                sid = f"g{groups_seen}"
            lines.append(f"{pad}subgraph {sid}[{_mermaid_label(describe_group(group))}]")
            depth_of[group.path] = depth
        else:
            node: Node = item  # type: ignore[assignment]
            nid = ids(f"node:{node.id}", "n_")
            text = f"{node.label}: {node.output_type}"
            if states is not None:
                text += f" [{states.get(node.id, 'pending')}]"
            label = _mermaid_label(text)
            shape = {
                "task": f"[{label}]",
                "approval": "{{" + label + "}}",
                "signal": f"[/{label}/]",
                "timer": f"([{label}])",
            }[node.kind]
            lines.append(f"{pad}{nid}{shape}")
    lines.extend(_mermaid_close(depth_of, 0))
    missing: list[str] = []
    for edge in graph.edges:
        src = _endpoint(ids, edge.source, graph, loops)
        if src is None:
            src = ids(f"missing:{edge.source}", "missing_")
            if src not in missing:
                missing.append(src)
                lines.append(f"  {src}[{_mermaid_label(edge.source + ' (not mounted)')}]")
        dst = _endpoint(ids, edge.target, graph, loops)
        assert dst is not None
        arrow = " -. needs .-> " if edge.kind == "needs" else " --> "
        lines.append(f"  {src}{arrow}{dst}")
    defs, classes = _mermaid_states(graph, ids, states) if states is not None else ([], [])
    if states is not None:
        lines.extend(defs)
    else:
        lines.append("  classDef approval fill:#fff3cd,stroke:#b8860b,stroke-width:2px")
        lines.append("  classDef signal fill:#dbeafe,stroke:#1d4ed8")
        if any(n.kind == "timer" for n in graph.nodes):
            lines.append("  classDef timer fill:#ede9fe,stroke:#6d28d9")
        lines.append("  classDef skipped stroke-dasharray:4 3,color:#888")
    lines.append("  classDef missing stroke-dasharray:4 3,fill:#fee2e2")
    lines.extend(classes)
    if states is None:
        for kind in ("approval", "signal", "timer"):
            members = [ids(f"node:{n.id}", "n_") for n in graph.nodes if n.kind == kind]
            if members:
                lines.append(f"  class {','.join(members)} {kind}")
        skipped = [ids(f"node:{n.id}", "n_") for n in graph.nodes if n.skipped]
        if skipped:
            lines.append(f"  class {','.join(skipped)} skipped")
    if missing:
        lines.append(f"  class {','.join(missing)} missing")
    return "\n".join(lines) + "\n"


def _mermaid_states(
    graph: Graph, ids: _Ids, states: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """A classDef per state present, and the class line of each (in STATE_COLOURS order)."""
    members: dict[str, list[str]] = {}
    for node in graph.nodes:
        state = states.get(node.id, "pending")
        members.setdefault(state, []).append(ids(f"node:{node.id}", "n_"))
    order = {state: i for i, state in enumerate(STATE_COLOURS)}
    present = sorted(members, key=lambda state: (order.get(state, len(order)), state))
    defs, classes = [], []
    for state in present:
        fill, stroke = STATE_COLOURS.get(state, STATE_COLOURS["pending"])
        dashed = ",stroke-dasharray:4 3" if state in ("skipped", "cancelled") else ""
        defs.append(f"  classDef {_state_class(state)} fill:{fill},stroke:{stroke}{dashed}")
        classes.append(f"  class {','.join(members[state])} {_state_class(state)}")
    return defs, classes


def _mermaid_close(depth_of: dict[str, int], depth: int) -> list[str]:
    closing = [p for p, d in depth_of.items() if d >= depth]
    out = []
    for path in sorted(closing, key=lambda p: -depth_of[p]):
        out.append("  " * (depth_of[path] + 1) + "end")
        del depth_of[path]
    return out


def _endpoint(ids: _Ids, unit: str, graph: Graph, loops: Mapping[str, Group]) -> str | None:
    if unit in graph.by_id:
        return ids(f"node:{unit}", "n_")
    if unit in loops:
        return ids(f"loop:{unit}", "l_")
    return None


# -- DOT ---------------------------------------------------------------------------------------


def _dot(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_DOT_STYLE = {
    "task": 'shape=box, style="rounded"',
    "approval": 'shape=hexagon, style="filled,bold", fillcolor="#fff3cd", color="#b8860b"',
    "signal": 'shape=parallelogram, style="filled", fillcolor="#dbeafe", color="#1d4ed8"',
    "timer": 'shape=ellipse, style="filled", fillcolor="#ede9fe", color="#6d28d9"',
}


_DOT_SHAPE = {
    "task": ("box", "rounded"),
    "approval": ("hexagon", "bold"),
    "signal": ("parallelogram", ""),
    "timer": ("ellipse", ""),
}


def _dot_state_style(kind: str, state: str) -> str:
    shape, style = _DOT_SHAPE[kind]
    fill, stroke = STATE_COLOURS.get(state, STATE_COLOURS["pending"])
    styles = ",".join(s for s in (style, "filled", "dashed" if state == "skipped" else "") if s)
    return f'shape={shape}, style="{styles}", fillcolor="{fill}", color="{stroke}"'


def to_dot(graph: Graph, states: Mapping[str, str] | None = None) -> str:
    """The graph as a Graphviz digraph; groups are clusters, loops can be edge endpoints.

    Args:
        graph: The graph.
        states: Node id -> state (a run's); each node then shows its state in its label
            and is filled with its state's colour instead of its kind's.
    """
    lines = [
        f"digraph {_dot(graph.workflow)} {{",
        "  compound=true;",
        "  rankdir=TB;",
        '  node [fontname="Helvetica"];',
    ]
    open_depths: list[int] = []
    cluster_of_loop: dict[str, str] = {}
    anchor_of_loop: dict[str, str] = {}
    for n, (depth, _last, item) in enumerate(_walk(graph)):
        while open_depths and open_depths[-1] >= depth:
            lines.append("  " * (open_depths.pop() + 1) + "}")
        pad = "  " * (depth + 1)
        if item.__class__.__name__ == "Group":
            group: Group = item  # type: ignore[assignment]
            cluster = f"cluster_{n}"
            lines.append(f"{pad}subgraph {_dot(cluster)} {{")
            lines.append(f"{pad}  label={_dot(describe_group(group))};")
            if group.skipped:
                lines.append(f"{pad}  style=dashed;")
            if group.kind == "loop" and group.name:
                anchor = f"loop {group.name}"  # a space: no node id can collide with it
                cluster_of_loop[group.name] = cluster
                anchor_of_loop[group.name] = anchor
                lines.append(f'{pad}  {_dot(anchor)} [shape=point, width=0.05, label=""];')
            open_depths.append(depth)
        else:
            node: Node = item  # type: ignore[assignment]
            label = f"{node.label}\n{node.kind} -> {node.output_type}"
            if states is None:
                style = _DOT_STYLE[node.kind]
            else:
                state = states.get(node.id, "pending")
                style = _dot_state_style(node.kind, state)
                label += f"\n[{state}]"
            if node.skipped:
                style += ', peripheries=1, fontcolor="#888888"'
            lines.append(f"{pad}{_dot(node.id)} [{style}, label={_dot(label)}];")
    while open_depths:
        lines.append("  " * (open_depths.pop() + 1) + "}")
    missing: set[str] = set()
    for edge in graph.edges:
        attrs_: list[str] = []
        src, dst = edge.source, edge.target
        if src in anchor_of_loop:
            attrs_.append(f"ltail={_dot(cluster_of_loop[src])}")
            src = anchor_of_loop[src]
        elif src not in graph.by_id and src not in missing:
            missing.add(src)
            lines.append(
                f"  {_dot(src)} [shape=box, style=dashed, label={_dot(src + ' (not mounted)')}];"
            )
        if dst in anchor_of_loop:
            attrs_.append(f"lhead={_dot(cluster_of_loop[dst])}")
            dst = anchor_of_loop[dst]
        if edge.kind == "needs":
            attrs_.extend(["style=dashed", 'label="needs"'])
        suffix = f" [{', '.join(attrs_)}]" if attrs_ else ""
        lines.append(f"  {_dot(src)} -> {_dot(dst)}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"
