"""What a decision does to the workflow: on_deny fail / continue / skip, and approvals."""

from __future__ import annotations

from typing import Any

import pytest

import smithers
from smithers import (
    Approval,
    ApprovalDecision,
    ApprovalRequest,
    Loop,
    Parallel,
    Sequence,
    Task,
    Workflow,
    component,
)
from smithers import smithers as define
from smithers.store import KVStore


def states(store: KVStore, run_id: str) -> dict[str, str]:
    """Node id (with @iteration inside loops) -> durable state."""
    snapshot = store.load(run_id)
    assert snapshot is not None
    return {
        node_id + (f"@{'.'.join(map(str, it))}" if it else ""): record.state
        for (node_id, it), record in sorted(snapshot.nodes.items())
    }


def reasons(store: KVStore, run_id: str) -> dict[str, str | None]:
    """Node id -> the reason recorded with its state, for skipped nodes."""
    snapshot = store.load(run_id)
    assert snapshot is not None
    return {
        node_id + (f"@{'.'.join(map(str, it))}" if it else ""): record.reason
        for (node_id, it), record in sorted(snapshot.nodes.items())
        if record.state == "skipped"
    }


def gate(on_deny: Any, gate_id: str = "gate") -> Any:
    """A gate with a fixed request."""
    return Approval(id=gate_id, request=ApprovalRequest(title=f"{gate_id}?"), on_deny=on_deny)


def park_and_decide(
    store: KVStore, definition: Any, approved: bool, *, node: str = "gate", **kwargs: Any
) -> Any:
    """Run to the gate, record a decision by carol, resume, return the result."""
    first = smithers.run(definition, store=store, run_id="r")
    assert first.status == "waiting-approval"
    decide = smithers.approve if approved else smithers.deny
    decide("r", node, by="carol", store=store, **kwargs)
    return smithers.resume("r", store=store, definition=definition)


# -- fail ----------------------------------------------------------------------------------------


def test_deny_with_default_policy_fails_the_gate_and_the_run(store: KVStore) -> None:
    """on_deny defaults to fail: the gate fails, the run fails naming gate and decider."""

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(
            Task(id="before", output=int, value=1),
            Approval(id="gate", request=ApprovalRequest(title="Go?")),
            Task(id="after", output=int, value=2),
            name="wf",
        )

    result = park_and_decide(store, wf, False, note="QA is red")
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.type, result.error.node_id) == ("ApprovalDenied", "gate")
    assert result.error.message == "Gate `gate` was denied by carol: QA is red"
    assert result.outputs == {"before": 1}
    assert states(store, "r") == {"before": "finished", "gate": "failed"}
    assert store.output("r", "gate", ()) is None
    assert [(e.type, e.node_id) for e in store.events(run_id="r")] == [
        ("run.started", None),
        ("node.started", "before"),
        ("node.finished", "before"),
        ("approval.requested", "gate"),
        ("run.waiting", None),
        ("approval.decided", "gate"),
        ("run.resumed", None),
        ("node.failed", "gate"),
        ("run.failed", None),
    ]
    failed = [e for e in store.events(run_id="r") if e.type == "node.failed"]
    assert failed[0].data == {"error": "Gate `gate` was denied by carol: QA is red"}
    run = store.get_run("r")
    assert run is not None
    assert run.status == "failed"
    assert run.error is not None
    assert run.error.message == "Gate `gate` was denied by carol: QA is red"
    # A failed run stays failed: resuming it again runs nothing.
    again = smithers.resume("r", store=store, definition=wf)
    assert (again.status, again.outputs) == ("failed", {"before": 1})


def test_fail_message_without_a_note_names_only_the_decider(store: KVStore) -> None:
    """A denial without a note fails with 'Gate `x` was denied by WHO'."""

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(gate("fail"), name="wf")

    result = park_and_decide(store, wf, False)
    assert result.error is not None
    assert result.error.message == "Gate `gate` was denied by carol"


# -- continue ------------------------------------------------------------------------------------


def test_deny_with_continue_finishes_the_gate_with_the_denial_as_output(store: KVStore) -> None:
    """on_deny=continue: the gate finishes, its output is the denial, downstream runs."""

    @define
    def wf(ctx: Any) -> Any:
        decision = ctx.output_maybe("gate")
        return Workflow(
            Sequence(
                gate("continue"),
                Task(
                    id="read",
                    output=str,
                    needs={"d": "gate"},
                    run=lambda d: f"{d.approved}/{d.note}/{d.decided_by}",
                ),
                decision is not None and Task(id="branch", output=bool, value=decision is not None),
            ),
            Task(id="last", output=int, value=9),
            name="wf",
        )

    result = park_and_decide(store, wf, False, note="too risky")
    assert result.status == "finished"
    denial = result.outputs["gate"]
    assert isinstance(denial, ApprovalDecision)
    assert (denial.approved, denial.note, denial.decided_by) == (False, "too risky", "carol")
    assert denial.decided_at is not None
    assert result.outputs["read"] == "False/too risky/carol"
    assert result.outputs["branch"] is True
    assert result.outputs["last"] == 9
    assert states(store, "r") == {
        "branch": "finished",
        "gate": "finished",
        "last": "finished",
        "read": "finished",
    }
    [finished] = [
        e for e in store.events(run_id="r") if e.type == "node.finished" and e.node_id == "gate"
    ]
    assert finished.data == {"approved": False}


# -- approved gates always finish --------------------------------------------------------------


@pytest.mark.parametrize("on_deny", ["fail", "continue", "skip"])
def test_an_approved_gate_finishes_whatever_its_deny_policy(store: KVStore, on_deny: str) -> None:
    """Approval finishes the gate with the decision as output under every on_deny."""

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(
            Sequence(gate(on_deny), Task(id="after", output=int, value=1)),
            Task(id="last", output=int, value=2),
            name="wf",
        )

    result = park_and_decide(store, wf, True, note="ok")
    assert result.status == "finished"
    assert result.outputs["gate"].approved is True
    assert result.outputs["gate"].note == "ok"
    assert (result.outputs["after"], result.outputs["last"]) == (1, 2)
    assert states(store, "r") == {"after": "finished", "gate": "finished", "last": "finished"}


# -- skip ----------------------------------------------------------------------------------------


def test_skip_under_workflow_skips_the_rest_of_the_run(store: KVStore) -> None:
    """on_deny=skip directly under Workflow: later siblings and their subtrees are skipped."""

    @define
    def wf(ctx: Any) -> Any:
        decision = ctx.output_maybe("gate")
        return Workflow(
            Task(id="before", output=int, value=1),
            gate("skip"),
            decision and Task(id="uses-decision", output=int, value=0),
            Task(id="after", output=int, value=2),
            Sequence(
                Task(id="nested", output=int, value=3),
                Parallel(Task(id="deep", output=int, value=4)),
            ),
            name="wf",
        )

    result = park_and_decide(store, wf, False, note="not now")
    assert result.status == "finished"
    assert result.error is None
    assert result.outputs == {"before": 1}
    assert states(store, "r") == {
        "after": "skipped",
        "before": "finished",
        "deep": "skipped",
        "gate": "skipped",
        "nested": "skipped",
    }
    assert reasons(store, "r") == {
        "after": "denied: gate",
        "deep": "denied: gate",
        "gate": "denied by carol",
        "nested": "denied: gate",
    }
    skipped_gate = [
        e for e in store.events(run_id="r") if e.type == "node.skipped" and e.node_id == "gate"
    ]
    assert [e.data for e in skipped_gate] == [{"reason": "denied", "decided_by": "carol"}]
    assert store.output("r", "gate", ()) is None
    [record] = store.approvals("r")
    assert (record.status, record.decision["note"]) == ("denied", "not now")  # type: ignore[index]


def test_skip_in_a_sequence_skips_its_later_siblings_and_the_workflow_goes_on(
    store: KVStore,
) -> None:
    """on_deny=skip in a Sequence: the Sequence counts as done; what follows it runs."""

    @component
    def Release() -> Any:
        return Sequence(
            Task(id="tag", output=str, value="v1"), Task(id="push", output=str, value="ok")
        )

    @define
    def wf(ctx: Any) -> Any:
        decision = ctx.output_maybe("gate")
        return Workflow(
            Sequence(
                Task(id="build", output=int, value=1),
                gate("skip"),
                decision and Task(id="announce", output=str, value="decided"),
                Parallel(Task(id="p1", output=int, value=1), Task(id="p2", output=int, value=2)),
                Release(),
            ),
            Task(id="cleanup", output=str, needs={"b": "build"}, run=lambda b: f"cleaned {b}"),
            name="wf",
        )

    result = park_and_decide(store, wf, False)
    assert result.status == "finished"
    assert result.outputs == {"build": 1, "cleanup": "cleaned 1"}
    assert states(store, "r") == {
        "build": "finished",
        "cleanup": "finished",
        "gate": "skipped",
        "p1": "skipped",
        "p2": "skipped",
        "push": "skipped",
        "tag": "skipped",
    }


def test_skip_on_a_gate_inside_a_user_component_skips_the_components_later_siblings(
    store: KVStore,
) -> None:
    """A component is looked through: its gate's skip covers what follows it in the Sequence."""

    @component
    def ReleaseGate(name: str) -> Any:
        return Approval(id=name, request=ApprovalRequest(title=f"{name}?"), on_deny="skip")

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(
            Sequence(
                Task(id="a", output=int, value=1),
                ReleaseGate(name="gate"),
                Task(id="b", output=int, value=2),
            ),
            Task(id="c", output=int, value=3),
            name="wf",
        )

    result = park_and_decide(store, wf, False)
    assert result.status == "finished"
    assert result.outputs == {"a": 1, "c": 3}
    assert states(store, "r") == {
        "a": "finished",
        "b": "skipped",
        "c": "finished",
        "gate": "skipped",
    }


def test_skip_covers_siblings_that_mount_only_after_the_denial(store: KVStore) -> None:
    """A node that mounts later under a denied-skip gate's Sequence is skipped, never run."""
    ran: list[str] = []

    def late() -> str:
        ran.append("late")
        return "ran"

    @define
    def wf(ctx: Any) -> Any:
        other = ctx.output_maybe("other")
        return Workflow(
            Parallel(
                Sequence(
                    gate("skip", "gate"),
                    Task(id="sibling", output=int, value=1),
                    Sequence(other is not None and Task(id="late", output=str, run=late)),
                ),
                Approval(id="other", request=ApprovalRequest(title="Other?")),
            ),
            Task(id="end", output=int, value=3),
            name="wf",
        )

    first = smithers.run(wf, store=store, run_id="r")
    assert sorted(p.node_id for p in first.pending) == ["gate", "other"]
    smithers.deny("r", "gate", by="carol", store=store)
    middle = smithers.resume("r", store=store, definition=wf)
    assert middle.status == "waiting-approval"
    assert [p.node_id for p in middle.pending] == ["other"]
    assert states(store, "r")["sibling"] == "skipped"
    smithers.approve("r", "other", store=store)
    done = smithers.resume("r", store=store, definition=wf)
    assert done.status == "finished"
    assert ran == []
    assert "late" not in done.outputs
    assert states(store, "r")["late"] == "skipped"
    assert reasons(store, "r")["late"] == "denied: gate"
    assert done.outputs["end"] == 3


def test_skip_in_a_loop_body_ends_that_iteration_and_the_loop_goes_on(store: KVStore) -> None:
    """on_deny=skip in a Loop body skips the rest of that iteration; the next one runs."""

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(
            Loop(
                Task(id="work", output=int, run=lambda task: task.iteration[0]),
                gate("skip", "review"),
                Task(id="publish", output=int, needs={"w": "work"}, run=lambda w: w * 100),
                id="rounds",
                until=lambda c: len(c.outputs("work")) >= 2,
                max_iterations=5,
            ),
            Task(id="final", output=str, value="done"),
            name="wf",
        )

    first = smithers.run(wf, store=store, run_id="r")
    assert [(p.node_id, p.iteration) for p in first.pending] == [("review", (0,))]
    smithers.deny("r", "review", by="carol", store=store)
    second = smithers.resume("r", store=store, definition=wf)
    assert second.status == "waiting-approval"
    assert [(p.node_id, p.iteration) for p in second.pending] == [("review", (1,))]
    assert states(store, "r") == {
        "publish@0": "skipped",
        "review@0": "skipped",
        "review@1": "waiting-approval",
        "work@0": "finished",
        "work@1": "finished",
    }
    smithers.approve("r", "review", iteration=(1,), store=store)
    done = smithers.resume("r", store=store, definition=wf)
    assert done.status == "finished"
    assert done.outputs["publish"] == 100
    assert done.outputs["final"] == "done"
    assert store.output("r", "publish", (0,)) is None
    assert states(store, "r") == {
        "final": "finished",
        "publish@0": "skipped",
        "publish@1": "finished",
        "review@0": "skipped",
        "review@1": "finished",
        "work@0": "finished",
        "work@1": "finished",
    }


def test_a_need_on_a_deny_skipped_gate_skips_the_needing_task(store: KVStore) -> None:
    """A task outside the skipped Sequence that needs the skipped gate is skipped upstream."""

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(
            Sequence(gate("skip")),
            Task(id="audit", output=str, needs={"d": "gate"}, run=lambda d: str(d.approved)),
            Task(id="end", output=int, value=1),
            name="wf",
        )

    result = park_and_decide(store, wf, False)
    assert result.status == "finished"
    assert result.outputs == {"end": 1}
    assert states(store, "r") == {"audit": "skipped", "end": "finished", "gate": "skipped"}
    assert reasons(store, "r")["audit"] == "upstream-skipped: gate"


def test_skip_on_a_gate_directly_under_parallel_is_refused_at_render(store: KVStore) -> None:
    """on_deny=skip needs a sequential parent; under Parallel the run fails with CompileError."""

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(Parallel(gate("skip"), Task(id="t", output=int, value=1)), name="wf")

    result = smithers.run(wf, store=store, run_id="r")
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.type == "CompileError"
    assert "has on_deny='skip' but its parent is a Parallel" in result.error.message
    assert store.approvals("r") == []
