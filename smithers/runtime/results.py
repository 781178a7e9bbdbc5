"""What a run's caller gets back (`RunResult`, `PendingNode`) and the shared store helpers
of every use case. Imports no asyncio and no engine, so read-only commands stay light."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, Literal

import attrs
import msgspec

from smithers.compiler.codec import decode_frame, decode_value
from smithers.compiler.graph import Graph
from smithers.components.nodes import ApprovalDecision, ApprovalRequest
from smithers.store import open_store
from smithers.store.base import RunSnapshot, Store, run_not_found
from smithers.store.records import ErrorInfo, RunRecord, RunStatus

__all__ = [
    "PendingNode",
    "RunError",
    "RunResult",
    "WaitKind",
    "last_graph",
    "resolve_store",
    "result_of",
]

WaitKind = Literal["approval", "signal", "timer"]
"""What a waiting node waits for: a person's decision, data from outside, or time."""

RunError = ErrorInfo
"""Why a run failed: the error type, its message and the node it came from (the stored
record itself: one shape for the store, the result and the documents)."""


def last_graph(store: Store, run: RunRecord) -> Graph | None:
    """The run's latest graph frame (node ids, kinds, paths; no callables)."""
    if not run.frame:
        return None
    raw = store.frame(run.frame)
    return decode_frame(raw) if raw else None


@attrs.frozen
class PendingNode:
    """A node the run waits on: an approval gate (with its request) or a signal."""

    node_id: str
    iteration: tuple[int, ...]
    kind: WaitKind
    request: ApprovalRequest | None
    waiting_since: str | None
    decision: ApprovalDecision | None = None  # decided, not yet applied by the run


@attrs.frozen
class RunResult:
    """Where a run stands after `run`/`resume` returned.

    Attributes:
        run_id: The run's id.
        status: ``finished``, ``failed``, ``cancelled``, ``waiting-approval``,
            ``waiting-signal`` or ``waiting-timer`` (``running`` only when another process
            owns it).
        error: Why it failed, or None.
        outputs: Node id to output (a loop-body node's latest iteration).
        pending: The gates and signals it waits on.
    """

    run_id: str
    status: RunStatus
    error: RunError | None
    outputs: dict[str, Any]
    pending: tuple[PendingNode, ...] = ()


@contextlib.contextmanager
def resolve_store(store: Store | str | os.PathLike[str] | None) -> Iterator[Store]:
    """Use a given store, or open (and afterwards close) the one at a path or the default."""
    if store is not None and not isinstance(store, str | os.PathLike):
        yield store
        return
    opened = open_store(os.fspath(store) if store is not None else None)
    try:
        yield opened
    finally:
        opened.close()


def result_of(
    store: Store,
    run_id: str,
    graph: Graph | None = None,
    snapshot: RunSnapshot | None = None,
) -> RunResult:
    """Build the `RunResult` of a run from what the store holds (or from ``snapshot``, the
    committed records an engine that just finished the run holds in memory)."""
    if snapshot is None:
        snapshot = store.load(run_id)
    if snapshot is None:
        raise run_not_found(store, run_id)
    run = snapshot.run
    if graph is None:
        graph = last_graph(store, run)
    types = graph.output_types() if graph is not None else {}
    outputs: dict[str, Any] = {}
    for (node_id, _iteration), raw in sorted(snapshot.outputs.items()):
        outputs[node_id] = decode_value(raw, types.get(node_id))
    pending = []
    for (node_id, iteration), record in sorted(snapshot.nodes.items()):
        if record.state == "waiting-approval":
            approval = snapshot.approvals.get((node_id, iteration))
            request = (
                msgspec.convert(approval.request, ApprovalRequest) if approval is not None else None
            )
            decision = None
            if approval is not None and approval.decision is not None:
                decision = msgspec.convert(approval.decision, ApprovalDecision)
            pending.append(
                PendingNode(
                    node_id,
                    iteration,
                    "approval",
                    request,
                    approval.requested_at if approval else record.started_at,
                    decision,
                )
            )
        elif record.state == "waiting-signal":
            pending.append(PendingNode(node_id, iteration, "signal", None, record.started_at))
        elif record.state == "waiting-timer":
            pending.append(PendingNode(node_id, iteration, "timer", None, record.started_at))
    return RunResult(run.run_id, run.status, run.error, outputs, tuple(pending))
