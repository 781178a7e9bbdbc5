"""The store's side of approval policies, on every backend: groups, votes and refusals
judged inside the decide transaction, the deadline's compare-and-set, and update_gate."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from smithers.errors import AlreadyDecidedError, ApprovalRefusedError, LeaseLostError
from smithers.store import Batch, Store
from smithers.store.records import NewEvent
from tests.store.helpers import T0, T1, T2, decision, lease, requested, run_record

POLICY: dict[str, Any] = {
    "approvers": ["alice", "group:release"],
    "forbid_self": True,
    "quorum": 2,
    "timeout": 3600.0,
    "on_timeout": "deny",
    "remind_every": None,
    "escalate": [{"after": 1800.0, "approvers": ["lena"]}],
}


def gate_run(store: Store, **policy: Any) -> None:
    """Run ``r`` started by dan, with gate ``g`` requested under POLICY (updated)."""
    store.create_run(
        run_record("r", started_by="dan"),
        Batch(approvals=[requested("g", policy={**POLICY, **policy})]),
    )


def test_groups_are_changed_in_one_transaction_and_vanish_when_empty(store: Store) -> None:
    """change_group adds and removes members; an emptied group is gone."""
    assert store.change_group("release", add=("bob", "alice")) == ("alice", "bob")
    assert store.change_group("release", add=("carol",), remove=("alice",)) == ("bob", "carol")
    assert store.actor_groups() == {"release": ("bob", "carol")}
    assert store.change_group("release", remove=("bob", "carol")) == ()
    assert store.actor_groups() == {}


def test_a_refusal_writes_only_its_event(store: Store) -> None:
    """Outsider, starter and a second vote are refused; only approval.refused is written."""
    store.change_group("release", add=("bob", "dan"))
    gate_run(store)
    store.decide("r", decision("g", by="bob", at=T1))
    before = (store.get_run("r"), store.approvals("r"), store.last_seq())
    for who, reason in [
        ("mallory", r"`mallory` may not decide gate `g` of run `r`; ask alice, "),
        ("dan", r"`dan` started the run and gate `g` of run `r` forbids self-approval"),
        ("bob", r"`bob` already approved gate `g` of run `r` at " + T1),
    ]:
        with pytest.raises(ApprovalRefusedError, match=reason):
            store.decide("r", decision("g", by=who, at=T2))
    assert (store.get_run("r"), store.approvals("r")) == before[:2]
    refused = store.events(after=before[2])
    assert [(e.type, e.data["by"]) for e in refused] == [
        ("approval.refused", "mallory"),
        ("approval.refused", "dan"),
        ("approval.refused", "bob"),
    ]


def test_votes_accumulate_until_the_quorum_and_a_denial_decides(store: Store) -> None:
    """A first approval is a vote (the inbox moves); the second resolves with both votes."""
    store.change_group("release", add=("bob",))
    gate_run(store)
    voted, run = store.decide("r", decision("g", by="bob", note="ok", at=T1))
    assert voted.status == "requested"
    assert voted.votes == ({"by": "bob", "approved": True, "note": "ok", "at": T1},)
    assert run.inbox == 1
    decided, run = store.decide("r", decision("g", by="alice", at=T2))
    assert decided.status == "approved"
    assert decided.decision is not None
    assert [v["by"] for v in decided.decision["votes"]] == ["bob", "alice"]
    assert run.inbox == 2
    types = [e.type for e in store.events(run_id="r")]
    assert types == ["approval.voted", "approval.decided"]


def test_an_escalation_is_in_force_from_its_time(store: Store) -> None:
    """lena may decide once 30 minutes passed since the request, not before."""
    gate_run(store, quorum=1)
    with pytest.raises(ApprovalRefusedError, match="`lena` may not decide"):
        store.decide("r", decision("g", by="lena", at="2026-01-01T00:29:59.000000Z"))
    record, _ = store.decide("r", decision("g", by="lena", at="2026-01-01T00:30:00.000000Z"))
    assert record.status == "approved"


def test_the_deadline_decides_through_the_same_compare_and_set(store: Store) -> None:
    """An expired decision writes approval.expired; a person after it gets AlreadyDecided."""
    gate_run(store)
    expired = attrs.evolve(decision("g", approved=False, by="smithers:timeout"), expired=True)
    record, _ = store.decide("r", expired)
    assert (record.status, record.decided_by) == ("denied", "smithers:timeout")
    assert [e.type for e in store.events(run_id="r")] == ["approval.expired"]
    with pytest.raises(AlreadyDecidedError, match="already denied by smithers:timeout"):
        store.decide("r", decision("g", by="alice"))


def test_update_gate_touches_only_a_requested_gate_and_checks_the_lease(store: Store) -> None:
    """update_gate applies changes and events to a requested gate, else writes nothing."""
    store.create_run(
        run_record("r", lease=lease()), Batch(approvals=[requested("g", policy=POLICY)])
    )
    reminder = NewEvent(type="approval.reminder", node_id="g", iteration=(), at=T1)
    updated = store.update_gate("r", "g", (), {"reminders": 1}, [reminder], token="tok-a")
    assert updated is not None
    assert updated.reminders == 1
    with pytest.raises(LeaseLostError, match="no longer owned"):
        store.update_gate("r", "g", (), {"reminders": 2}, [], token="other")
    store.decide("r", decision("g", by="alice", at=T0))
    store.decide("r", decision("g", by="lena", at="2026-01-01T00:31:00.000000Z"))
    assert store.update_gate("r", "g", (), {"reminders": 2}, [reminder], token="tok-a") is None
    assert [e.type for e in store.events(run_id="r")].count("approval.reminder") == 1
