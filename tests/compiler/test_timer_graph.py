"""Timers and policy gates in the graph: their kind, props and how each export draws them."""

from __future__ import annotations

from typing import Any

from smithers import Approval, ApprovalRequest, Signal, Timer, TimerFired, Workflow, render
from smithers import smithers as define


@define
def flow(ctx: Any) -> Any:
    """A timer, a signal with a timeout and a gate with a policy."""
    return Workflow(
        Timer(id="nap", duration="1h30m"),
        Signal(id="cb", output=int, timeout="30m", on_timeout="skip"),
        Approval(
            id="gate",
            request=ApprovalRequest(title="Go?"),
            quorum=2,
            timeout="4h",
            forbid_self=True,
        ),
        name="flow",
    )


def test_a_timer_lowers_to_a_timer_node_with_its_duration() -> None:
    """Timer becomes kind `timer`, output TimerFired, its duration in props."""
    graph = render(flow)
    nap = graph.by_id["nap"]
    assert (nap.kind, nap.output_type, nap.props) == ("timer", "TimerFired", {"duration": "1h30m"})
    assert graph.output_types()["nap"] is TimerFired
    assert graph.by_id["nap"].path == "Workflow(flow)/Timer(nap)"


def test_policies_and_signal_timeouts_are_graph_props() -> None:
    """A gate's policy and a signal's timeout are in the node props (and the hash)."""
    graph = render(flow)
    assert graph.by_id["cb"].props == {"timeout": 1800.0, "on_timeout": "skip"}
    policy = graph.by_id["gate"].props["policy"]
    assert (policy["quorum"], policy["timeout"], policy["on_timeout"]) == (2, 14400.0, "deny")


def test_every_export_draws_timers_apart() -> None:
    """Text tags [timer], Mermaid draws a stadium with its class, DOT an ellipse."""
    graph = render(flow)
    text = graph.to_text()
    assert "[timer] nap  -> TimerFired  duration=1h30m" in text
    assert "forbid_self=True  quorum=2  timeout=14400.0  on_timeout=deny" in text
    mermaid = graph.to_mermaid()
    assert 'n_nap(["nap: TimerFired"])' in mermaid
    assert "class n_nap timer" in mermaid
    assert "shape=ellipse" in graph.to_dot()
