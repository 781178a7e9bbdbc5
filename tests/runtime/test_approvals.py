"""Approval gates in process: lifecycle, records, events, placement in the tree and refusals."""

from __future__ import annotations

import getpass
import re
import socket
from typing import Any

import msgspec
import pytest

import smithers
from smithers import (
    Approval,
    ApprovalDecision,
    ApprovalRequest,
    Branch,
    Loop,
    Parallel,
    Sequence,
    Task,
    TaskInfo,
    Vote,
    Workflow,
)
from smithers import smithers as define
from smithers.errors import (
    AlreadyDecidedError,
    AmbiguousGateError,
    ApprovalError,
    BuildError,
    GateNotRequestedError,
    NotAnApprovalError,
    UnknownGateError,
    UnknownRunError,
)
from smithers.store import KVStore

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class Build(msgspec.Struct):
    version: str
    plan: str


def kinds(store: KVStore, run_id: str) -> list[tuple[str, str | None]]:
    """The run's event log as (type, node_id) pairs."""
    return [(e.type, e.node_id) for e in store.events(run_id=run_id)]


def of_type(store: KVStore, run_id: str, kind: str) -> list[Any]:
    """The run's events of one type."""
    return [e for e in store.events(run_id=run_id) if e.type == kind]


def approval(store: KVStore, run_id: str, node_id: str, iteration: tuple[int, ...] = ()) -> Any:
    """The approval record of one gate."""
    found = [a for a in store.approvals(run_id) if (a.node_id, a.iteration) == (node_id, iteration)]
    assert len(found) == 1, found
    return found[0]


def node_state(store: KVStore, run_id: str, node_id: str, iteration: tuple[int, ...] = ()) -> str:
    """A node's durable state ('absent' when it never left pending)."""
    snapshot = store.load(run_id)
    assert snapshot is not None
    record = snapshot.nodes.get((node_id, iteration))
    return "absent" if record is None else record.state


@define
def deploy(ctx: Any) -> Any:
    decision = ctx.output_maybe("approve")
    return Workflow(
        Sequence(
            Task(id="build", output=Build, value=Build(version="1.2", plan="canary first")),
            Approval(
                id="approve",
                needs={"build": "build"},
                request=lambda build: ApprovalRequest(
                    title=f"Deploy {build.version}?",
                    summary=build.plan,
                    metadata={"risk": "low"},
                ),
            ),
            decision and Task(id="ship", output=str, value=f"shipped:{decision.approved}"),
        ),
        name="deploy",
    )


# -- lifecycle ---------------------------------------------------------------------------------


def test_gate_is_pending_until_it_becomes_runnable(store: KVStore) -> None:
    """While its predecessor runs, the gate has no approval record and no node record."""
    seen: list[tuple[list[Any], str]] = []

    def look(task: TaskInfo) -> int:
        seen.append((store.approvals(task.run_id), node_state(store, task.run_id, "gate")))
        return 1

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(
            Task(id="first", output=int, run=look),
            Approval(id="gate", request=ApprovalRequest(title="Go?")),
            name="wf",
        )

    result = smithers.run(wf, store=store, run_id="r")
    assert seen == [([], "absent")]
    assert result.status == "waiting-approval"


def test_reaching_a_gate_commits_request_waits_and_parks(store: KVStore) -> None:
    """Reaching a gate writes the requested record, the waiting node, the event, then parks."""
    result = smithers.run(deploy, store=store, run_id="r")
    assert result.status == "waiting-approval"
    assert result.outputs == {"build": Build(version="1.2", plan="canary first")}
    assert len(result.pending) == 1
    pending = result.pending[0]
    assert (pending.node_id, pending.iteration, pending.kind) == ("approve", (), "approval")
    assert pending.request == ApprovalRequest(
        title="Deploy 1.2?", summary="canary first", metadata={"risk": "low"}
    )
    record = approval(store, "r", "approve")
    assert record.status == "requested"
    assert record.request == {
        "title": "Deploy 1.2?",
        "summary": "canary first",
        "metadata": {"risk": "low"},
    }
    assert record.on_deny == "fail"
    assert ISO_UTC.match(record.requested_at)
    assert pending.waiting_since == record.requested_at
    assert (record.decision, record.decided_at, record.decided_by) == (None, None, None)
    assert node_state(store, "r", "approve") == "waiting-approval"
    assert node_state(store, "r", "ship") == "absent"
    assert kinds(store, "r") == [
        ("run.started", None),
        ("node.started", "build"),
        ("node.finished", "build"),
        ("approval.requested", "approve"),
        ("run.waiting", None),
    ]
    [requested] = of_type(store, "r", "approval.requested")
    assert requested.data == {"request": record.request, "on_deny": "fail"}
    assert requested.iteration == ()
    [waiting] = of_type(store, "r", "run.waiting")
    assert waiting.data == {"status": "waiting-approval", "pending": ["approve"]}
    run = store.get_run("r")
    assert run is not None
    assert run.status == "waiting-approval"
    assert run.lease is None  # parked: no process owns it
    assert [(r.run_id, a.node_id) for r, a in store.requested_gates()] == [("r", "approve")]


def test_approving_records_the_audit_trail_and_resume_finishes(store: KVStore) -> None:
    """approve() records decision, who/when/where; resume applies it and the gate finishes."""
    smithers.run(deploy, store=store, run_id="r")
    before = store.last_seq()
    record = smithers.approve("r", "approve", note="Ship it", by="alice", store=store)
    assert record.status == "approved"
    assert record.decided_by == "alice"
    assert record.recorded_by == getpass.getuser()
    assert record.recorded_on == socket.gethostname()
    assert ISO_UTC.match(record.decided_at)
    assert record.decided_at >= record.requested_at
    assert record.decision == {
        "approved": True,
        "note": "Ship it",
        "decided_by": "alice",
        "decided_at": record.decided_at,
        "votes": [{"by": "alice", "approved": True, "note": "Ship it", "at": record.decided_at}],
    }
    assert record.request == {
        "title": "Deploy 1.2?",
        "summary": "canary first",
        "metadata": {"risk": "low"},
    }
    assert approval(store, "r", "approve") == record
    decided = store.events(after=before, run_id="r")
    assert [(e.type, e.node_id, e.iteration) for e in decided] == [
        ("approval.decided", "approve", ())
    ]
    assert decided[0].data == {
        "decision": record.decision,
        "recorded_by": getpass.getuser(),
        "recorded_on": socket.gethostname(),
    }
    # Recording only: the gate still waits until the run is resumed.
    assert node_state(store, "r", "approve") == "waiting-approval"
    assert store.requested_gates() == []

    done = smithers.resume("r", store=store, definition=deploy)
    assert done.status == "finished"
    assert done.error is None
    assert done.pending == ()
    assert done.outputs["approve"] == ApprovalDecision(
        approved=True,
        note="Ship it",
        decided_by="alice",
        decided_at=record.decided_at,
        votes=(Vote(by="alice", approved=True, note="Ship it", at=record.decided_at),),
    )
    assert done.outputs["ship"] == "shipped:True"
    assert node_state(store, "r", "approve") == "finished"
    assert [(e.type, e.node_id) for e in store.events(after=decided[0].seq, run_id="r")] == [
        ("run.resumed", None),
        ("node.finished", "approve"),
        ("node.started", "ship"),
        ("node.finished", "ship"),
        ("run.finished", None),
    ]
    raw = store.output("r", "approve", ())
    assert raw is not None
    assert msgspec.msgpack.decode(raw, type=ApprovalDecision) == done.outputs["approve"]
    # Nothing is overwritten: the record keeps its request and decision after the run ends.
    assert approval(store, "r", "approve") == record


def test_decider_defaults_to_smithers_actor_then_os_user(
    store: KVStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decider defaults to $SMITHERS_ACTOR, else the OS user; the recorder is the OS user."""
    smithers.run(deploy, store=store, run_id="env")
    monkeypatch.setenv("SMITHERS_ACTOR", "deploy-bot")
    record = smithers.approve("env", store=store)
    assert (record.decided_by, record.recorded_by) == ("deploy-bot", getpass.getuser())
    assert record.decision is not None
    assert record.decision["note"] is None
    monkeypatch.delenv("SMITHERS_ACTOR")
    smithers.run(deploy, store=store, run_id="user")
    record = smithers.deny("user", store=store)
    assert (record.decided_by, record.recorded_by) == (getpass.getuser(), getpass.getuser())


def test_request_function_runs_once_and_its_result_is_never_recomputed(store: KVStore) -> None:
    """The request function is called once; resumes and the decision reuse the stored request."""
    calls: list[int] = []
    source = {"title": "first"}

    def request(n: int) -> ApprovalRequest:
        calls.append(n)
        return ApprovalRequest(title=source["title"], metadata={"n": n})

    @define
    def wf(ctx: Any) -> Any:
        decision = ctx.output_maybe("gate")
        return Workflow(
            Task(id="n", output=int, value=7),
            Approval(id="gate", needs={"n": "n"}, request=request, on_deny="continue"),
            decision and Task(id="after", output=bool, value=decision.approved),
            name="wf",
        )

    smithers.run(wf, store=store, run_id="r")
    source["title"] = "changed"
    for _ in range(3):
        again = smithers.resume("r", store=store, definition=wf)
        assert again.status == "waiting-approval"
        assert again.pending[0].request == ApprovalRequest(title="first", metadata={"n": 7})
    assert calls == [7]
    assert len(of_type(store, "r", "approval.requested")) == 1
    assert len(of_type(store, "r", "run.resumed")) == 3
    smithers.deny("r", "gate", store=store)
    done = smithers.resume("r", store=store, definition=wf)
    assert done.status == "finished"
    assert done.outputs["after"] is False
    assert calls == [7]
    assert approval(store, "r", "gate").request == {"title": "first", "metadata": {"n": 7}}


def test_request_function_that_raises_fails_the_gate_and_the_run(store: KVStore) -> None:
    """A raising request function fails the gate and the run, naming the gate and the error."""

    def request(n: int) -> ApprovalRequest:
        raise RuntimeError(f"no summary for {n}")

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(
            Task(id="n", output=int, value=3),
            Approval(id="gate", needs={"n": "n"}, request=request),
            Task(id="after", output=int, value=1),
            name="wf",
        )

    result = smithers.run(wf, store=store, run_id="r")
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.node_id == "gate"
    assert result.error.type == "RuntimeError"
    assert result.error.message == (
        "The request function of gate `gate` raised RuntimeError: no summary for 3"
    )
    assert node_state(store, "r", "gate") == "failed"
    assert node_state(store, "r", "after") == "absent"
    assert store.approvals("r") == []
    assert kinds(store, "r")[-2:] == [("node.failed", "gate"), ("run.failed", None)]
    assert result.outputs == {"n": 3}


@pytest.mark.parametrize(
    ("returned", "pattern"),
    [
        ("Deploy?", r"gate `gate` returned a value that.*Expected `object`, got `str`"),
        (
            {"title": 5},
            r"gate `gate` returned a value that.*Expected `str`, got `int` - at `\$\.title`",
        ),
        (
            {"summary": "no title"},
            r"gate `gate` returned a value that.*missing required field `title`",
        ),
    ],
)
def test_request_function_returning_the_wrong_type_fails_the_gate(
    store: KVStore, returned: Any, pattern: str
) -> None:
    """A request function's result is validated into ApprovalRequest; a mismatch fails the gate."""

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(Approval(id="gate", request=lambda: returned), name="wf")

    result = smithers.run(wf, store=store, run_id="r")
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.node_id == "gate"
    assert result.error.type == "ValidationError"
    assert re.search(pattern, result.error.message), result.error.message
    assert node_state(store, "r", "gate") == "failed"
    assert store.approvals("r") == []


def test_request_function_result_may_be_a_dict_validated_into_a_request(store: KVStore) -> None:
    """A request function may return a mapping; its validated form is what gets persisted."""

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(
            Approval(id="gate", request=lambda: {"title": "Go?", "metadata": {"k": [1, 2]}}),
            name="wf",
        )

    result = smithers.run(wf, store=store, run_id="r")
    assert result.pending[0].request == ApprovalRequest(title="Go?", metadata={"k": [1, 2]})
    assert approval(store, "r", "gate").request == {"title": "Go?", "metadata": {"k": [1, 2]}}


def test_a_gate_can_be_decided_while_other_branches_still_run(store: KVStore) -> None:
    """A decision recorded while the owner runs a sibling is applied without parking."""
    observed: list[Any] = []

    def decide_meanwhile(task: TaskInfo) -> str:
        observed.append(node_state(store, task.run_id, "gate"))
        observed.append(store.get_run(task.run_id).status)  # type: ignore[union-attr]
        smithers.approve(task.run_id, "gate", by="erin", store=store)
        return "slow done"

    @define
    def wf(ctx: Any) -> Any:
        decision = ctx.output_maybe("gate")
        return Workflow(
            Parallel(
                Approval(id="gate", request=ApprovalRequest(title="Go?")),
                Task(id="slow", output=str, run=decide_meanwhile),
            ),
            decision and Task(id="after", output=str, value=f"by {decision.decided_by}"),
            name="wf",
        )

    result = smithers.run(wf, store=store, run_id="r")
    assert observed == ["waiting-approval", "running"]
    assert result.status == "finished"
    assert result.outputs["after"] == "by erin"
    assert of_type(store, "r", "run.waiting") == []
    assert of_type(store, "r", "run.resumed") == []
    assert [e.type for e in store.events(run_id="r") if e.node_id == "gate"] == [
        "approval.requested",
        "approval.decided",
        "node.finished",
    ]


# -- placement in the tree ---------------------------------------------------------------------


def test_parallel_gates_are_requested_together_and_decided_independently(store: KVStore) -> None:
    """Two gates in Parallel branches are both requested and each is decided on its own."""

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(
            Parallel(
                Sequence(
                    Approval(id="left", request=ApprovalRequest(title="Left?")),
                    Task(
                        id="after-left", output=bool, needs={"d": "left"}, run=lambda d: d.approved
                    ),
                ),
                Sequence(
                    Approval(
                        id="right", request=ApprovalRequest(title="Right?"), on_deny="continue"
                    ),
                    Task(
                        id="after-right",
                        output=bool,
                        needs={"d": "right"},
                        run=lambda d: d.approved,
                    ),
                ),
            ),
            name="wf",
        )

    first = smithers.run(wf, store=store, run_id="r")
    assert [(p.node_id, p.request.title) for p in first.pending] == [  # type: ignore[union-attr]
        ("left", "Left?"),
        ("right", "Right?"),
    ]
    assert sorted(a.node_id for _, a in store.requested_gates()) == ["left", "right"]
    with pytest.raises(AmbiguousGateError, match=r"2 requested gates \(`left`, `right`\)"):
        smithers.approve("r", store=store)
    smithers.approve("r", "left", by="a", store=store)
    middle = smithers.resume("r", store=store, definition=wf)
    assert middle.status == "waiting-approval"
    assert [p.node_id for p in middle.pending] == ["right"]
    assert middle.outputs["after-left"] is True
    assert "after-right" not in middle.outputs
    smithers.deny("r", store=store)  # the only requested gate now: no node needed
    done = smithers.resume("r", store=store, definition=wf)
    assert done.status == "finished"
    assert done.outputs["after-right"] is False
    assert [(a.node_id, a.status) for a in store.approvals("r")] == [
        ("left", "approved"),
        ("right", "denied"),
    ]


def test_gates_in_loop_iterations_are_requested_and_decided_per_iteration(
    store: KVStore,
) -> None:
    """A gate in a Loop body is requested once per iteration and decided by its iteration."""
    calls: list[int] = []

    def request(draft: int) -> ApprovalRequest:
        calls.append(draft)
        return ApprovalRequest(title=f"Accept draft {draft}?")

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(
            Loop(
                Task(id="draft", output=int, run=lambda task: task.iteration[0] * 10),
                Approval(
                    id="review", needs={"draft": "draft"}, request=request, on_deny="continue"
                ),
                id="rounds",
                until=lambda c: any(d.approved for d in c.outputs("review")),
                max_iterations=4,
            ),
            Task(id="final", output=int, needs={"draft": "draft"}, run=lambda draft: draft),
            name="wf",
        )

    first = smithers.run(wf, store=store, run_id="r")
    assert [(p.node_id, p.iteration) for p in first.pending] == [("review", (0,))]
    with pytest.raises(GateNotRequestedError, match=r"`review` iteration 1 of run `r`"):
        smithers.approve("r", "review", iteration=(1,), store=store)
    smithers.deny("r", "review", iteration=(0,), note="again", store=store)
    second = smithers.resume("r", store=store, definition=wf)
    assert [(p.node_id, p.iteration) for p in second.pending] == [("review", (1,))]
    assert second.pending[0].request == ApprovalRequest(title="Accept draft 10?")
    smithers.approve("r", "review", store=store)  # iteration found: the requested one
    done = smithers.resume("r", store=store, definition=wf)
    assert done.status == "finished"
    assert done.outputs["final"] == 10
    assert calls == [0, 10]
    assert [(a.node_id, a.iteration, a.status) for a in store.approvals("r")] == [
        ("review", (0,), "denied"),
        ("review", (1,), "approved"),
    ]
    assert [(e.type, e.iteration) for e in store.events(run_id="r") if e.node_id == "review"] == [
        ("approval.requested", (0,)),
        ("approval.decided", (0,)),
        ("node.finished", (0,)),
        ("approval.requested", (1,)),
        ("approval.decided", (1,)),
        ("node.finished", (1,)),
    ]
    with pytest.raises(
        AlreadyDecidedError, match=r"`review` iteration 0 of run `r` was already denied"
    ):
        smithers.approve("r", "review", iteration=(0,), store=store)


def test_gate_in_nested_sequences_blocks_only_what_follows_it(store: KVStore) -> None:
    """A gate deep in nested Sequences waits after its predecessors; later work waits on it."""

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(
            Sequence(
                Task(id="a", output=int, value=1),
                Sequence(
                    Task(id="b", output=int, value=2),
                    Sequence(Approval(id="gate", request=ApprovalRequest(title="Deep?"))),
                    Task(id="c", output=int, value=3),
                ),
                Task(id="d", output=int, value=4),
            ),
            name="wf",
        )

    parked = smithers.run(wf, store=store, run_id="r")
    assert parked.outputs == {"a": 1, "b": 2}
    assert [p.node_id for p in parked.pending] == ["gate"]
    smithers.approve("r", "gate", store=store)
    done = smithers.resume("r", store=store, definition=wf)
    assert done.status == "finished"
    assert {k: v for k, v in done.outputs.items() if k != "gate"} == {
        "a": 1,
        "b": 2,
        "c": 3,
        "d": 4,
    }


def test_gate_under_a_branch_is_requested_only_on_the_taken_side(store: KVStore) -> None:
    """Only the mounted side of a Branch can hold a requested gate."""

    @define
    def wf(ctx: Any) -> Any:
        risky = ctx.output_maybe("risk")
        return Workflow(
            Task(id="risk", output=bool, value=True),
            risky is not None
            and Branch(
                if_=risky,
                then=Approval(id="careful", request=ApprovalRequest(title="Risky: sure?")),
                else_=Approval(id="quick", request=ApprovalRequest(title="Fine?")),
            ),
            name="wf",
        )

    result = smithers.run(wf, store=store, run_id="r")
    assert [p.node_id for p in result.pending] == ["careful"]
    assert [a.node_id for a in store.approvals("r")] == ["careful"]
    with pytest.raises(
        UnknownGateError, match=r"Run `r` has no node `quick`; its gates: `careful`"
    ):
        smithers.approve("r", "quick", store=store)


# -- withdrawn gates ---------------------------------------------------------------------------


def test_gate_that_unmounts_is_withdrawn(store: KVStore) -> None:
    """A requested gate whose condition stops holding is withdrawn and can no longer be decided."""

    @define
    def wf(ctx: Any) -> Any:
        checked = ctx.output_maybe("check")
        return Workflow(
            Parallel(
                Task(id="check", output=str, run=lambda: "clean"),
                checked is None
                and Approval(id="manual", request=ApprovalRequest(title="Approve by hand?")),
            ),
            name="wf",
        )

    result = smithers.run(wf, store=store, run_id="r")
    assert result.status == "finished"
    record = approval(store, "r", "manual")
    assert record.status == "withdrawn"
    assert record.withdrawn_because == "unmounted"
    assert ISO_UTC.match(record.withdrawn_at)
    assert record.request == {"title": "Approve by hand?"}
    assert record.decision is None
    assert node_state(store, "r", "manual") == "cancelled"
    assert [(e.type, e.data) for e in store.events(run_id="r") if e.node_id == "manual"] == [
        ("approval.requested", {"request": {"title": "Approve by hand?"}, "on_deny": "fail"}),
        ("approval.withdrawn", {"reason": "unmounted"}),
        ("node.cancelled", {"reason": "unmounted"}),
    ]
    assert store.requested_gates() == []
    with pytest.raises(GateNotRequestedError, match=r"has not been requested \(it was withdrawn\)"):
        smithers.approve("r", "manual", store=store)


def test_a_gate_mounted_again_after_withdrawal_is_requested_afresh_keeping_history(
    store: KVStore,
) -> None:
    """Withdrawn, then mounted again: a new request; the withdrawn record is kept in previous."""

    @define
    def wf(ctx: Any) -> Any:
        a, b = ctx.output_maybe("a"), ctx.output_maybe("b")
        return Workflow(
            Parallel(
                Sequence(Task(id="a", output=int, value=1), Task(id="b", output=int, value=2)),
                (a is None or b is not None)
                and Approval(id="gate", request=ApprovalRequest(title="Again?")),
            ),
            name="wf",
        )

    result = smithers.run(wf, store=store, run_id="r")
    assert [p.node_id for p in result.pending] == ["gate"]
    assert [e.type for e in store.events(run_id="r") if e.node_id == "gate"] == [
        "approval.requested",
        "approval.withdrawn",
        "node.cancelled",
        "approval.requested",
    ]
    record = approval(store, "r", "gate")
    assert record.status == "requested"
    [earlier] = record.previous
    assert {k: earlier[k] for k in ("status", "request", "withdrawn_because")} == {
        "status": "withdrawn",
        "request": {"title": "Again?"},
        "withdrawn_because": "unmounted",
    }
    assert earlier["requested_at"] < record.requested_at
    smithers.approve("r", "gate", store=store)
    done = smithers.resume("r", store=store, definition=wf)
    assert done.status == "finished"
    assert approval(store, "r", "gate").previous == record.previous


def test_a_requested_gate_freezes_its_branch_side(store: KVStore) -> None:
    """A Branch whose side holds a requested gate keeps that side when its condition flips."""

    @define
    def wf(ctx: Any) -> Any:
        checked = ctx.output_maybe("check")
        return Workflow(
            Parallel(
                Task(id="check", output=str, value="clean"),
                Branch(
                    if_=checked is None,
                    then=Approval(id="manual", request=ApprovalRequest(title="By hand?")),
                    else_=Task(id="auto", output=str, value="auto"),
                ),
            ),
            name="wf",
        )

    result = smithers.run(wf, store=store, run_id="r")
    assert result.status == "waiting-approval"
    assert [p.node_id for p in result.pending] == ["manual"]
    assert approval(store, "r", "manual").status == "requested"
    assert node_state(store, "r", "auto") == "absent"
    smithers.approve("r", "manual", store=store)
    done = smithers.resume("r", store=store, definition=wf)
    assert done.status == "finished"
    assert "auto" not in done.outputs


def test_every_requested_gate_is_withdrawn_when_the_run_fails(store: KVStore) -> None:
    """A failing run withdraws all its requested gates (reason run-failed)."""

    def boom() -> int:
        raise ValueError("disk full")

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(
            Parallel(
                Approval(id="g1", request=ApprovalRequest(title="One?")),
                Approval(id="g2", request=ApprovalRequest(title="Two?")),
                Task(id="boom", output=int, run=boom),
            ),
            name="wf",
        )

    result = smithers.run(wf, store=store, run_id="r")
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.type, result.error.node_id) == ("ValueError", "boom")
    assert [(a.node_id, a.status, a.withdrawn_because) for a in store.approvals("r")] == [
        ("g1", "withdrawn", "run-failed"),
        ("g2", "withdrawn", "run-failed"),
    ]
    assert sorted(e.node_id for e in of_type(store, "r", "approval.withdrawn")) == ["g1", "g2"]
    assert store.requested_gates() == []
    assert result.pending == ()
    for gate in ("g1", "g2"):
        with pytest.raises(GateNotRequestedError, match="it was withdrawn"):
            smithers.deny("r", gate, store=store)


def test_denying_one_gate_with_fail_withdraws_the_other_requested_gates(store: KVStore) -> None:
    """When a denial fails the run, the run's other requested gates are withdrawn."""

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(
            Parallel(
                Approval(id="g1", request=ApprovalRequest(title="One?")),
                Approval(id="g2", request=ApprovalRequest(title="Two?")),
            ),
            name="wf",
        )

    smithers.run(wf, store=store, run_id="r")
    smithers.deny("r", "g1", by="dan", store=store)
    result = smithers.resume("r", store=store, definition=wf)
    assert result.status == "failed"
    assert [(a.node_id, a.status) for a in store.approvals("r")] == [
        ("g1", "denied"),
        ("g2", "withdrawn"),
    ]
    assert approval(store, "r", "g2").withdrawn_because == "run-failed"


# -- refusals ----------------------------------------------------------------------------------


@define
def two_step(ctx: Any) -> Any:
    return Workflow(
        Task(id="prep", output=int, value=1),
        Approval(id="first", request=ApprovalRequest(title="First?")),
        Approval(id="second", request=ApprovalRequest(title="Second?")),
        name="two-step",
    )


def _snapshot(store: KVStore, run_id: str) -> Any:
    return (store.last_seq(), store.get_run(run_id), store.approvals(run_id))


@pytest.mark.parametrize(
    ("call", "error", "pattern"),
    [
        (
            lambda s: smithers.approve("nope", "first", store=s),
            UnknownRunError,
            r"No run `nope` in the store",
        ),
        (
            lambda s: smithers.deny("r", "ghost", store=s),
            UnknownGateError,
            r"Run `r` has no node `ghost`; its gates: `first`, `second`\.",
        ),
        (
            lambda s: smithers.approve("r", "prep", store=s),
            NotAnApprovalError,
            r"Node `prep` of run `r` is a task, not an approval gate",
        ),
        (
            lambda s: smithers.approve("r", "second", store=s),
            GateNotRequestedError,
            r"Gate `second` of run `r` has not been requested;",
        ),
        (
            lambda s: smithers.approve("r", "first", iteration=(0,), store=s),
            GateNotRequestedError,
            r"Gate `first` iteration 0 of run `r` has not been requested",
        ),
    ],
)
def test_refused_decisions_write_nothing(
    store: KVStore, call: Any, error: type[ApprovalError], pattern: str
) -> None:
    """Each refusal raises its own ApprovalError subclass and leaves the store untouched."""
    smithers.run(two_step, store=store, run_id="r")
    before = _snapshot(store, "r")
    with pytest.raises(error, match=pattern) as caught:
        call(store)
    assert isinstance(caught.value, ApprovalError)
    assert _snapshot(store, "r") == before


def test_a_decision_is_final_and_the_refusal_names_who_what_when(store: KVStore) -> None:
    """Deciding a decided gate raises AlreadyDecidedError naming decider, verdict, time, note."""
    smithers.run(two_step, store=store, run_id="r")
    first = smithers.deny("r", "first", note="not today", by="carol", store=store)
    before = _snapshot(store, "r")
    for decide in (smithers.approve, smithers.deny):
        with pytest.raises(
            AlreadyDecidedError,
            match=re.escape(
                f"Gate `first` of run `r` was already denied by carol at {first.decided_at} "
                "('not today'); a decision is final."
            ),
        ):
            decide("r", "first", by="mallory", store=store)
    assert _snapshot(store, "r") == before


def test_node_may_be_omitted_only_when_exactly_one_gate_is_requested(store: KVStore) -> None:
    """Without a node id: the one requested gate is decided; none or several is refused."""

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(
            Parallel(
                Approval(id="a", request=ApprovalRequest(title="A?")),
                Approval(id="b", request=ApprovalRequest(title="B?")),
            ),
            name="wf",
        )

    smithers.run(wf, store=store, run_id="two")
    before = _snapshot(store, "two")
    with pytest.raises(AmbiguousGateError, match=r"Run `two` has 2 requested gates \(`a`, `b`\)"):
        smithers.approve("two", store=store)
    assert _snapshot(store, "two") == before

    smithers.run(two_step, store=store, run_id="one")
    assert smithers.approve("one", store=store).node_id == "first"
    with pytest.raises(GateNotRequestedError, match=r"Run `one` has no requested gate"):
        smithers.approve("one", store=store)


def test_refusal_classes_are_distinct() -> None:
    """Each refusal is its own ApprovalError subclass, so callers can catch them separately."""
    classes = [
        UnknownRunError,
        UnknownGateError,
        NotAnApprovalError,
        GateNotRequestedError,
        AlreadyDecidedError,
        AmbiguousGateError,
    ]
    assert all(issubclass(c, ApprovalError) for c in classes)
    assert all(not issubclass(a, b) for a in classes for b in classes if a is not b)


# -- resuming against committed outputs ----------------------------------------------------------


@define
def release_train(ctx: Any) -> Any:
    build = ctx.output_maybe("build")
    plan_ok = ctx.output_maybe("approve-plan")
    return Workflow(
        Task(id="build", output=Build, value=Build(version="2.0", plan="all at once")),
        Approval(
            id="approve-plan",
            request=ApprovalRequest(title=f"Plan for {build.version}?" if build else "Plan?"),
        ),
        Approval(
            id="approve-deploy",
            request=ApprovalRequest(
                title="Deploy?",
                summary=f"plan approved by {plan_ok.decided_by}" if plan_ok else None,
            ),
        ),
        name="release-train",
    )


def test_resuming_a_waiting_run_with_nothing_new_keeps_it_waiting(store: KVStore) -> None:
    """A resume that finds no decision parks again; the build may read committed Structs."""
    first = smithers.run(release_train, store=store, run_id="r")
    assert [p.node_id for p in first.pending] == ["approve-plan"]
    again = smithers.resume("r", store=store, definition=release_train)
    assert again.status == "waiting-approval"
    assert again.error is None
    assert again.outputs == {"build": Build(version="2.0", plan="all at once")}
    assert [p.node_id for p in again.pending] == ["approve-plan"]


def test_a_later_resume_renders_earlier_decisions_as_typed_values(store: KVStore) -> None:
    """After a decision is committed, a new resume's build sees it as an ApprovalDecision."""
    smithers.run(release_train, store=store, run_id="r")
    smithers.approve("r", "approve-plan", by="pat", store=store)
    middle = smithers.resume("r", store=store, definition=release_train)
    assert [p.node_id for p in middle.pending] == ["approve-deploy"]
    assert middle.pending[0].request == ApprovalRequest(
        title="Deploy?", summary="plan approved by pat"
    )
    smithers.approve("r", "approve-deploy", by="sam", store=store)
    done = smithers.resume("r", store=store, definition=release_train)
    assert done.status == "finished"
    assert done.outputs["approve-deploy"].decided_by == "sam"


def test_a_resume_whose_build_raises_is_refused_and_changes_nothing(store: KVStore) -> None:
    """A resume whose build raises is refused with BuildError and leaves the run as it was."""

    @define
    def broken(ctx: Any) -> Any:
        raise RuntimeError("config file is gone")

    smithers.run(two_step, store=store, run_id="r")
    decided = smithers.approve("r", "first", store=store)
    before = [(e.type, e.node_id) for e in store.events(run_id="r")]
    with pytest.raises(BuildError, match=r"build function of `broken` raised RuntimeError: config"):
        smithers.resume("r", store=store, definition=broken)
    run = store.get_run("r")
    assert run is not None
    assert (run.status, run.lease, run.error) == ("waiting-approval", None, None)
    assert approval(store, "r", "first") == decided
    assert node_state(store, "r", "first") == "waiting-approval"
    assert [(e.type, e.node_id) for e in store.events(run_id="r")] in (
        before,
        [*before, ("run.resumed", None)],
    )
    result = smithers.resume("r", store=store, definition=two_step)
    assert result.status == "waiting-approval"
    assert [p.node_id for p in result.pending] == ["second"]
