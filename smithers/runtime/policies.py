"""Approval policies over time: when a requested gate's next reminder, escalation and
deadline fall, and which of them are due now. Pure functions of the approval record (its
persisted policy) and a time; the engine applies what they say (`runtime/timers.py`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from smithers.runtime.clock import format_iso, parse_iso
from smithers.store.records import ApprovalRecord
from smithers.store.votes import allowed_deciders, who_may_decide

__all__ = ["TIMEOUT_DECIDER", "GateDue", "deadline_of", "gate_due", "next_gate_wake"]

TIMEOUT_DECIDER = "smithers:timeout"
"""``decided_by`` of a decision the deadline made."""


def deadline_of(policy: dict[str, Any] | None, requested_at: float) -> str | None:
    """The ISO deadline of a gate requested at ``requested_at``, or None without a timeout."""
    if not policy or policy.get("timeout") is None:
        return None
    return format_iso(requested_at + float(policy["timeout"]))


@attrs.frozen
class GateDue:
    """What time asks of a requested gate now.

    Attributes:
        reminders: The reminder count that should have been emitted by now (apply when more
            than the record's ``reminders``).
        escalated: The escalation steps in force by now (apply when more than the record's).
        expired: Whether the deadline has passed.
    """

    reminders: int
    escalated: int
    expired: bool


def _times(record: ApprovalRecord) -> tuple[float, float | None, dict[str, Any]]:
    policy = record.policy or {}
    start = parse_iso(record.requested_at)
    deadline = parse_iso(record.deadline) if record.deadline else None
    return start, deadline, policy


def gate_due(record: ApprovalRecord, now: float) -> GateDue:
    """What is due on a requested gate at ``now`` (reminders stop at the deadline)."""
    start, deadline, policy = _times(record)
    expired = deadline is not None and now >= deadline
    reminders = 0
    every = policy.get("remind_every")
    if every:
        until = now if deadline is None else min(now, deadline)
        reminders = max(0, math.floor((until - start) / float(every)))
        if deadline is not None and start + reminders * float(every) >= deadline:
            reminders -= 1  # a reminder at the deadline itself is no use
        reminders = max(reminders, 0)
    steps = policy.get("escalate") or []
    escalated = sum(1 for step in steps if start + float(step["after"]) <= now)
    return GateDue(reminders=reminders, escalated=escalated, expired=expired)


def next_gate_wake(record: ApprovalRecord) -> float | None:
    """When something next happens to a requested gate (reminder, escalation, deadline)."""
    start, deadline, policy = _times(record)
    times: list[float] = []
    if deadline is not None:
        times.append(deadline)
    every = policy.get("remind_every")
    if every:
        nxt = start + (record.reminders + 1) * float(every)
        if deadline is None or nxt < deadline:
            times.append(nxt)
    steps = policy.get("escalate") or []
    if record.escalated < len(steps):
        times.append(start + float(steps[record.escalated]["after"]))
    return min(times) if times else None


def gate_policy_fields(
    record: ApprovalRecord,
    *,
    starter: str | None,
    groups: Mapping[str, tuple[str, ...]],
    now: float,
) -> dict[str, Any]:
    """What the inbox and ``status`` show of a gate's policy: deadline, seconds left,
    approvers in force (and who that is), quorum, and the votes so far."""
    policy = record.policy or {}
    left = None
    if record.deadline is not None and record.status == "requested":
        left = max(0.0, parse_iso(record.deadline) - now)
    at = format_iso(now)
    entries = allowed_deciders(record, at)
    return {
        "deadline": record.deadline,
        "time_left": left,
        "approvers": None if entries is None else list(entries),
        "may_decide": who_may_decide(record, groups, starter, at),
        "forbid_self": bool(policy.get("forbid_self")),
        "quorum": int(policy.get("quorum", 1)),
        "on_timeout": policy.get("on_timeout") if record.deadline else None,
        "votes": [dict(v) for v in record.votes],
    }
