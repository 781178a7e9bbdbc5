"""Who may decide a gate, and what a vote does to it: judged inside the store's decide
transaction, so that racing voters count once each and exactly one vote (or the deadline)
resolves the gate.

Pure: reads only the records it is given (the approval record with its persisted policy,
the run's starter, the groups table as a mapping).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Literal

import attrs
import msgspec

from smithers.store.base import Decision, decided_record
from smithers.store.records import ApprovalRecord, NewEvent, RunRecord

__all__ = ["Applied", "Verdict", "allowed_deciders", "apply_decision", "judge", "who_may_decide"]

GROUP_PREFIX = "group:"


@attrs.frozen
class Verdict:
    """What a person's decision does to a requested gate.

    Attributes:
        outcome: ``refused`` (nothing changes but the event), ``voted`` (recorded, the gate
            still waits for more approvals) or ``resolved`` (the gate is decided).
        reason: Why a decision was refused, one sentence naming who may decide.
        approved: For ``resolved``: the gate's outcome.
    """

    outcome: Literal["refused", "voted", "resolved"]
    reason: str = ""
    approved: bool = False


def _epoch(text: str) -> float:
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def allowed_deciders(record: ApprovalRecord, at: str | None = None) -> tuple[str, ...] | None:
    """The approver entries in force, or None for anyone: the policy's, plus every
    escalation already applied or, given the time ``at`` (ISO), already due then (a person
    need not wait for the owner or the worker to announce an escalation)."""
    policy = record.policy or {}
    base = policy.get("approvers")
    if base is None:
        return None
    steps = policy.get("escalate") or []
    count = record.escalated
    if at is not None and count < len(steps):
        waited = _epoch(at) - _epoch(record.requested_at)
        count = max(count, sum(1 for step in steps if float(step["after"]) <= waited))
    widened = [a for step in steps[:count] for a in step["approvers"]]
    return tuple(dict.fromkeys([*base, *widened]))


def _expand(entries: tuple[str, ...], groups: Mapping[str, tuple[str, ...]]) -> set[str]:
    people: set[str] = set()
    for entry in entries:
        if entry.startswith(GROUP_PREFIX):
            people.update(groups.get(entry[len(GROUP_PREFIX) :], ()))
        else:
            people.add(entry)
    return people


def who_may_decide(
    record: ApprovalRecord,
    groups: Mapping[str, tuple[str, ...]],
    starter: str | None,
    at: str | None = None,
) -> str:
    """``alice, group:release (bob, carol)``: the entries in force (at ``at``), groups
    spelled out, for messages; ``anyone`` when the gate has no approver list."""
    entries = allowed_deciders(record, at)
    barred = starter if (record.policy or {}).get("forbid_self") else None
    if entries is None:
        return f"anyone but {barred}" if barred else "anyone"
    shown = []
    for entry in entries:
        if entry.startswith(GROUP_PREFIX):
            members = [m for m in groups.get(entry[len(GROUP_PREFIX) :], ()) if m != barred]
            shown.append(f"{entry} ({', '.join(members) if members else 'no members'})")
        elif entry != barred:
            shown.append(entry)
    return ", ".join(shown) or "nobody"


def judge(
    record: ApprovalRecord,
    *,
    by: str,
    approved: bool,
    starter: str | None,
    groups: Mapping[str, tuple[str, ...]],
    where: str,
    at: str | None = None,
) -> Verdict:
    """Judge a person's decision on a requested gate (its policy persisted in ``record``).

    Args:
        record: The gate's approval record, status ``requested``.
        by: Who decides.
        approved: Approve (True) or deny (False).
        starter: Who started the run (`RunRecord.started_by`).
        groups: Group name -> members, as the store holds them now.
        where: How messages name the gate (``gate `g` of run `r```).
        at: When the decision is made (ISO); escalations due by then are in force.

    Returns:
        The verdict; a refusal's reason names who may decide.
    """
    policy: dict[str, Any] = record.policy or {}
    ask = f"ask {who_may_decide(record, groups, starter, at)}"
    if policy.get("forbid_self") and starter is not None and by == starter:
        return Verdict(
            "refused",
            f"`{by}` started the run and {where} forbids self-approval; {ask}.",
        )
    entries = allowed_deciders(record, at)
    if entries is not None and by not in _expand(entries, groups):
        return Verdict("refused", f"`{by}` may not decide {where}; {ask}.")
    earlier = next((v for v in record.votes if v["by"] == by), None)
    if earlier is not None:
        what = "approved" if earlier["approved"] else "denied"
        return Verdict(
            "refused",
            f"`{by}` already {what} {where} at {earlier['at']}; each person votes once, so "
            f"{ask} for the other votes.",
        )
    if not approved:
        return Verdict("resolved", approved=False)
    approvals = 1 + sum(1 for v in record.votes if v["approved"])
    if approvals >= int(policy.get("quorum", 1)):
        return Verdict("resolved", approved=True)
    return Verdict("voted")


@attrs.frozen
class Applied:
    """What a decision does inside the decide transaction.

    Attributes:
        record: The approval record to write (None when refused).
        event: The one event to append (``approval.refused``, ``voted``, ``decided`` or
            ``expired``).
        refused: The refusal's message, or None.
    """

    record: ApprovalRecord | None
    event: NewEvent
    refused: str | None = None


def apply_decision(
    run: RunRecord,
    record: ApprovalRecord,
    decision: Decision,
    *,
    groups: Mapping[str, tuple[str, ...]],
) -> Applied:
    """Judge ``decision`` on the requested gate ``record`` of ``run`` and say what to write:
    a refusal (only its event), a vote short of the quorum, the deciding vote, or the
    deadline's decision (``decision.expired``)."""
    at, node, its = decision.decided_at, decision.node_id, decision.iteration
    common = {"recorded_by": decision.recorded_by, "recorded_on": decision.recorded_on}

    def event(type: Any, **data: Any) -> NewEvent:
        return NewEvent(type=type, node_id=node, iteration=its, at=at, data=data)

    if decision.expired:
        decided = decided_record(record, decision, record.votes)
        return Applied(
            decided, event("approval.expired", decision=decided.decision, deadline=record.deadline)
        )
    where = f"gate `{node}`" + (f" iteration {'.'.join(map(str, its))}" if its else "")
    by = decision.decided_by or ""
    verdict = judge(
        record,
        by=by,
        approved=decision.approved,
        starter=run.started_by,
        groups=groups,
        where=f"{where} of run `{run.run_id}`",
        at=at,
    )
    if verdict.outcome == "refused":
        refusal = event(
            "approval.refused", by=by, approved=decision.approved, reason=verdict.reason
        )
        return Applied(None, refusal, verdict.reason)
    vote = {"by": by, "approved": decision.approved, "note": decision.note, "at": at}
    votes = (*record.votes, vote)
    if verdict.outcome == "voted":
        approvals = sum(1 for v in votes if v["approved"])
        quorum = (record.policy or {}).get("quorum", 1)
        return Applied(
            msgspec.structs.replace(record, votes=votes),
            event("approval.voted", **vote, approvals=approvals, quorum=quorum, **common),
        )
    decided = decided_record(record, decision, votes)
    return Applied(decided, event("approval.decided", decision=decided.decision, **common))
