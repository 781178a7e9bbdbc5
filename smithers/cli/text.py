"""How the CLI shows documents to people: the text forms of run results, status, the
approvals inbox, events and progress lines. Returns lines; printing is the caller's."""

from __future__ import annotations

import os
from typing import Any

import msgspec

from smithers.components.policy import format_duration
from smithers.runtime import clock
from smithers.runtime.documents import (
    StatusView,
    commands,
    iteration_text,
    needs_resume,
    node_states,
    resume_command,
    stranded,
    unapplied,
    worker_document,
)
from smithers.runtime.lease import describe_owner
from smithers.runtime.policies import gate_policy_fields
from smithers.store.records import EventRecord, RunStatus

__all__ = ["event_line", "gate_lines", "progress_line", "result_lines", "status_lines"]

_JSON = msgspec.json.Encoder()
_STATUS_WORDS: dict[RunStatus, str] = {
    "queued": "is queued",
    "finished": "finished",
    "failed": "failed",
    "cancelled": "was cancelled",
    "waiting-approval": "is waiting for approval",
    "waiting-signal": "is waiting for a signal",
    "waiting-timer": "is waiting for a timer",
    "running": "is running",
}


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
        if item["kind"] == "timer":
            lines.append(f"  {node}: waiting for a timer; `smithers resume` goes on once it is due")
            continue
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


def status_lines(view: StatusView, store_flag: str) -> list[str]:
    """The human ``smithers status``: header, graph with states, attempts, gates, decisions."""
    run, snapshot, graph = view.run, view.snapshot, view.graph
    attempts, approvals = view.attempts, view.approvals
    ref = run.definition
    where = ""
    if ref is not None:
        where = f" ({ref.module or os.path.relpath(ref.path or '?', ref.cwd)}:{ref.attr})"
    lines = [
        f"Run {run.run_id}  {run.status}",
        f"  workflow: {run.workflow}{where}",
        f"  created:  {run.created_at}   updated: {run.updated_at}",
    ]
    if run.started_by:
        lines.append(f"  started by: {run.started_by}")
    if stranded(run):
        owner = f"{describe_owner(run.lease)}, which is gone" if run.lease is not None else "nobody"
        lines.append(f"  owner:    {owner}: nothing is running this run (it was interrupted)")
    elif run.lease is not None:
        lease = run.lease
        lines.append(f"  owner:    {describe_owner(lease)} since {lease.acquired_at}")
    if needs_resume(run, snapshot):
        lines.append(f"  go on:    {resume_command(run.run_id, store_flag)}")
    if run.error is not None:
        at = f" at `{run.error.node_id}`" if run.error.node_id else ""
        lines.append(f"  error:    {run.error.type}{at}: {run.error.message}")
    worker = worker_document(view.worker)
    if worker is not None:
        lines.append(
            f"  worker:   resume failed {worker['failures']} time(s), last at "
            f"{worker['failed_at']}: {worker['error']}; next try at {worker['retry_at']}"
        )
    if graph is not None:
        lines += ["", graph.to_text(states=node_states(snapshot, graph))]
    if attempts:
        failed = [attempt for attempt in attempts if attempt.outcome != "ok"]
        lines += [
            "",
            f"Attempts: {len(attempts)} recorded" + (f", {len(failed)} not ok:" if failed else "."),
        ]
        last_of = {(a.node_id, a.iteration): a.number for a in failed}
        for attempt in failed:
            its = f"@{iteration_text(attempt.iteration)}" if attempt.iteration else ""
            last = (attempt.error or "").strip().splitlines()
            lines.append(
                f"  {attempt.node_id}{its} attempt {attempt.number} {attempt.outcome}: "
                f"{last[-1] if last else ''}"
            )
            if last_of[(attempt.node_id, attempt.iteration)] == attempt.number:
                lines.extend(f"    {line}" for line in _last_frames(last))
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
            lines.extend(
                policy_lines(
                    gate_policy_fields(
                        a, starter=run.started_by, groups=view.groups, now=clock.now()
                    ),
                    "    ",
                )
            )
            cmds = commands(run.run_id, a.node_id, a.iteration, "approval", store_flag)
            lines.append(f"    approve: {cmds['approve_command']}")
            lines.append(f"    deny:    {cmds['deny_command']}")
    waiting_signals = [
        key for key, record in sorted(snapshot.nodes.items()) if record.state == "waiting-signal"
    ]
    if waiting_signals:
        lines += ["", "Waiting signals:"]
        for node_id, iteration in waiting_signals:
            its = f" iteration {iteration_text(iteration)}" if iteration else ""
            cmds = commands(run.run_id, node_id, iteration, "signal", store_flag)
            lines.append(f"  {node_id}{its}")
            lines.append(f"    deliver: {cmds['signal_command']}")
            lines.append(f"    schema:  {cmds['schema_command']}")
    timers = [
        (key, record)
        for key, record in sorted(snapshot.nodes.items())
        if record.state == "waiting-timer"
        or (record.state == "waiting-signal" and record.due_at is not None)
    ]
    if timers:
        lines += ["", "Due times:"]
        for (node_id, iteration), record in timers:
            its = f" iteration {iteration_text(iteration)}" if iteration else ""
            what = "fires" if record.state == "waiting-timer" else "times out"
            lines.append(f"  {node_id}{its} {what} at {record.due_at}")
    decided = [a for a in approvals if a.decision is not None]
    not_applied = {(a.node_id, a.iteration) for a in unapplied(snapshot)}
    if decided:
        lines += ["", "Decisions:"]
        for a in decided:
            its = f" iteration {iteration_text(a.iteration)}" if a.iteration else ""
            note = (a.decision or {}).get("note")
            lines.append(
                f"  {a.node_id}{its}: {a.status} by {a.decided_by} at {a.decided_at}"
                + (f" - {note!r}" if note else "")
                + f" (recorded by {a.recorded_by} on {a.recorded_on})"
                + ("; decided, not applied yet" if (a.node_id, a.iteration) in not_applied else "")
            )
    return lines


def _last_frames(lines: list[str], most: int = 8) -> list[str]:
    """The last frames of a recorded traceback (nothing for a one-line error)."""
    if len(lines) < 2:
        return []
    start = next((i for i, line in enumerate(lines) if line.startswith("Traceback")), 0)
    return lines[start:][-most:]


def gate_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The human ``smithers approvals``."""
    if not rows:
        return ["No gates are waiting for a decision."]
    lines = []
    for row in rows:
        its = tuple(row["iteration"])
        which = f" iteration {iteration_text(its)}" if its else ""
        decision = row.get("decision")
        state = (
            "decided, not applied yet"
            if decision is not None
            else f"waiting since {row['waiting_since']}"
        )
        lines.append(f"{row['run_id']}  {row['node_id']}{which}  ({row['workflow']}, {state})")
        lines.append(f"  {row['title']}")
        if row["summary"]:
            lines.append(f"  {row['summary']}")
        lines.extend(f"  {key}: {value}" for key, value in row["metadata"].items())
        lines.extend(policy_lines(row, "  "))
        if decision is not None:
            verb = "approved" if decision.get("approved") else "denied"
            lines.append(
                f"  {verb} by {decision.get('decided_by')} at {decision.get('decided_at')}"
            )
            lines.append(f"  go on:   {row['resume_command']}")
            continue
        lines.append(f"  approve: {row['approve_command']}")
        lines.append(f"  deny:    {row['deny_command']}")
    return lines


def policy_lines(fields: dict[str, Any], pad: str) -> list[str]:
    """A gate's policy for people: deadline and time left, who may decide, votes so far
    (nothing for a gate with the default policy)."""
    lines = []
    if fields.get("deadline"):
        left = fields.get("time_left")
        shown = format_duration(left - left % 60 if left >= 60 else left) if left else ""
        when = f" ({shown} left)" if left else " (due now)" if left == 0 else ""
        lines.append(f"{pad}deadline: {fields['deadline']}{when}, then {fields['on_timeout']}")
    if fields.get("approvers") is not None or fields.get("forbid_self"):
        lines.append(f"{pad}may decide: {fields['may_decide']}")
    quorum = fields.get("quorum", 1)
    votes = fields.get("votes") or []
    if quorum > 1:
        approvals = sum(1 for v in votes if v["approved"])
        lines.append(f"{pad}approvals: {approvals} of {quorum}")
    if quorum > 1 or len(votes) > 1:
        for vote in votes:
            verb = "approved" if vote["approved"] else "denied"
            note = f" - {vote['note']!r}" if vote.get("note") else ""
            lines.append(f"{pad}  {vote['by']} {verb} at {vote['at']}{note}")
    return lines


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
        due = f" until {data['due_at']}" if data.get("due_at") else ""
        return f"  waiting   {node} for a signal{due}"
    if kind == "timer.waiting":
        return f"  waiting   {node} until {data.get('due_at')}"
    if kind == "approval.expired":
        verb = "approved" if (data.get("decision") or {}).get("approved") else "denied"
        return f"  expired   {node}: not decided by {data.get('deadline')}, so {verb}"
    if kind == "signal.expired":
        return f"  expired   {node}: no data within {data.get('waited')} ({data.get('on_timeout')})"
    if kind == "signal.rejected":
        return f"  rejected  data for {node}: {data.get('error', '')}"
    if kind == "workflow.changed":
        return "Warning: " + str(
            data.get("message")
            or "the workflow's source changed since this run started; it goes on."
        )
    if kind == "loop.max-reached":
        return (
            f"  stopped   loop {node} at max_iterations={data.get('max_iterations')} "
            f"({data.get('on_max_reached')})"
        )
    if kind == "run.retried":
        nodes = ", ".join(data.get("nodes") or ()) or "no failed node"
        return f"Run {event.run_id} retried: {nodes} run again"
    if kind in ("run.started", "run.resumed"):
        verb = "started" if kind == "run.started" else "resumed"
        return f"Run {event.run_id} {verb} (pid {data.get('pid')})"
    return None
