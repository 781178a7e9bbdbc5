"""Signed links (``/hooks/{token}``): a GET shows what the link does and never decides (an
approval link's confirmation page; a signal link's JSON Schema); a POST does it, as the name
the link was issued for. Bad signature 404, expired 410, used 409."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from smithers.errors import AlreadyDecidedError
from smithers.runtime.clock import format_iso
from smithers.runtime.links import Link, verify
from smithers.runtime.remote import decide_as, decision_document
from smithers.service.http import json_response, refuse
from smithers.store.records import ApprovalRecord

if TYPE_CHECKING:
    from smithers.service.app import Endpoint, Service

__all__ = ["HOOK_ROUTES", "hook_get", "hook_post"]

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto">
<h1>{verb} this gate?</h1>
<p><strong>{title}</strong></p>
<p>{summary}</p>
<dl>{metadata}</dl>
<p>Gate <code>{node}</code> of run <code>{run}</code>, waiting since {since}.
You act as <code>{who}</code>; the link expires at {expires}.</p>
<form method="post"><label>Note <input name="note" maxlength="2000"></label>
<button type="submit">{verb}</button></form>
</body></html>
"""


def _gate(service: Service, link: Link) -> ApprovalRecord:
    """The gate's approval record (404 when there is none)."""
    for record in service.store.approvals(link.run_id):
        if record.node_id == link.node_id and (
            link.iteration is None or record.iteration == link.iteration
        ):
            return record
    refuse(404, "UnknownNodeError", f"Run `{link.run_id}` has no gate `{link.node_id}`.")


def _used(link: Link, status: str, decided_by: str | None) -> None:
    """409 once the gate is no longer requested: this link, or another decision, used it."""
    if status == "requested":
        return
    mine = decided_by == link.issued_for and status == (
        "approved" if link.action == "approve" else "denied"
    )
    message = (
        f"This link was already used: gate `{link.node_id}` of run `{link.run_id}` is {status}."
        if mine
        else f"Gate `{link.node_id}` of run `{link.run_id}` is {status}"
        + (f" by {decided_by}" if decided_by else "")
        + "; a decision is final."
    )
    refuse(409, "LinkUsedError" if mine else "AlreadyDecidedError", message)


async def hook_get(service: Service, request: Request) -> Response:
    """Show what a link does; never decide."""
    link = verify(service.store, request.path_params["token"])
    if link.action == "signal":
        args = ["signal", link.run_id, "--node", link.node_id, "--schema"]
        child = await service.child(link.run_id, args)
        if child.code != 0:
            refuse(404, child.error_type or "UnknownNodeError", child.error_message)
        return json_response(child.document)
    record = _gate(service, link)
    _used(link, record.status, record.decided_by)
    request_doc = record.request
    metadata = request_doc.get("metadata") or {}
    assert isinstance(metadata, dict)
    page = _PAGE.format(
        verb="Approve" if link.action == "approve" else "Deny",
        title=html.escape(str(request_doc.get("title") or "")),
        summary=html.escape(str(request_doc.get("summary") or "")),
        metadata="".join(
            f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(str(v))}</dd>"
            for k, v in metadata.items()
        ),
        node=html.escape(link.node_id),
        run=html.escape(link.run_id),
        since=html.escape(record.requested_at),
        who=html.escape(link.issued_for),
        expires=format_iso(link.expires_at),
    )
    return HTMLResponse(page)


async def hook_post(service: Service, request: Request) -> Response:
    """Do what the link says, as the name it was issued for."""
    link = verify(service.store, request.path_params["token"])
    if link.action == "signal":
        from smithers.service.app import deliver_signal

        raw = await request.body()
        return await deliver_signal(service, link.run_id, link.node_id, raw, link.iteration)
    note = None
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form = parse_qs((await request.body()).decode(errors="replace"))
        note = (form.get("note") or [""])[0] or None
    record = _gate(service, link)
    _used(link, record.status, record.decided_by)
    try:
        recorded = decide_as(
            service.store,
            link.run_id,
            link.node_id,
            link.iteration,
            approved=link.action == "approve",
            note=note,
            by=link.issued_for,
        )
    except AlreadyDecidedError:
        record = _gate(service, link)  # another request won the race
        _used(link, record.status, record.decided_by)
        raise
    if recorded.repeated:
        _used(link, recorded.record.status, recorded.record.decided_by)
    service.metrics.decisions.labels("approved" if link.action == "approve" else "denied").inc()
    service.news()
    return json_response(decision_document(service.store, recorded, service.store_flag))


HOOK_ROUTES: list[tuple[str, Endpoint, list[str]]] = [
    ("/hooks/{token}", hook_get, ["GET"]),
    ("/hooks/{token}", hook_post, ["POST"]),
]
