"""Mermaid and DOT exports with node states: a colour per state, the state in each label."""

from __future__ import annotations

import pydot

from smithers import Approval, ApprovalRequest, Sequence, Signal, Task, Workflow
from smithers.compiler import Graph, compile_tree

STATES = {"a": "finished", "g": "waiting-approval", "x": "failed"}


def sample() -> Graph:
    """A task, a gate, a signal, a failed task and a skipped task."""
    return compile_tree(
        Workflow(
            Task(id="a", output=int, value=1),
            Approval(id="g", request=ApprovalRequest(title="ok?")),
            Sequence(Signal(id="s", output=str), Task(id="x", output=int, value=2)),
            Task(id="k", output=int, value=3, skip_if=True),
            name="w",
        )
    )


def test_mermaid_with_states_colours_each_node_by_its_state() -> None:
    """One classDef per state present (in state order) and one class line per state;
    unlisted nodes are pending; the kind colours give way to the state colours."""
    text = sample().to_mermaid(states={**STATES, "k": "skipped"})
    lines = text.splitlines()
    style = [line for line in lines if line.lstrip().startswith(("classDef", "class "))]
    assert style == [
        "  classDef s_pending fill:#ffffff,stroke:#9ca3af",
        "  classDef s_waiting_approval fill:#fef3c7,stroke:#b45309",
        "  classDef s_finished fill:#d1fae5,stroke:#047857",
        "  classDef s_failed fill:#fee2e2,stroke:#b91c1c",
        "  classDef s_skipped fill:#f3f4f6,stroke:#9ca3af,stroke-dasharray:4 3",
        "  classDef missing stroke-dasharray:4 3,fill:#fee2e2",
        "  class n_s s_pending",
        "  class n_g s_waiting_approval",
        "  class n_a s_finished",
        "  class n_x s_failed",
        "  class n_k s_skipped",
    ]
    assert '    n_g{{"g: ApprovalDecision [waiting-approval]"}}' in lines
    assert '      n_s[/"s: str [pending]"/]' in lines


def test_mermaid_without_states_is_unchanged() -> None:
    """Without states the export keeps its kind colours and plain labels."""
    text = sample().to_mermaid()
    assert "  class n_g approval" in text.splitlines()
    assert "s_" not in text.replace("n_s", "")
    assert text == sample().to_mermaid(states=None)


def test_dot_with_states_fills_each_node_with_its_state_colour() -> None:
    """Each node keeps its shape, is filled with its state's colour and shows the state."""
    text = sample().to_dot(states=STATES)
    nodes = [line.strip() for line in text.splitlines() if " [shape=" in line]
    assert nodes == [
        '"a" [shape=box, style="rounded,filled", fillcolor="#d1fae5", color="#047857", '
        'label="a\\ntask -> int\\n[finished]"];',
        '"g" [shape=hexagon, style="bold,filled", fillcolor="#fef3c7", color="#b45309", '
        'label="g\\napproval -> ApprovalDecision\\n[waiting-approval]"];',
        '"s" [shape=parallelogram, style="filled", fillcolor="#ffffff", color="#9ca3af", '
        'label="s\\nsignal -> str\\n[pending]"];',
        '"x" [shape=box, style="rounded,filled", fillcolor="#fee2e2", color="#b91c1c", '
        'label="x\\ntask -> int\\n[failed]"];',
        '"k" [shape=box, style="rounded,filled", fillcolor="#ffffff", color="#9ca3af", '
        'peripheries=1, fontcolor="#888888", label="k\\ntask -> int\\n[pending]"];',
    ]
    (parsed,) = pydot.graph_from_dot_data(text)
    assert parsed.get_name() == '"w"'


def test_dot_with_a_skipped_state_is_dashed() -> None:
    """A skipped node is filled grey and dashed."""
    text = sample().to_dot(states={"k": "skipped"})
    assert (
        '"k" [shape=box, style="rounded,filled,dashed", fillcolor="#f3f4f6", color="#9ca3af", '
        'peripheries=1, fontcolor="#888888", label="k\\ntask -> int\\n[skipped]"];'
    ) in [line.strip() for line in text.splitlines()]
