"""Documents and lines about runs for people and front ends: run results, status, the
approvals inbox, events, progress, and the exact commands that go on. Prints nothing."""

from __future__ import annotations

import os
import shlex
from typing import TYPE_CHECKING, Any

import msgspec

from smithers.runtime.lease import describe_owner
from smithers.store.base import RunSnapshot
from smithers.store.records import (
    ApprovalRecord,
    AttemptRecord,
    EventRecord,
    Iteration,
    RunRecord,
)

if TYPE_CHECKING:
    from smithers.compiler.graph import Graph
    from smithers.runtime.api import RunResult

__all__ = [
    "commands",
    "event_document",
    "event_line",
    "gate_lines",
    "gate_rows",
    "iteration_text",
    "node_states",
    "plain",
    "progress_line",
    "result_document",
    "result_lines",
    "status_document",
    "status_lines",
]

_JSON = msgspec.json.Encoder()
_NO_COMMANDS: dict[str, str | None] = {
    "approve_command": None,
    "deny_command": None,
    "signal_command": None,
}
_STATUS_WORDS = {
    "finished": "finished",
    "failed": "failed",
    "cancelled": "was cancelled",
    "waiting-approval": "is waiting for approval",
    "waiting-signal": "is waiting for a signal",
    "running": "is running",
}


def iteration_text(iteration: Iteration | None) -> str:
    """``(1, 0)`` -> ``1.0`` (the CLI's ``--iteration`` form); ``()`` -> ``""``."""
    return ".".join(map(str, iteration)) if iteration else ""


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
    run_id: str, node_id: str, iteration: Iteration, kind: str, store_flag: str
) -> dict[str, str | None]:
    """The exact commands that decide a gate or feed a signal (quoted for a shell)."""
    its = f" --iteration {iteration_text(iteration)}" if iteration else ""
    base = f"{shlex.quote(run_id)} --node {shlex.quote(node_id)}{its}{store_flag}"
    if kind == "approval":
        return {
            "approve_command": f"smithers approve {base}",
            "deny_command": f"smithers deny {base}",
            "signal_command": None,
        }
    return {
        "approve_command": None,
        "deny_command": None,
        "signal_command": f"smithers signal {base} --data '<json>'",
    }


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


def result_lines(document: dict[str, Any]) -> list[str]:
    """The human form of a `result_document`."""
    lines = [document["note"]] if document.get("note") else []
    status = document["status"]
    lines.append(f"Run {document['run_id']} {_STATUS_WORDS.get(status, status)}.")
    error = document["error"]
    if error is not None:
        where = f" at `{error['node_id']}`" if error["node_id"] else ""
        lines.append(f"  {error['type']}{where}: {error['message']}")
    for item in document["pending"]:
        its = tuple(item["iteration"])
        node = item["node_id"] + (f" (iteration {iteration_text(its)})" if its else "")
        if item["kind"] != "approval":
            lines.append(f"  {node}: waiting for a signal")
            lines.append(f"  deliver: {item['signal_command']}")
            continue
        request = item["request"] or {}
        lines.append(f"  {node}: {request.get('title', '')}")
        if request.get("summary"):
            lines.append(f"    {request['summary']}")
        decision = item["decision"]
        if decision is not None:
            verb = "approved" if decision["approved"] else "denied"
            lines.append(
                f"  {verb} by {decision['decided_by']}; the run applies it when it goes on"
            )
            continue
        lines.append(f'  approve: {item["approve_command"]} --note "..."')
        lines.append(f'  deny:    {item["deny_command"]} --note "..."')
    return lines


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


def status_document(
    run: RunRecord,
    snapshot: RunSnapshot,
    graph: Graph | None,
    attempts: list[AttemptRecord],
    approvals: list[ApprovalRecord],
    store_flag: str,
) -> dict[str, Any]:
    """Everything ``smithers status --json`` shows about a run."""
    pending = [
        {
            "node_id": a.node_id,
            "iteration": list(a.iteration),
            "request": a.request,
            "requested_at": a.requested_at,
            **commands(run.run_id, a.node_id, a.iteration, "approval", store_flag),
        }
        for a in approvals
        if a.status == "requested"
    ]
    run_doc = plain(run)
    run_doc.pop("input", None)
    return {
        "run": run_doc,
        "nodes": [plain(r) for _, r in sorted(snapshot.nodes.items())],
        "attempts": [plain(a) for a in attempts],
        "pending": pending,
        "decisions": [plain(a) for a in approvals if a.decision is not None],
        "approvals": [plain(a) for a in approvals],
        "graph": graph.to_dict() if graph is not None else None,
    }


def status_lines(
    run: RunRecord,
    snapshot: RunSnapshot,
    graph: Graph | None,
    attempts: list[AttemptRecord],
    approvals: list[ApprovalRecord],
    store_flag: str,
) -> list[str]:
    """The human ``smithers status``: header, graph with states, attempts, gates, decisions."""
    ref = run.definition
    where = ""
    if ref is not None:
        where = f" ({ref.module or os.path.relpath(ref.path or '?', ref.cwd)}:{ref.attr})"
    lines = [
        f"Run {run.run_id}  {run.status}",
        f"  workflow: {run.workflow}{where}",
        f"  created:  {run.created_at}   updated: {run.updated_at}",
    ]
    if run.lease is not None:
        lease = run.lease
        lines.append(f"  owner:    {describe_owner(lease)} since {lease.acquired_at}")
    if run.error is not None:
        at = f" at `{run.error.node_id}`" if run.error.node_id else ""
        lines.append(f"  error:    {run.error.type}{at}: {run.error.message}")
    if graph is not None:
        lines += ["", graph.to_text(states=node_states(snapshot, graph))]
    if attempts:
        failed = [attempt for attempt in attempts if attempt.outcome != "ok"]
        lines += [
            "",
            f"Attempts: {len(attempts)} recorded" + (f", {len(failed)} not ok:" if failed else "."),
        ]
        for attempt in failed:
            its = f"@{iteration_text(attempt.iteration)}" if attempt.iteration else ""
            last = (attempt.error or "").strip().splitlines()
            lines.append(
                f"  {attempt.node_id}{its} attempt {attempt.number} {attempt.outcome}: "
                f"{last[-1] if last else ''}"
            )
    pending = [a for a in approvals if a.status == "requested"]
    if pending:
        lines += ["", "Pending gates:"]
        for a in pending:
            its = f" iteration {iteration_text(a.iteration)}" if a.iteration else ""
            lines.append(
                f"  {a.node_id}{its}: {a.request.get('title', '')} (requested {a.requested_at})"
            )
            if a.request.get("summary"):
                lines.append(f"    {a.request['summary']}")
            for key, value in (a.request.get("metadata") or {}).items():
                lines.append(f"    {key}: {value}")
            cmds = commands(run.run_id, a.node_id, a.iteration, "approval", store_flag)
            lines.append(f"    approve: {cmds['approve_command']}")
            lines.append(f"    deny:    {cmds['deny_command']}")
    decided = [a for a in approvals if a.decision is not None]
    if decided:
        lines += ["", "Decisions:"]
        for a in decided:
            its = f" iteration {iteration_text(a.iteration)}" if a.iteration else ""
            note = (a.decision or {}).get("note")
            lines.append(
                f"  {a.node_id}{its}: {a.status} by {a.decided_by} at {a.decided_at}"
                + (f" - {note!r}" if note else "")
                + f" (recorded by {a.recorded_by} on {a.recorded_on})"
            )
    return lines


# -- the approvals inbox -----------------------------------------------------------------------


def gate_rows(
    gates: list[tuple[RunRecord, ApprovalRecord]], store_flag: str
) -> list[dict[str, Any]]:
    """One row per requested gate: who waits, for what, since when, and how to decide."""
    rows = []
    for run, a in gates:
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
                **{
                    k: v
                    for k, v in commands(
                        run.run_id, a.node_id, a.iteration, "approval", store_flag
                    ).items()
                    if k != "signal_command"
                },
            }
        )
    return rows


def gate_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The human ``smithers approvals``."""
    if not rows:
        return ["No gates are waiting for a decision."]
    lines = []
    for row in rows:
        its = tuple(row["iteration"])
        which = f" iteration {iteration_text(its)}" if its else ""
        lines.append(
            f"{row['run_id']}  {row['node_id']}{which}  ({row['workflow']}, waiting since "
            f"{row['waiting_since']})"
        )
        lines.append(f"  {row['title']}")
        if row["summary"]:
            lines.append(f"  {row['summary']}")
        lines.extend(f"  {key}: {value}" for key, value in row["metadata"].items())
        lines.append(f"  approve: {row['approve_command']}")
        lines.append(f"  deny:    {row['deny_command']}")
    return lines


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


def event_line(event: EventRecord) -> str:
    """One event as a line of ``smithers events``."""
    node = f" {event.node_id}" if event.node_id else ""
    its = f"@{iteration_text(event.iteration)}" if event.iteration else ""
    data = f" {_JSON.encode(event.data).decode()}" if event.data else ""
    return f"{event.seq:>6}  {event.at}  {event.type:<20} {event.run_id}{node}{its}{data}"


def progress_line(event: EventRecord) -> str | None:
    """The line a person watching a run sees for an event, or None for a quiet one."""
    data = event.data
    node = (event.node_id or "") + (
        f"@{iteration_text(event.iteration)}" if event.iteration else ""
    )
    kind = event.type
    if kind == "node.started":
        return f"  started   {node} (attempt {data.get('attempt', 1)})"
    if kind == "node.finished":
        ms = data.get("duration_ms")
        return f"  finished  {node}" + (f" in {ms:.0f} ms" if isinstance(ms, int | float) else "")
    if kind == "node.failed":
        return f"  failed    {node}: {data.get('error', '')}"
    if kind == "node.retrying":
        return (
            f"  retrying  {node} in {data.get('delay', 0):g} s (attempt {data.get('attempt')} "
            f"failed: {data.get('error', '')})"
        )
    if kind in ("node.skipped", "node.cancelled"):
        return f"  {kind.split('.')[1]:<9} {node} ({data.get('reason', '')})"
    if kind == "node.interrupted":
        return f"  interrupted {node} (attempt {data.get('attempt')}); it will run again"
    if kind == "approval.requested":
        return f"  waiting   {node} for approval: {(data.get('request') or {}).get('title', '')}"
    if kind == "signal.waiting":
        return f"  waiting   {node} for a signal"
    if kind == "signal.rejected":
        return f"  rejected  data for {node}: {data.get('error', '')}"
    if kind == "workflow.changed":
        return (
            "Warning: the workflow's source changed since this run started; finished nodes "
            "still mount the same way, so it goes on."
        )
    if kind in ("run.started", "run.resumed"):
        verb = "started" if kind == "run.started" else "resumed"
        return f"Run {event.run_id} {verb} (pid {data.get('pid')})"
    return None
