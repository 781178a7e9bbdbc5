"""The web approvals pages (DESIGN §12) that only read: the inbox, a gate, the runs and a
run. Each calls the document builders every front end shares and renders a template from
the package; ``GET`` never changes anything. The forms that do are in `forms.py`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from smithers.runtime.documents import (
    inbox_document,
    node_states,
    runs_document,
    status_document,
    status_view,
)
from smithers.service.auth import allows
from smithers.service.http import refuse
from smithers.service.svg import STATE_COLOURS, graph_svg
from smithers.service.web import render, signed_in
from smithers.store.records import ApprovalRecord

if TYPE_CHECKING:
    from smithers.service.app import Service
    from smithers.service.web import Page

__all__ = ["PAGE_ROUTES", "gate_context", "gate_page", "inbox", "run_page", "runs"]

_STATUSES = ("running", "waiting-approval", "waiting-signal", "finished", "failed", "cancelled")


async def inbox(service: Service, request: Request) -> Response:
    """GET /: the requested gates across runs, filtered by run or workflow."""
    user = signed_in(service, request)
    rows = inbox_document(service.store, service.store_flag)
    run = request.query_params.get("run") or ""
    workflow = request.query_params.get("workflow") or ""
    shown = [
        r
        for r in rows
        if (not run or r["run_id"] == run) and (not workflow or r["workflow"] == workflow)
    ]
    return render(
        service,
        request,
        "inbox.html",
        user=user,
        rows=shown,
        total=len(rows),
        run=run,
        workflow=workflow,
        workflows=sorted({str(r["workflow"]) for r in rows}),
        after=service.store.last_seq(),
        can_decide=allows(user.role, "decide"),
    )


async def runs(service: Service, request: Request) -> Response:
    """GET /runs[?status=S]: the run list."""
    user = signed_in(service, request)
    status = request.query_params.get("status") or ""
    if status and status not in _STATUSES:
        refuse(400, "MalformedQuery", f"Status {status!r} is unknown; pick one of the list.")
    listed = runs_document(service.store.runs(status or None), service.store_flag)
    return render(
        service,
        request,
        "runs.html",
        user=user,
        runs=listed,
        status=status,
        statuses=_STATUSES,
        after=service.store.last_seq(),
    )


def _graph(view: Any) -> str | None:
    if view.graph is None:
        return None
    return graph_svg(view.graph, node_states(view.snapshot, view.graph), view.run.run_id)


async def _signal_schemas(service: Service, run_id: str, nodes: list[str]) -> dict[str, Any]:
    """The JSON Schema of each waiting signal (a child loads the workflow; never this
    process), or the child's error message."""
    schemas: dict[str, Any] = {}
    for node in nodes:
        child = await service.child(run_id, ["signal", run_id, "--node", node, "--schema"])
        schemas[node] = child.document if child.code == 0 else child.error_message
    return schemas


async def run_page(service: Service, request: Request) -> Response:
    """GET /runs/{run_id}: the graph with states, attempts, decisions, signals, events."""
    user = signed_in(service, request)
    run_id = request.path_params["run_id"]
    view = status_view(service.store, run_id)
    document = status_document(view, service.store_flag)
    waiting = [n.node_id for n in view.snapshot.nodes.values() if n.state == "waiting-signal"]
    events = service.store.events(run_id=run_id)[-200:]
    return render(
        service,
        request,
        "run.html",
        user=user,
        doc=document,
        run_id=run_id,
        svg=_graph(view),
        colours=STATE_COLOURS,
        signals=await _signal_schemas(service, run_id, sorted(waiting)),
        events=list(reversed(events)),
        after=service.store.last_seq(),
        can_decide=allows(user.role, "decide"),
    )


def _record(approvals: list[ApprovalRecord], node_id: str, its: str | None) -> ApprovalRecord:
    found = [a for a in approvals if a.node_id == node_id]
    if its is not None:
        found = [a for a in found if ".".join(map(str, a.iteration)) == its]
    if not found:
        refuse(404, "UnknownNodeError", f"This run has no gate `{node_id}` that was requested.")
    requested = [a for a in found if a.status == "requested"]
    return (requested or found)[-1]


def gate_context(service: Service, run_id: str, node_id: str, its: str | None) -> dict[str, Any]:
    """What the gate page shows: the request, its policy, the run's graph, the decisions."""
    from smithers.runtime.clock import now
    from smithers.runtime.policies import gate_policy_fields

    view = status_view(service.store, run_id)
    record = _record(view.approvals, node_id, its)
    policy = gate_policy_fields(record, starter=view.run.started_by, groups=view.groups, now=now())
    earlier = [a for a in view.approvals if a.decision is not None and a is not record]
    return {
        "run": view.run,
        "gate": record,
        "request": record.request,
        "rules": policy,
        "iteration": ".".join(map(str, record.iteration)),
        "svg": _graph(view),
        "colours": STATE_COLOURS,
        "earlier": earlier,
    }


async def gate_page(service: Service, request: Request) -> Response:
    """GET /runs/{run_id}/gates/{node_id}[?iteration=I]: one gate, to decide."""
    user = signed_in(service, request)
    p = request.path_params
    its = request.query_params.get("iteration")
    context = gate_context(service, p["run_id"], p["node_id"], its)
    return render(
        service,
        request,
        "gate.html",
        user=user,
        can_decide=allows(user.role, "decide"),
        confirm=False,
        error=None,
        note="",
        after=service.store.last_seq(),
        **context,
    )


PAGE_ROUTES: list[tuple[str, Page, list[str]]] = [
    ("/", inbox, ["GET"]),
    ("/runs", runs, ["GET"]),
    ("/runs/{run_id}", run_page, ["GET"]),
    ("/runs/{run_id}/gates/{node_id}", gate_page, ["GET"]),
]
