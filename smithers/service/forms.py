"""The web page's forms, the only page routes that change anything, each a ``POST`` that
carries the browser's CSRF token: sign in with a token, sign out, decide a gate as the
signed-in token's name, and decide through a signed link without an account. A denial is
recorded only after a second, confirming submit; a repeated submit records nothing new."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import Response

from smithers.errors import AlreadyDecidedError
from smithers.runtime.clock import format_iso
from smithers.runtime.links import verify
from smithers.runtime.remote import decide_as
from smithers.service.auth import allows, authenticate
from smithers.service.http import refuse
from smithers.service.pages import gate_context
from smithers.service.session import check_csrf, clear_session, session_token, set_session
from smithers.service.web import redirect, render, signed_in

if TYPE_CHECKING:
    from smithers.service.app import Service
    from smithers.service.web import Page

__all__ = ["FORM_ROUTES", "decide", "link_page", "link_post", "signin", "signin_page", "signout"]


async def _form(service: Service, request: Request) -> dict[str, str]:
    """The form's fields, after checking its CSRF token (403 when it is missing or wrong)."""
    # Parsed here (the forms are urlencoded, small and flat): no multipart dependency.
    raw = await request.body()
    fields = {k: v[0] for k, v in parse_qs(raw.decode(errors="replace")).items()}
    if not check_csrf(service.store, request, fields.get("csrf")):
        refuse(
            403,
            "CSRFError",
            "This form's CSRF token is missing or stale; reload the page and submit it again.",
        )
    return fields


def _safe_next(target: str | None) -> str:
    """Only a path on this site (never ``//host`` or a URL) may follow sign-in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


async def signin_page(service: Service, request: Request) -> Response:
    """GET /signin: the form to paste a token into."""
    target = _safe_next(request.query_params.get("next"))
    user = session_token(service.store, request)
    return render(service, request, "signin.html", user=user, next=target, error=None)


async def signin(service: Service, request: Request) -> Response:
    """POST /signin: check the pasted token and set the session cookie."""
    fields = await _form(service, request)
    target = _safe_next(fields.get("next"))
    token = authenticate(service.store, fields.get("token", "").strip())
    if token is None:
        message = (
            "That token is unknown, revoked or expired; paste one from `smithers token create`."
        )
        return render(
            service, request, "signin.html", user=None, next=target, error=message, code=401
        )
    response = redirect(target)
    set_session(service.store, request, response, token)
    return response


async def signout(service: Service, request: Request) -> Response:
    """POST /signout: drop the session cookie."""
    await _form(service, request)
    response = redirect("/signin")
    clear_session(request, response)
    return response


async def decide(service: Service, request: Request) -> Response:
    """POST /runs/{run_id}/gates/{node_id}/decide: approve, or deny once confirmed."""
    user = signed_in(service, request)
    fields = await _form(service, request)
    if not allows(user.role, "decide"):
        refuse(403, "Forbidden", f"`{user.name}` is a {user.role} and may not decide gates.")
    p = request.path_params
    action = fields.get("action")
    if action not in ("approve", "deny"):
        refuse(400, "MalformedBody", "Pick approve or deny.")
    note = fields.get("note", "").strip() or None
    its = fields.get("iteration") or ""
    context = gate_context(service, p["run_id"], p["node_id"], its)
    page = {"user": user, "can_decide": True, "note": note or "", "after": 0, **context}
    if action == "deny" and fields.get("confirmed") != "yes":
        return render(service, request, "gate.html", confirm=True, error=None, **page)
    iteration = tuple(int(i) for i in its.split(".")) if its else ()
    try:
        recorded = decide_as(
            service.store,
            p["run_id"],
            p["node_id"],
            iteration,
            approved=action == "approve",
            note=note,
            by=user.name,
        )
    except AlreadyDecidedError as exc:
        page.update(gate_context(service, p["run_id"], p["node_id"], its))
        return render(
            service, request, "gate.html", confirm=False, error=str(exc), code=409, **page
        )
    if not recorded.repeated:
        service.metrics.decisions.labels("approved" if action == "approve" else "denied").inc()
        service.news()
    query = f"?iteration={quote(its)}" if its else ""
    run, node = quote(p["run_id"], safe=""), quote(p["node_id"], safe="")
    return redirect(f"/runs/{run}/gates/{node}{query}")


async def link_page(service: Service, request: Request) -> Response:
    """The HTML page of an approval link (``GET /hooks/{token}``): what it decides, as whom,
    with a form that posts to `link_post`. Never decides."""
    from smithers.service.hooks import link_gate

    link, record = link_gate(service, request.path_params["token"])
    return render(
        service,
        request,
        "link.html",
        user=None,
        link=link,
        gate=record,
        request=record.request,
        token=request.path_params["token"],
        expires=format_iso(link.expires_at),
        outcome=None,
    )


async def link_post(service: Service, request: Request) -> Response:
    """POST /link/{token}: decide the link's gate as the name it was issued for."""
    from smithers.service.hooks import decide_by_link

    fields = await _form(service, request)
    token = request.path_params["token"]
    link = verify(service.store, token)
    if link.action == "signal":
        refuse(404, "LinkError", "A signal link takes JSON data, not a form; POST it to /hooks/.")
    recorded = decide_by_link(service, link, fields.get("note", "").strip() or None)
    return render(
        service,
        request,
        "link.html",
        user=None,
        link=link,
        gate=recorded.record,
        request=recorded.record.request,
        token=token,
        expires=format_iso(link.expires_at),
        outcome=recorded.record,
    )


FORM_ROUTES: list[tuple[str, Page, list[str]]] = [
    ("/signin", signin_page, ["GET"]),
    ("/signin", signin, ["POST"]),
    ("/signout", signout, ["POST"]),
    ("/runs/{run_id}/gates/{node_id}/decide", decide, ["POST"]),
    ("/link/{token}", link_post, ["POST"]),
]
