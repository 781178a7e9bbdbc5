"""Approval policies: who may decide, forbid_self, quorum, deadlines, reminders, escalation,
alone and combined, with the injectable clock (no sleeping)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import smithers
from smithers import (
    Approval,
    ApprovalDecision,
    ApprovalRequest,
    Escalation,
    Task,
    Vote,
    Workflow,
)
from smithers import smithers as define
from smithers.errors import AlreadyDecidedError, ApprovalRefusedError
from smithers.runtime.clock import ManualClock, use_clock
from smithers.store import Store

HOUR = 3600.0


@pytest.fixture
def clock() -> Iterator[ManualClock]:
    """A manual clock the runtime reads for the whole test."""
    with use_clock(ManualClock()) as manual:
        assert isinstance(manual, ManualClock)
        yield manual


def gated(**policy: Any) -> Any:
    """A workflow: a gate with ``policy``, then a task that records the decision."""

    @define
    def wf(ctx: Any) -> Any:
        decision = ctx.output_maybe("gate")
        return Workflow(
            Approval(
                id="gate",
                request=ApprovalRequest(title="Ship?"),
                on_deny="continue",
                **policy,
            ),
            decision is not None and Task(id="after", output=bool, value=bool(decision.approved)),
            name="wf",
        )

    return wf


def events(store: Store, run_id: str = "r", prefix: str = "approval.") -> list[str]:
    """The run's event types starting with ``prefix``, in order."""
    return [e.type for e in store.events(run_id=run_id) if e.type.startswith(prefix)]


def test_anyone_may_decide_a_gate_without_approvers(store: Store, clock: ManualClock) -> None:
    """approvers=None keeps the old rule: anyone decides, one vote resolves."""
    wf = gated()
    smithers.run(wf, store=store, run_id="r", by="alice")
    record = smithers.approve("r", "gate", by="alice", store=store)
    assert record.status == "approved"
    assert record.decision is not None
    assert len(record.decision["votes"]) == 1


def test_a_person_outside_the_approvers_is_refused_and_only_the_event_is_written(
    store: Store, clock: ManualClock
) -> None:
    """A refusal names who may decide, writes approval.refused and changes nothing else."""
    store.change_group("release", add=("bob", "carol"))
    wf = gated(approvers=["alice", "group:release"])
    smithers.run(wf, store=store, run_id="r", by="dan")
    before_run = store.get_run("r")
    before_gates = store.approvals("r")
    before_seq = store.last_seq()
    with pytest.raises(
        ApprovalRefusedError,
        match=r"`mallory` may not decide gate `gate` of run `r`; ask alice, "
        r"group:release \(bob, carol\)\.",
    ):
        smithers.approve("r", "gate", by="mallory", store=store)
    assert store.get_run("r") == before_run
    assert store.approvals("r") == before_gates
    new = store.events(after=before_seq)
    assert [(e.type, e.data["by"]) for e in new] == [("approval.refused", "mallory")]
    assert smithers.approve("r", "gate", by="carol", store=store).status == "approved"


def test_forbid_self_refuses_the_runs_starter(store: Store, clock: ManualClock) -> None:
    """The person who started the run may not decide a forbid_self gate; others may."""
    wf = gated(forbid_self=True)
    smithers.run(wf, store=store, run_id="r", by="alice")
    assert store.get_run("r").started_by == "alice"  # type: ignore[union-attr]
    with pytest.raises(ApprovalRefusedError, match=r"`alice` started the run .* self-approval"):
        smithers.deny("r", "gate", by="alice", store=store)
    assert smithers.approve("r", "gate", by="bob", store=store).status == "approved"


def test_quorum_counts_distinct_votes_and_resolves_on_the_last_one(
    store: Store, clock: ManualClock
) -> None:
    """quorum=2: a first approval is a vote, a second by the same person is refused, a
    second person's approval resolves the gate with both votes."""
    wf = gated(approvers=["alice", "bob", "carol"], quorum=2)
    smithers.run(wf, store=store, run_id="r", by="dan")
    first = smithers.approve("r", "gate", by="alice", note="lgtm", store=store)
    assert first.status == "requested"
    with pytest.raises(ApprovalRefusedError, match=r"`alice` already approved .* votes once"):
        smithers.approve("r", "gate", by="alice", store=store)
    clock.advance(60)
    second = smithers.approve("r", "gate", by="bob", store=store)
    assert second.status == "approved"
    done = smithers.resume("r", store=store, definition=wf)
    decision = done.outputs["gate"]
    assert isinstance(decision, ApprovalDecision)
    assert decision.decided_by == "bob"
    assert [(v.by, v.approved, v.note) for v in decision.votes] == [
        ("alice", True, "lgtm"),
        ("bob", True, None),
    ]
    assert all(isinstance(v, Vote) for v in decision.votes)
    assert events(store) == [
        "approval.requested",
        "approval.voted",
        "approval.refused",
        "approval.decided",
    ]


def test_one_denial_decides_a_quorum_gate(store: Store, clock: ManualClock) -> None:
    """Under quorum, anyone allowed who denies decides "denied" at once."""
    wf = gated(approvers=["alice", "bob", "carol"], quorum=3)
    smithers.run(wf, store=store, run_id="r", by="dan")
    smithers.approve("r", "gate", by="alice", store=store)
    denied = smithers.deny("r", "gate", by="bob", note="no", store=store)
    assert denied.status == "denied"
    assert [v["by"] for v in denied.votes] == ["alice", "bob"]
    with pytest.raises(AlreadyDecidedError, match="already denied by bob"):
        smithers.approve("r", "gate", by="carol", store=store)


@pytest.mark.parametrize(
    ("on_timeout", "status", "after"),
    [("deny", "finished", False), ("approve", "finished", True), ("fail", "failed", None)],
)
def test_the_deadline_resolves_the_gate_per_on_timeout(
    store: Store, clock: ManualClock, on_timeout: str, status: str, after: bool | None
) -> None:
    """A resume after the deadline decides as smithers:timeout (approval.expired)."""
    wf = gated(timeout="4h", on_timeout=on_timeout)
    first = smithers.run(wf, store=store, run_id="r")
    assert first.status == "waiting-approval"
    run = store.get_run("r")
    assert run is not None
    assert run.wake_at == clock.time() + 4 * HOUR
    assert store.due_runs(clock.time() + 4 * HOUR - 1, 10) == []
    assert [d.reason for d in store.due_runs(clock.time() + 4 * HOUR, 10)] == ["due"]
    clock.advance(4 * HOUR - 1)
    assert smithers.resume("r", store=store, definition=wf).status == "waiting-approval"
    clock.advance(1)
    done = smithers.resume("r", store=store, definition=wf)
    assert done.status == status
    record = store.approvals("r")[0]
    assert record.decided_by == "smithers:timeout"
    assert events(store)[-1] == "approval.expired"
    if after is None:
        assert done.error is not None
        assert done.error.type == "ApprovalTimeout"
        assert "on_timeout='fail'" in done.error.message
    else:
        assert done.outputs["after"] is after


def test_a_person_before_the_timeout_is_applied_wins_and_the_deadline_does_nothing(
    store: Store, clock: ManualClock
) -> None:
    """Person and deadline race through one compare-and-set: the earlier commit wins."""
    wf = gated(timeout="1h")
    smithers.run(wf, store=store, run_id="r")
    clock.advance(2 * HOUR)
    smithers.approve("r", "gate", by="bob", store=store)
    done = smithers.resume("r", store=store, definition=wf)
    assert done.outputs["after"] is True
    assert "approval.expired" not in events(store)


def test_reminders_come_at_their_interval_and_stop_at_the_deadline(
    store: Store, clock: ManualClock
) -> None:
    """remind_every=1h with timeout=4h: reminders at 1h, 2h, 3h (one event per wake), none
    at the deadline; wake_at always names the next one."""
    wf = gated(timeout="4h", remind_every="1h")
    smithers.run(wf, store=store, run_id="r")
    start = clock.time()
    for hour in (1, 2, 3):
        run = store.get_run("r")
        assert run is not None
        assert run.wake_at == start + hour * HOUR
        clock.advance(HOUR)
        smithers.resume("r", store=store, definition=wf)
        reminders = [e for e in store.events(run_id="r") if e.type == "approval.reminder"]
        assert [e.data["count"] for e in reminders] == list(range(1, hour + 1))
    run = store.get_run("r")
    assert run is not None
    assert run.wake_at == start + 4 * HOUR
    clock.advance(HOUR)
    smithers.resume("r", store=store, definition=wf)
    assert events(store)[-1] == "approval.expired"
    assert events(store).count("approval.reminder") == 3


def test_escalation_widens_the_approvers_at_its_time(store: Store, clock: ManualClock) -> None:
    """Before the escalation a lead is refused; once applied, the lead may decide."""
    store.change_group("leads", add=("lena",))
    wf = gated(approvers=["alice"], escalate=Escalation(after="2h", approvers=["group:leads"]))
    smithers.run(wf, store=store, run_id="r")
    with pytest.raises(ApprovalRefusedError, match=r"ask alice\."):
        smithers.approve("r", "gate", by="lena", store=store)
    clock.advance(2 * HOUR)
    smithers.resume("r", store=store, definition=wf)
    escalated = [e for e in store.events(run_id="r") if e.type == "approval.escalated"]
    assert [e.data["approvers"] for e in escalated] == [["alice", "group:leads"]]
    assert smithers.approve("r", "gate", by="lena", store=store).status == "approved"


def test_the_release_gate_combines_every_policy(store: Store, clock: ManualClock) -> None:
    """The README's gate: group release, no self-approval, 2 approvals, hourly reminders,
    leads after 2h, deny after 4h."""
    store.change_group("release", add=("alice", "bob", "carol"))
    store.change_group("leads", add=("lena",))
    wf = gated(
        approvers=["group:release"],
        forbid_self=True,
        quorum=2,
        timeout="4h",
        on_timeout="deny",
        remind_every="1h",
        escalate=[Escalation(after="2h", approvers=["group:leads"])],
    )
    smithers.run(wf, store=store, run_id="r", by="alice")
    with pytest.raises(ApprovalRefusedError, match="self-approval"):
        smithers.approve("r", "gate", by="alice", store=store)
    assert smithers.approve("r", "gate", by="bob", store=store).status == "requested"
    clock.advance(2 * HOUR)
    smithers.resume("r", store=store, definition=wf)
    assert smithers.approve("r", "gate", by="lena", store=store).status == "approved"
    done = smithers.resume("r", store=store, definition=wf)
    assert done.outputs["after"] is True
    assert events(store) == [
        "approval.requested",
        "approval.refused",
        "approval.voted",
        "approval.escalated",
        "approval.reminder",
        "approval.decided",
    ]


def test_the_live_owner_applies_the_deadline_while_a_task_runs(
    store: Store, clock: ManualClock
) -> None:
    """With a task still running, the owner's watcher notices the deadline and applies it."""
    import threading

    release = threading.Event()

    def slow() -> int:
        clock.advance(2 * HOUR)
        release.wait(5)
        return 1

    @define
    def wf(ctx: Any) -> Any:
        decision = ctx.output_maybe("gate")
        return Workflow(
            smithers.Parallel(
                Approval(
                    id="gate",
                    request=ApprovalRequest(title="Ship?"),
                    timeout="1h",
                    on_deny="continue",
                ),
                Task(id="slow", output=int, run=slow),
            ),
            decision is not None and Task(id="after", output=bool, value=decision.approved),
            name="wf",
        )

    def watch() -> None:
        for _ in range(100):
            if any(e.type == "approval.expired" for e in store.events(run_id="r")):
                break
            threading.Event().wait(0.05)
        release.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    done = smithers.run(wf, store=store, run_id="r")
    watcher.join()
    assert done.status == "finished"
    assert done.outputs["after"] is False
    assert done.outputs["gate"].decided_by == "smithers:timeout"


def test_an_escalation_due_is_in_force_before_anyone_announces_it(
    store: Store, clock: ManualClock
) -> None:
    """A lead deciding after the escalation's delay is allowed though no resume ran yet."""
    wf = gated(approvers=["alice"], escalate=[Escalation(after="2h", approvers=["lena"])])
    smithers.run(wf, store=store, run_id="r")
    clock.advance(2 * HOUR - 1)
    with pytest.raises(ApprovalRefusedError, match=r"`lena` may not decide"):
        smithers.approve("r", "gate", by="lena", store=store)
    clock.advance(1)
    assert smithers.approve("r", "gate", by="lena", store=store).status == "approved"


def test_reminders_without_a_deadline_go_on_and_a_late_wake_sends_one(
    store: Store, clock: ManualClock
) -> None:
    """remind_every alone: a wake 2.5 intervals late sends one reminder (count 2) and
    schedules the third."""
    wf = gated(remind_every="1h")
    smithers.run(wf, store=store, run_id="r")
    start = clock.time()
    clock.advance(2.5 * HOUR)
    assert smithers.resume("r", store=store, definition=wf).status == "waiting-approval"
    reminders = [e.data["count"] for e in store.events(run_id="r") if e.type == "approval.reminder"]
    assert reminders == [2]
    run = store.get_run("r")
    assert run is not None
    assert run.wake_at == start + 3 * HOUR


def test_a_gate_withdrawn_by_a_failing_run_keeps_the_votes_cast(
    store: Store, clock: ManualClock
) -> None:
    """A vote landing just before the run fails stays in the withdrawn record."""

    def vote_then_fail() -> int:
        smithers.approve("r", "gate", by="bob", store=store)
        raise RuntimeError("boom")

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(
            smithers.Parallel(
                Approval(id="gate", request=ApprovalRequest(title="Ship?"), quorum=2),
                Task(id="t", output=int, run=vote_then_fail),
            ),
            name="wf",
        )

    assert smithers.run(wf, store=store, run_id="r").status == "failed"
    [record] = store.approvals("r")
    assert record.status == "withdrawn"
    assert [v["by"] for v in record.votes] == ["bob"]
