"""Hypothesis over random gate policies and decision sequences: a gate resolves exactly
once, as a simple model says, and the audit log holds every vote and every refusal."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import smithers
from smithers import Approval, ApprovalRequest, Workflow
from smithers import smithers as define
from smithers.errors import AlreadyDecidedError, ApprovalRefusedError
from smithers.runtime.clock import ManualClock, use_clock
from smithers.store import memory_store

PEOPLE = ("ann", "ben", "cat", "dan")
STARTER = "ann"


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    """A random valid policy over PEOPLE."""
    approvers = draw(st.none() | st.lists(st.sampled_from(PEOPLE), min_size=1, unique=True))
    most = len(approvers) if approvers is not None else len(PEOPLE)
    return {
        "approvers": approvers,
        "forbid_self": draw(st.booleans()),
        "quorum": draw(st.integers(1, most)),
        "timeout": draw(st.sampled_from([None, 600.0])),
        "on_timeout": draw(st.sampled_from(["deny", "approve", "fail"])),
    }


ACTIONS = st.lists(
    st.tuples(st.sampled_from(PEOPLE), st.booleans()) | st.just(("time", True)),
    max_size=10,
)


@given(policy=policies(), actions=ACTIONS)
def test_a_gate_resolves_once_and_the_audit_holds_every_attempt(
    policy: dict[str, Any], actions: list[tuple[str, bool]]
) -> None:
    """Each vote is refused, counted or decisive per the model; one decision at most."""

    @define
    def wf(ctx: Any) -> Any:
        return Workflow(
            Approval(id="gate", request=ApprovalRequest(title="Go?"), on_deny="continue", **policy),
            name="wf",
        )

    with use_clock(ManualClock()) as clock, memory_store() as store:
        assert isinstance(clock, ManualClock)
        smithers.run(wf, store=store, run_id="r", by=STARTER)
        resolved: str | None = None
        approvals: set[str] = set()
        attempts = refused = 0
        for who, approve in actions:
            if who == "time":
                clock.advance(700)
                smithers.resume("r", store=store, definition=wf)
                if resolved is None and policy["timeout"] is not None:
                    resolved = "timeout"
                continue
            decide = smithers.approve if approve else smithers.deny
            allowed = (policy["approvers"] is None or who in policy["approvers"]) and not (
                policy["forbid_self"] and who == STARTER
            )
            voted_before = who in approvals
            try:
                record = decide("r", "gate", by=who, store=store)
            except AlreadyDecidedError:
                assert resolved is not None
                continue
            except ApprovalRefusedError:
                assert resolved is None
                assert not allowed or voted_before
                attempts += 1
                refused += 1
                continue
            assert resolved is None
            assert allowed
            assert not voted_before
            attempts += 1
            if approve:
                approvals.add(who)
            if not approve or len(approvals) >= policy["quorum"]:
                resolved = "person"
                assert record.status == ("approved" if approve else "denied")
            else:
                assert record.status == "requested"
        log = [e for e in store.events(run_id="r") if e.type.startswith("approval.")]
        kinds = [e.type for e in log]
        outcomes = kinds.count("approval.decided") + kinds.count("approval.expired")
        assert outcomes == (0 if resolved is None else 1)
        assert kinds.count("approval.refused") == refused
        assert (
            kinds.count("approval.voted")
            + kinds.count("approval.refused")
            + kinds.count("approval.decided")
            == attempts
        )
        [record] = store.approvals("r")
        assert len(record.votes) == attempts - refused
        if resolved == "timeout":
            assert record.decided_by == "smithers:timeout"
