"""The read documents every front end serves: run results, the run list, status, the
approvals inbox, events, a node's output and a run's graph, and the exact commands that go
on. Built once, printed by ``--json`` and served by the HTTP API. Prints nothing and imports
no asyncio (read-only commands stay light)."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, assert_never

import attrs
import msgspec

from smithers.compiler.iterations import iteration_text
from smithers.errors import UnknownNodeError
from smithers.store.base import RunSnapshot, Store, run_not_found
from smithers.store.records import (
    ApprovalRecord,
    AttemptRecord,
    EventRecord,
    Iteration,
    RunRecord,
    WorkerClaim,
)

if TYPE_CHECKING:
    from smithers.compiler.graph import Graph
    from smithers.components.definition import WorkflowDefinition
    from smithers.runtime.results import RunResult, WaitKind

__all__ = [
    "StatusView",
    "commands",
    "event_document",
    "gate_rows",
    "inbox_document",
    "iteration_text",
    "needs_resume",
    "node_states",
    "output_value",
    "plain",
    "result_document",
    "resume_command",
    "run_graph",
    "runs_document",
    "status_document",
    "status_view",
    "stranded",
    "unapplied",
    "worker_document",
]

_JSON = msgspec.json.Encoder()
_NO_COMMANDS: dict[str, str | None] = {
    "approve_command": None,
    "deny_command": None,
    "signal_command": None,
    "schema_command": None,
}


def plain(value: Any) -> Any:
    """A record as JSON-able builtins under its Python field names (not its wire names)."""
    if isinstance(value, msgspec.Struct):
        return {name: plain(getattr(value, name)) for name in value.__struct_fields__}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def commands(
    run_id: str, node_id: str, iteration: Iteration, kind: WaitKind, store_flag: str
) -> dict[str, str | None]:
    """The exact commands that decide a gate or feed a signal (quoted for a shell)."""
    its = f" --iteration {iteration_text(iteration)}" if iteration else ""
    base = f"{shlex.quote(run_id)} --node {shlex.quote(node_id)}{its}{store_flag}"
    match kind:
        case "approval":
            return {
                "approve_command": f"smithers approve {base}",
                "deny_command": f"smithers deny {base}",
                "signal_command": None,
                "schema_command": None,
            }
        case "signal":
            return {
                "approve_command": None,
                "deny_command": None,
                "signal_command": f"smithers signal {base} --data '<json>'",
                "schema_command": f"smithers signal {base} --schema",
            }
        case "timer":
            return dict(_NO_COMMANDS)
        case unknown:
            assert_never(unknown)


def stranded(run: RunRecord) -> bool:
    """Whether a run says ``running`` while no live process runs it (after Ctrl-C, kill -9
    or a crash): it goes on only when someone resumes it (or a worker does)."""
    from smithers.runtime.lease import is_dead

    return run.status == "running" and (run.lease is None or is_dead(run.lease))


def unapplied(snapshot: RunSnapshot) -> list[ApprovalRecord]:
    """Decisions recorded whose gate still waits: the run has not applied them yet (the
    process that recorded them stopped before resuming)."""
    return [
        a
        for key, a in sorted(snapshot.approvals.items())
        if a.decision is not None
        and (node := snapshot.nodes.get(key)) is not None
        and node.state == "waiting-approval"
    ]


def needs_resume(run: RunRecord, snapshot: RunSnapshot | None = None) -> bool:
    """Whether nothing will move this run until it is resumed."""
    if stranded(run):
        return True
    return snapshot is not None and run.lease is None and bool(unapplied(snapshot))


def resume_command(run_id: str, store_flag: str) -> str:
    """The exact command that goes on with a run."""
    return f"smithers resume {shlex.quote(run_id)}{store_flag}"


# -- run results -------------------------------------------------------------------------------


def result_document(result: RunResult, store_flag: str, note: str | None = None) -> dict[str, Any]:
    """``{run_id, status, error, pending: [...]}``: what run/resume/approve/deny/signal print."""
    pending = [
        {
            "node_id": p.node_id,
            "iteration": list(p.iteration),
            "kind": p.kind,
            "request": msgspec.to_builtins(p.request) if p.request is not None else None,
            "waiting_since": p.waiting_since,
            "decision": msgspec.to_builtins(p.decision) if p.decision is not None else None,
            **(
                commands(result.run_id, p.node_id, p.iteration, p.kind, store_flag)
                if p.decision is None  # a decided gate takes no second decision
                else _NO_COMMANDS
            ),
        }
        for p in result.pending
    ]
    error = None
    if result.error is not None:
        error = {
            "type": result.error.type,
            "message": result.error.message,
            "node_id": result.error.node_id,
        }
    document: dict[str, Any] = {
        "run_id": result.run_id,
        "status": result.status,
        "error": error,
        "pending": pending,
    }
    if note:
        document["note"] = note
    return document


# -- status ------------------------------------------------------------------------------------


def node_states(snapshot: RunSnapshot, graph: Graph | None) -> dict[str, str]:
    """Node id -> state for the nodes of a graph (never-started nodes are ``pending``)."""
    states: dict[str, str] = {}
    for node in graph.nodes if graph is not None else ():
        record = snapshot.nodes.get((node.id, node.iteration))
        states[node.id] = (
            record.state if record is not None else ("skipped" if node.skipped else "pending")
        )
    return states


def _snapshot(store: Store, run_id: str) -> RunSnapshot:
    snapshot = store.load(run_id)
    if snapshot is None:
        raise run_not_found(store, run_id)
    return snapshot


@attrs.frozen
class StatusView:
    """Everything ``status`` shows about a run, read from one snapshot."""

    run: RunRecord
    snapshot: RunSnapshot
    graph: Graph | None
    attempts: list[AttemptRecord]
    approvals: list[ApprovalRecord]
    groups: dict[str, tuple[str, ...]] = attrs.field(factory=dict)
    worker: WorkerClaim | None = None  # a worker's failures to resume the run, if any


def status_view(store: Store, run_id: str) -> StatusView:
    """Read a run's records, latest graph and attempts.

    Raises:
        RunNotFoundError: For an unknown run.
    """
    from smithers.runtime.results import last_graph

    snapshot = _snapshot(store, run_id)
    approvals = [record for _, record in sorted(snapshot.approvals.items())]
    graph = last_graph(store, snapshot.run)
    claim = store.worker_claim(run_id)
    worker = claim if claim is not None and claim.failures else None
    return StatusView(
        snapshot.run,
        snapshot,
        graph,
        store.attempts(run_id),
        approvals,
        store.actor_groups(),
        worker,
    )


def status_document(view: StatusView, store_flag: str) -> dict[str, Any]:
    """Everything ``smithers status --json`` shows about a run."""
    from smithers.runtime.clock import now
    from smithers.runtime.policies import gate_policy_fields

    run, approvals = view.run, view.approvals
    at = now()
    pending = [
        {
            "node_id": a.node_id,
            "iteration": list(a.iteration),
            "request": a.request,
            "requested_at": a.requested_at,
            **gate_policy_fields(a, starter=run.started_by, groups=view.groups, now=at),
            **commands(run.run_id, a.node_id, a.iteration, "approval", store_flag),
        }
        for a in approvals
        if a.status == "requested"
    ]
    run_doc = plain(run)
    run_doc.pop("input", None)
    waiting = needs_resume(run, view.snapshot)
    return {
        "run": run_doc,
        "interrupted": stranded(run),
        "unapplied": [
            {"node_id": a.node_id, "iteration": list(a.iteration), "status": a.status}
            for a in unapplied(view.snapshot)
        ],
        "resume_command": resume_command(run.run_id, store_flag) if waiting else None,
        "nodes": [plain(r) for _, r in sorted(view.snapshot.nodes.items())],
        "attempts": [plain(a) for a in view.attempts],
        "pending": pending,
        "decisions": [plain(a) for a in approvals if a.decision is not None],
        "approvals": [plain(a) for a in approvals],
        "graph": view.graph.to_dict() if view.graph is not None else None,
        "worker": worker_document(view.worker),
    }


def worker_document(claim: WorkerClaim | None) -> dict[str, Any] | None:
    """A worker's failures to resume a run (it retries after ``retry_at``), or None."""
    if claim is None or not claim.failures:
        return None
    from smithers.runtime.clock import format_iso

    return {
        "failures": claim.failures,
        "error": claim.error,
        "failed_at": claim.failed_at,
        "retry_at": format_iso(claim.until),
    }


# -- the run list ------------------------------------------------------------------------------


def runs_document(runs: list[RunRecord], store_flag: str) -> list[dict[str, Any]]:
    """``smithers runs --json``: one entry per run (``interrupted`` when it says running but
    nothing runs it, with the command that resumes it)."""
    return [
        {
            "run_id": r.run_id,
            "status": r.status,
            "interrupted": stranded(r),
            "resume_command": resume_command(r.run_id, store_flag) if stranded(r) else None,
            "workflow": r.workflow,
            "created_at": r.created_at,
            "updated_at": r.updated_at,
            "error": plain(r.error) if r.error else None,
        }
        for r in runs
    ]


# -- the approvals inbox -----------------------------------------------------------------------


def gate_rows(
    gates: list[tuple[RunRecord, ApprovalRecord]],
    store_flag: str,
    groups: Mapping[str, tuple[str, ...]] | None = None,
) -> list[dict[str, Any]]:
    """One row per requested gate: who waits, for what, since when, how to decide, and its
    policy (deadline, time left, who may decide, votes so far)."""
    from smithers.runtime.clock import now
    from smithers.runtime.policies import gate_policy_fields

    rows = []
    at = now()
    for run, a in gates:
        policy = gate_policy_fields(a, starter=run.started_by, groups=groups or {}, now=at)
        rows.append(
            {
                "run_id": run.run_id,
                "node_id": a.node_id,
                "iteration": list(a.iteration),
                "workflow": run.workflow,
                "title": a.request.get("title"),
                "summary": a.request.get("summary"),
                "metadata": a.request.get("metadata", {}),
                "waiting_since": a.requested_at,
                "on_deny": a.on_deny,
                **policy,
                "decision": None,
                "resume_command": None,
                **{
                    k: v
                    for k, v in commands(
                        run.run_id, a.node_id, a.iteration, "approval", store_flag
                    ).items()
                    if k not in ("signal_command", "schema_command")
                },
            }
        )
    return rows


# -- events ------------------------------------------------------------------------------------


def event_document(event: EventRecord) -> dict[str, Any]:
    """``{seq, type, run_id, node_id, iteration, at, data}``."""
    return {
        "seq": event.seq,
        "type": event.type,
        "run_id": event.run_id,
        "node_id": event.node_id,
        "iteration": list(event.iteration) if event.iteration is not None else None,
        "at": event.at,
        "data": event.data,
    }


def inbox_document(store: Store, store_flag: str) -> list[dict[str, Any]]:
    """Every requested gate across runs (``smithers approvals``), then every decision that
    nothing has applied yet (its recorder stopped before resuming), with the command that
    applies it. Reads the requested-gates index and the runs with news, never every run."""
    from smithers.runtime.clock import now
    from smithers.runtime.policies import gate_policy_fields

    groups = store.actor_groups()
    rows = gate_rows(store.requested_gates(), store_flag, groups)
    at = now()
    for due in store.due_runs(at, 1000):
        if due.reason != "news":
            continue
        snapshot = store.load(due.run.run_id)
        if snapshot is None:
            continue
        for a in unapplied(snapshot):
            rows.append(
                {
                    "run_id": snapshot.run.run_id,
                    "node_id": a.node_id,
                    "iteration": list(a.iteration),
                    "workflow": snapshot.run.workflow,
                    "title": a.request.get("title"),
                    "summary": a.request.get("summary"),
                    "metadata": a.request.get("metadata", {}),
                    "waiting_since": a.requested_at,
                    "on_deny": a.on_deny,
                    **gate_policy_fields(a, starter=snapshot.run.started_by, groups=groups, now=at),
                    "decision": a.decision,
                    "resume_command": resume_command(snapshot.run.run_id, store_flag),
                    "approve_command": None,
                    "deny_command": None,
                }
            )
    return rows


# -- outputs and graphs ------------------------------------------------------------------------


def output_value(store: Store, run_id: str, node_id: str, iteration: Iteration | None) -> Any:
    """A node's committed output as JSON-able builtins (the latest iteration by default).

    Raises:
        RunNotFoundError: For an unknown run.
        UnknownNodeError: For a node the run never had, or one with no output there.
    """
    from smithers.compiler.codec import decode_value
    from smithers.runtime.results import last_graph

    snapshot = _snapshot(store, run_id)
    found = sorted(k for k in snapshot.outputs if k[0] == node_id)
    graph = last_graph(store, snapshot.run)
    current = graph.by_id.get(node_id) if graph is not None else None
    if current is None and not found and not any(k[0] == node_id for k in snapshot.nodes):
        known = ", ".join(f"`{n.id}`" for n in (graph.nodes if graph else ()))
        raise UnknownNodeError(
            f"Run `{run_id}` has no node `{node_id}`" + (f"; its nodes: {known}." if known else ".")
        )
    its = iteration
    if its is None:
        if current is not None and (node_id, current.iteration) in snapshot.outputs:
            its = current.iteration
        elif found:
            its = found[-1][1]
    if its is None or (node_id, its) not in snapshot.outputs:
        where = f" at iteration {iteration_text(its)}" if its else ""
        have = ", ".join(iteration_text(k[1]) or "()" for k in found)
        hint = (
            f"; it has outputs at iterations {have}"
            if found
            else f"; see `smithers status {run_id}`"
        )
        raise UnknownNodeError(f"Node `{node_id}` of run `{run_id}` has no output{where}{hint}.")
    return decode_value(snapshot.outputs[(node_id, its)])


def run_graph(
    store: Store, run_id: str, definition: WorkflowDefinition | None = None
) -> tuple[Graph, dict[str, str]]:
    """A run's graph with node states: its latest frame, or ``definition`` rendered against
    its committed outputs.

    Raises:
        RunNotFoundError: For an unknown run.
        UnknownNodeError: When the run has no graph yet.
    """
    from smithers.runtime.results import last_graph

    snapshot = _snapshot(store, run_id)
    if definition is not None:
        from smithers.runtime.api import current_graph

        graph = current_graph(store, run_id, definition)
    else:
        found = last_graph(store, snapshot.run)
        if found is None:
            raise UnknownNodeError(f"Run {run_id} has no graph yet.")
        graph = found
    return graph, node_states(snapshot, graph)
