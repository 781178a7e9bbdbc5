"""Recording what people and outside systems say: `approve`, `deny`, `signal` and `cancel`.

Each records only; applying it is the run's owner's job (or the next ``resume``'s). Every
check that can race (is the gate still requested? was this signal delivered?) happens inside
the store's write transaction, so among racing deciders exactly one wins.
"""

from __future__ import annotations

import os
from typing import Any

import msgspec

from smithers.compiler.codec import check_value
from smithers.compiler.graph import Graph, a_kind
from smithers.compiler.iterations import check_iteration, iteration_hint, iteration_text
from smithers.components.nodes import Signal
from smithers.errors import (
    AmbiguousGateError,
    GateNotRequestedError,
    NotAnApprovalError,
    NotASignalError,
    SignalDataError,
    SignalError,
    UnknownGateError,
    UnknownNodeError,
    UnknownRunError,
)
from smithers.runtime.lease import hostname, is_dead, new_lease, now_iso, os_user
from smithers.runtime.results import RunResult, last_graph, resolve_store, result_of
from smithers.runtime.state import RunState
from smithers.store.base import Batch, Decision, Store, need_run
from smithers.store.records import (
    TERMINAL_RUN_STATUSES,
    ApprovalRecord,
    Iteration,
    RunRecord,
    SignalRecord,
)

__all__ = [
    "approve",
    "cancel",
    "decider",
    "deny",
    "find_gate",
    "record_decision",
    "signal",
]


def decider(by: str | None = None) -> str:
    """Who decides: ``by``, else ``$SMITHERS_ACTOR``, else the OS user."""
    return by or os.environ.get("SMITHERS_ACTOR") or os_user()


def _its(iteration: Iteration) -> str:
    return f" iteration {iteration_text(iteration)}" if iteration else ""


def _listing(records: list[ApprovalRecord]) -> str:
    return ", ".join(f"`{r.node_id}`{_its(r.iteration)}" for r in records)


def find_gate(
    store: Store, run: RunRecord, node_id: str | None, iteration: Iteration | None
) -> tuple[str, Iteration]:
    """Which gate a decision is for: named, or the only requested one.

    A named iteration must be one that was requested: a decision is final, so it never
    falls back to another iteration.

    Raises:
        UnknownGateError, NotAnApprovalError, AmbiguousGateError.
        GateNotRequestedError: Also for an iteration of the wrong depth for the gate (the
            message says which iteration is meant).
        InputError: For an iteration part out of range (not below 2**32) or negative.
    """
    rid = run.run_id
    if iteration is not None:
        iteration = check_iteration(iteration, None, f"a gate of run `{rid}`")
    approvals = store.approvals(rid)
    requested = [a for a in approvals if a.status == "requested"]
    if node_id is None:
        mine = [a for a in requested if iteration in (None, a.iteration)]
        if len(mine) == 1:
            return mine[0].node_id, mine[0].iteration
        if not requested:
            raise GateNotRequestedError(
                f"Run `{rid}` has no requested gate; see `smithers status {rid}`."
            )
        if not mine:
            raise GateNotRequestedError(
                f"Run `{rid}` has no gate requested at iteration "
                f"{iteration_text(iteration) or '()'}; requested: {_listing(requested)}; name "
                "one of those (--node and --iteration)."
            )
        raise AmbiguousGateError(
            f"Run `{rid}` has {len(mine)} requested gates ({_listing(mine)}); "
            "name one with --node (and --iteration)."
        )
    graph = last_graph(store, run)
    node = graph.by_id.get(node_id) if graph is not None else None
    if node is None and not any(a.node_id == node_id for a in approvals):
        gates = sorted(
            {a.node_id for a in approvals}
            | {n.id for n in (graph.nodes if graph else ()) if n.kind == "approval"}
        )
        known = f"; its gates: {', '.join(f'`{g}`' for g in gates)}" if gates else ""
        raise UnknownGateError(f"Run `{rid}` has no node `{node_id}`{known}.")
    if node is not None and node.kind != "approval":
        raise NotAnApprovalError(
            f"Node `{node_id}` of run `{rid}` is {a_kind(node.kind)}, not an approval gate; "
            "only Approval nodes take approve/deny."
        )
    mine = [a for a in requested if a.node_id == node_id]
    if iteration is not None:
        if node is not None and len(iteration) != len(node.loops):
            depth = len(node.loops)
            inside = "outside any loop" if depth == 0 else f"inside {depth} loop(s)"
            raise GateNotRequestedError(
                f"Gate `{node_id}`{_its(iteration)} of run `{rid}` has not been requested: the "
                f"gate is {inside}; {iteration_hint(iteration, depth)}."
            )
        return node_id, iteration  # the store refuses it if it is not requested now
    if len(mine) == 1:
        return node_id, mine[0].iteration
    if len(mine) > 1:
        raise AmbiguousGateError(
            f"Gate `{node_id}` of run `{rid}` is requested in several iterations "
            f"({_listing(mine)}); pass --iteration."
        )
    return node_id, node.iteration if node is not None else ()


def _decide(
    approved: bool,
    run_id: str,
    node_id: str | None,
    *,
    note: str | None,
    by: str | None,
    iteration: Iteration | None,
    store: Store | str | None,
) -> ApprovalRecord:
    with resolve_store(store) as opened:
        run = need_run(opened, run_id, UnknownRunError)
        gate, its = find_gate(opened, run, node_id, iteration)
        record, _ = record_decision(opened, run_id, gate, its, approved, note=note, by=by)
        return record


def record_decision(
    store: Store,
    run_id: str,
    node_id: str,
    iteration: Iteration,
    approved: bool,
    *,
    note: str | None,
    by: str | None,
) -> tuple[ApprovalRecord, RunRecord]:
    """Record a decision on a gate already resolved with `find_gate` (compare-and-set).

    Returns:
        The approval record with its decision, and the run record as the same transaction
        left it (so the caller needs no second read to see who owns the run).

    Raises:
        GateNotRequestedError, AlreadyDecidedError: Nothing was written.
    """
    decision = Decision(
        node_id=node_id,
        iteration=iteration,
        approved=approved,
        note=note,
        decided_by=decider(by),
        decided_at=now_iso(),
        recorded_by=os_user(),
        recorded_on=hostname(),
    )
    return store.decide(run_id, decision)


def approve(
    run_id: str,
    node_id: str | None = None,
    *,
    note: str | None = None,
    by: str | None = None,
    iteration: Iteration | None = None,
    store: Store | str | None = None,
) -> ApprovalRecord:
    """Record an approval of a requested gate (record only: the run applies it on resume).

    Args:
        run_id: The run.
        node_id: The gate; None when the run has exactly one requested gate.
        note: Why; it lands in the audit record and the decision.
        by: Who decides; defaults to ``$SMITHERS_ACTOR``, else the OS user.
        iteration: The gate's loop iteration; None for the requested one.
        store: A store, a store directory, or None for the default store.

    Returns:
        The approval record with its decision.

    Raises:
        UnknownRunError, UnknownGateError, NotAnApprovalError, GateNotRequestedError,
        AlreadyDecidedError, AmbiguousGateError: Nothing was written.
        InputError: For an iteration part out of range or negative (nothing written).
    """
    return _decide(True, run_id, node_id, note=note, by=by, iteration=iteration, store=store)


def deny(
    run_id: str,
    node_id: str | None = None,
    *,
    note: str | None = None,
    by: str | None = None,
    iteration: Iteration | None = None,
    store: Store | str | None = None,
) -> ApprovalRecord:
    """Record a denial of a requested gate; the gate then does what its ``on_deny`` says.

    Takes the same arguments and raises the same errors as `approve`.
    """
    return _decide(False, run_id, node_id, note=note, by=by, iteration=iteration, store=store)


def signal(
    run_id: str,
    node_id: str,
    data: Any,
    *,
    store: Store | str | None = None,
    iteration: Iteration | None = None,
    graph: Graph | None = None,
) -> SignalRecord:
    """Deliver data to a `Signal` of the run (record only), even before the run reaches it.

    Args:
        run_id: The run.
        node_id: The Signal's id.
        data: JSON-able data; validated into the Signal's output type when ``graph`` carries
            the Signal element (the CLI passes the run's current render), else when applied.
        store: A store, a store directory, or None for the default store.
        iteration: The Signal's loop iteration; None for its current one.
        graph: The run's current graph with its elements, to validate before recording.

    Raises:
        RunNotFoundError, UnknownNodeError, NotASignalError, AlreadyDeliveredError,
        SignalError: Nothing was written.
        InputError: For an iteration out of range or whose depth is not the Signal's number
            of enclosing loops (nothing was written).
    """
    with resolve_store(store) as opened:
        run = need_run(opened, run_id)
        if run.status in TERMINAL_RUN_STATUSES:
            raise SignalError(
                f"Run `{run_id}` is {run.status}; a signal can only reach a run that goes on."
            )
        current = graph or last_graph(opened, run)
        node = current.by_id.get(node_id) if current is not None else None
        if node is None:
            signals = [n.id for n in (current.nodes if current else ()) if n.kind == "signal"]
            known = f"; its signals: {', '.join(f'`{s}`' for s in signals)}" if signals else ""
            raise UnknownNodeError(f"Run `{run_id}` has no node `{node_id}`{known}.")
        if node.kind != "signal":
            raise NotASignalError(
                f"Node `{node_id}` of run `{run_id}` is {a_kind(node.kind)}, not a Signal; only "
                "Signal nodes take data."
            )
        if iteration is not None:
            # Checked against the node's loops before anything is written: data for an
            # iteration the node never has would wait there forever.
            iteration = check_iteration(
                iteration, len(node.loops), f"signal `{node_id}` of run `{run_id}`"
            )
        element = current.elements.get(node_id) if current is not None else None
        try:
            if isinstance(element, Signal):
                _, raw = check_value(data, element.output)
            else:
                raw = msgspec.msgpack.encode(data)
        except ValueError as exc:
            raise SignalDataError(
                f"Data for signal `{node_id}` does not match `{node.output_type}`: {exc}; pass "
                f"--data matching `{node.output_type}`."
            ) from None
        except TypeError as exc:
            raise SignalError(
                f"Data for signal `{node_id}` cannot be encoded ({exc}); pass JSON-able data."
            ) from None
        record = SignalRecord(
            node_id=node_id,
            iteration=node.iteration if iteration is None else iteration,
            data=raw,
            received_at=now_iso(),
            recorded_by=os_user(),
            recorded_on=hostname(),
        )
        opened.deliver(run_id, record)
        return record


def cancel(run_id: str, *, store: Store | str | None = None) -> RunResult:
    """Cancel a run: its owner stops it, or, with no live owner, it is cancelled at once.

    Requested gates are withdrawn and waiting nodes cancelled. A run that already ended is
    left as it is.

    Raises:
        RunNotFoundError: For an unknown run.
    """
    with resolve_store(store) as opened:
        run = need_run(opened, run_id)
        if run.status in TERMINAL_RUN_STATUSES:
            return result_of(opened, run_id)
        if run.lease is not None and not is_dead(run.lease):
            opened.commit(
                run_id, Batch(run={"cancel_requested": True}, bump_inbox=True), token=None
            )
            return result_of(opened, run_id)
        lease = new_lease()
        opened.acquire(run_id, lease, is_dead=is_dead, batch=Batch())
        claimed = opened.get_run(run_id)
        assert claimed is not None and claimed.lease is not None
        snapshot = opened.load(run_id)
        assert snapshot is not None
        _close_cancelled(opened, RunState(snapshot), claimed.lease.token)
        if claimed.concurrency_key is not None:  # its slot is free: the next queued run goes
            from smithers.runtime.concurrency import promote_queued

            promote_queued(opened, claimed.concurrency_key)
        return result_of(opened, run_id)


def _close_cancelled(store: Store, state: RunState, token: str) -> None:
    now = now_iso()
    for key, approval in list(state.approvals.items()):
        if approval.status == "requested":
            state.set_approval(
                msgspec.structs.replace(
                    approval, status="withdrawn", withdrawn_at=now, withdrawn_because="cancelled"
                )
            )
            state.event("approval.withdrawn", key[0], key[1], reason="cancelled")
    for key, record in list(state.nodes.items()):
        if record.state in (
            "waiting-approval",
            "waiting-signal",
            "waiting-timer",
            "in-progress",
            "pending",
        ):
            state.set_node(
                msgspec.structs.replace(
                    record, state="cancelled", reason="cancelled", finished_at=now
                )
            )
            state.event("node.cancelled", key[0], key[1], reason="cancelled")
    state.update_run(status="cancelled", updated_at=now)
    state.event("run.cancelled")
    batch = state.take_batch()
    batch.release_lease = True
    store.commit(state.run.run_id, batch, token=token)
