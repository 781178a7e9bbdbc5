"""`retry`: run a failed run's failed nodes again, keeping every finished output.

After the code is fixed, `retry` puts the failed nodes (and the nodes the failure cancelled)
back to pending in one compare-and-set commit with a ``run.retried`` event, then resumes the
run as `resume` does. A gate denied under ``on_deny="fail"`` is a decision, not a fault: it
is asked again only when named; its earlier record stays in the new record's ``previous``.
"""

from __future__ import annotations

import msgspec

from smithers.compiler.graph import Graph
from smithers.compiler.iterations import iteration_text
from smithers.components.definition import WorkflowDefinition
from smithers.errors import InputError
from smithers.runtime.api import (
    EventSink,
    RunResult,
    resolve_store,
    resume_loaded,
    run_in_loop,
    working_directory,
)
from smithers.runtime.compat import check_resumable
from smithers.runtime.lease import now_iso
from smithers.runtime.loader import load_ref
from smithers.runtime.results import last_graph
from smithers.store.base import Batch, NodeKey, RunSnapshot, Store, need_run
from smithers.store.records import EventRecord, NewEvent, NodeRecord

__all__ = [
    "aretry",
    "retry",
    "retry_loaded",
    "retry_plan",
]

_NEXT = {
    "finished": "nothing to retry; start a new run to run it again",
    "cancelled": "it was cancelled; start a new run",
    "waiting-approval": "it waits for a decision; approve or deny it",
    "waiting-signal": "it waits for a signal; deliver it with `smithers signal`",
    "waiting-timer": "it waits for a timer; resume it once the timer is due",
    "running": "it has not failed; resume it if nothing is running it",
}


def _name(key: NodeKey) -> str:
    return key[0] + (f"@{iteration_text(key[1])}" if key[1] else "")


def _denied(snapshot: RunSnapshot, key: NodeKey, record: NodeRecord) -> bool:
    """Whether a failed node is a gate that failed because it was denied."""
    approval = snapshot.approvals.get(key)
    return record.kind == "approval" and approval is not None and approval.status == "denied"


def retry_plan(snapshot: RunSnapshot, graph: Graph | None, node: str | None) -> list[NodeKey]:
    """The node keys a retry puts back to pending (checked; nothing is written).

    Failed nodes are retried, except those failed under ``continue_on_fail`` (already handled)
    and gates denied under ``on_deny="fail"`` unless ``node`` names them; nodes the failure
    cancelled (reason ``run-failed``) are pending again too.

    Raises:
        InputError: For a run that is not failed, a ``node`` that did not fail, or a denied
            gate left unnamed.
    """
    run = snapshot.run
    if run.status != "failed":
        raise InputError(
            f"Run `{run.run_id}` is {run.status}, not failed; only a failed run can be retried "
            f"({_NEXT.get(run.status, 'see `smithers status`')})."
        )
    props = {n.id: n.props for n in graph.nodes} if graph is not None else {}
    failed = {
        key: record
        for key, record in sorted(snapshot.nodes.items())
        if record.state == "failed" and not props.get(key[0], {}).get("continue_on_fail")
    }
    names = sorted({key[0] for key in failed})
    if node is not None and node not in names:
        state = next((r.state for (n, _), r in snapshot.nodes.items() if n == node), None)
        what = f"is {state}" if state else "never ran"
        listing = ", ".join(f"`{n}`" for n in names) or "none"
        raise InputError(
            f"Node `{node}` of run `{run.run_id}` did not fail (it {what}); retry names a "
            f"failed node, here: {listing}."
        )
    denied = [key for key, record in failed.items() if _denied(snapshot, key, record)]
    unnamed = [key for key in denied if key[0] != node]
    if unnamed:
        gate = unnamed[0][0]
        raise InputError(
            f"Gate `{gate}` of run `{run.run_id}` was denied (on_deny='fail'); a denied gate is "
            f"asked again only when named: retry with node='{gate}' (--node {gate})."
        )
    cancelled = [
        key
        for key, record in sorted(snapshot.nodes.items())
        if record.state == "cancelled" and record.reason == "run-failed"
    ]
    return [*failed, *cancelled]


def _reset(record: NodeRecord) -> NodeRecord:
    """Pending again; the attempt count stays so new attempts number on from the old ones."""
    return msgspec.structs.replace(
        record,
        state="pending",
        reason=None,
        error=None,
        failures=0,
        interrupted=0,
        finished_at=None,
        attempt_started_at=None,
    )


def retry(
    run_id: str,
    *,
    node: str | None = None,
    store: Store | str | None = None,
    definition: WorkflowDefinition | None = None,
    on_event: EventSink | None = None,
) -> RunResult:
    """Run a failed run's failed nodes again (after fixing the code), keeping every output.

    Finished nodes keep their outputs and never run again. Failed tasks and the nodes the
    failure cancelled become pending; a failed task gets its full ``retries`` again and its
    attempts number on. The run then resumes as `resume` does.

    Args:
        run_id: The failed run.
        node: A failed node to retry. Required to ask a gate denied under
            ``on_deny="fail"`` again (its earlier decision stays in the approval record's
            ``previous``); every other failed task is retried with it.
        store: A store, a store directory, or None for the default store.
        definition: Use this definition instead of the recorded one.
        on_event: Called with every event after it is committed.

    Returns:
        The run's result after resuming.

    Raises:
        RunNotFoundError: For an unknown run id.
        InputError: For a run that is not failed, a ``node`` that did not fail, a denied gate
            not named, or a run another process retried first (nothing written).
        LoadError, WorkflowChangedError, OutputTypeChangedError: As `resume` (nothing written).
        RunLockedError: When a live process owns the run.
    """
    return run_in_loop(  # type: ignore[no-any-return]
        retry_loaded(
            run_id,
            node=node,
            store=store,
            definition=definition,
            on_event=on_event,
            handle_signals=True,
        ),
        "retry",
    )


async def aretry(
    run_id: str,
    *,
    node: str | None = None,
    store: Store | str | None = None,
    definition: WorkflowDefinition | None = None,
    on_event: EventSink | None = None,
) -> RunResult:
    """`retry` for callers inside an event loop."""
    return await retry_loaded(
        run_id,
        node=node,
        store=store,
        definition=definition,
        on_event=on_event,
        handle_signals=False,
    )


async def retry_loaded(
    run_id: str,
    *,
    node: str | None,
    store: Store | str | None,
    definition: WorkflowDefinition | None,
    on_event: EventSink | None,
    handle_signals: bool,
) -> RunResult:
    """`retry` with the choice of signal handling (what every front end shares)."""
    with resolve_store(store) as opened:
        run = need_run(opened, run_id)
        snapshot = opened.load(run_id)
        assert snapshot is not None
        keys = retry_plan(snapshot, last_graph(opened, run), node)
        ref = run.definition
        with working_directory(ref.cwd if ref else None):
            if definition is None:
                if ref is None:
                    raise InputError(f"Run `{run_id}` recorded no definition; pass one.")
                definition = load_ref(ref).definition
            check_resumable(opened, run, definition)
            now = now_iso()
            retried = NewEvent(
                type="run.retried",
                at=now,
                data={"nodes": [_name(key) for key in keys], **({"node": node} if node else {})},
            )
            batch = Batch(
                run={"status": "running", "error": None, "updated_at": now},
                nodes=[_reset(snapshot.nodes[key]) for key in keys],
                events=[retried],
                # Compare-and-set on the inbox: of two racing retries exactly one applies.
                expect_inbox=run.inbox,
                bump_inbox=True,
            )
            result = opened.commit(run_id, batch, token=None)
            if not result.applied:
                raise InputError(
                    f"Run `{run_id}` changed while being retried (another retry or a "
                    f"decision); see `smithers status {run_id}`."
                )
            if on_event is not None:
                on_event(
                    EventRecord(
                        seq=result.seqs[0],
                        type=retried.type,
                        run_id=run_id,
                        at=now,
                        data=retried.data,
                    )
                )
            fresh = need_run(opened, run_id)
            return await resume_loaded(
                opened,
                fresh,
                definition,
                accept_change=False,
                on_event=on_event,
                handle_signals=handle_signals,
            )
