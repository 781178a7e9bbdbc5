"""Signed links (``/hooks/{token}``): a GET shows what the link does and never decides (an
approval link's confirmation page; a signal link's JSON Schema); a POST does it, as the name
the link was issued for. Bad signature 404, expired 410, used 409."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from smithers.errors import AlreadyDecidedError
from smithers.runtime.links import Link, verify
from smithers.runtime.remote import Recorded, decide_as, decision_document
from smithers.service.http import json_response, refuse
from smithers.store.records import ApprovalRecord

if TYPE_CHECKING:
    from smithers.service.app import Endpoint, Service

__all__ = ["HOOK_ROUTES", "decide_by_link", "hook_get", "hook_post", "link_gate"]


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
    from smithers.service.forms import link_page

    return await link_page(service, request)


def link_gate(service: Service, token: str) -> tuple[Link, ApprovalRecord]:
    """A verified approval link and its gate, still requested (404, 410, 409 otherwise)."""
    link = verify(service.store, token)
    if link.action == "signal":
        refuse(404, "LinkError", "This is a signal link; it shows a JSON Schema, not a page.")
    record = _gate(service, link)
    _used(link, record.status, record.decided_by)
    return link, record


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
    recorded = decide_by_link(service, link, note)
    return json_response(decision_document(service.store, recorded, service.store_flag))


def decide_by_link(service: Service, link: Link, note: str | None) -> Recorded:
    """Decide a link's gate as the name it was issued for (409 once it is used)."""
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
    return recorded


HOOK_ROUTES: list[tuple[str, Endpoint, list[str]]] = [
    ("/hooks/{token}", hook_get, ["GET"]),
    ("/hooks/{token}", hook_post, ["POST"]),
]
