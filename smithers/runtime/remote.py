"""Use cases of the remote front ends (the HTTP API and signed links): record a decision as
a named principal and answer with documents, never running the workflow in this process (the
worker resumes the run in a subprocess). Repeating the identical decision is harmless."""

from __future__ import annotations

from typing import Any

import attrs

from smithers.errors import AlreadyDecidedError, UnknownRunError
from smithers.runtime.decisions import find_gate, record_decision
from smithers.runtime.documents import plain, result_document
from smithers.runtime.results import result_of
from smithers.store.base import Store, need_run
from smithers.store.records import ApprovalRecord, Iteration

__all__ = ["Recorded", "decide_as", "decision_document"]


@attrs.frozen
class Recorded:
    """A decision as the store holds it, and whether this request only repeated it."""

    run_id: str
    record: ApprovalRecord
    repeated: bool


def decide_as(
    store: Store,
    run_id: str,
    node_id: str | None,
    iteration: Iteration | None,
    *,
    approved: bool,
    note: str | None,
    by: str,
) -> Recorded:
    """Record ``by``'s decision on a requested gate (record only).

    The identical decision (same gate, same verdict, same note) already recorded by ``by``
    is returned as it stands, with ``repeated`` set, and nothing is written.

    Raises:
        UnknownRunError, UnknownGateError, NotAnApprovalError, GateNotRequestedError,
        AmbiguousGateError, InputError, AlreadyDecidedError (any other earlier decision):
        nothing was written.
    """
    run = need_run(store, run_id, UnknownRunError)
    gate, its = find_gate(store, run, node_id, iteration)
    try:
        record, _ = record_decision(store, run_id, gate, its, approved, note=note, by=by)
    except AlreadyDecidedError:
        existing = next(
            (a for a in store.approvals(run_id) if a.node_id == gate and a.iteration == its),
            None,
        )
        if (
            existing is not None
            and existing.decided_by == by
            and existing.status == ("approved" if approved else "denied")
            and (existing.decision or {}).get("note") == note
        ):
            return Recorded(run_id, existing, True)
        raise
    return Recorded(run_id, record, False)


def decision_document(store: Store, recorded: Recorded, store_flag: str) -> dict[str, Any]:
    """The run as it stands (the document ``approve --no-resume --json`` prints), plus the
    decision record and whether the request only repeated it."""
    record = recorded.record
    verb = "Approved" if record.status == "approved" else "Denied"
    note = f"{verb} `{record.node_id}` of run {recorded.run_id} as {record.decided_by}; " + (
        "that decision was already recorded." if recorded.repeated else "a worker applies it."
    )
    document = result_document(result_of(store, recorded.run_id), store_flag, note)
    document["decision"] = plain(record)
    document["repeated"] = recorded.repeated
    return document
