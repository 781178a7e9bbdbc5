"""What every web page shares: the Jinja environment over the package's templates (always
autoescaped), rendering with the signed-in token and the browser's CSRF token, security
headers, the HTML form of a refusal, and the wrapper that turns refusals into pages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, get_args
from urllib.parse import quote

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from smithers.errors import SmithersError
from smithers.service.http import Refusal, status_of
from smithers.service.session import csrf_nonce, csrf_token, session_token, set_nonce
from smithers.store.records import EventType, TokenRecord

if TYPE_CHECKING:
    from smithers.service.app import Service

__all__ = ["Page", "page", "redirect", "render", "signed_in", "web_routes"]

Page = Callable[["Service", Request], Awaitable[Response]]

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("smithers.service", "templates"),
    autoescape=True,  # everything from a request or an output is text, never markup
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_EVENT_TYPES = " ".join(get_args(EventType))  # what the live pages listen for
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"  # signed links never leak onwards
    response.headers["Cache-Control"] = "no-store"
    return response


def render(
    service: Service,
    request: Request,
    template: str,
    /,
    *,
    user: TokenRecord | None,
    code: int = 200,
    **context: Any,
) -> Response:
    """A page from ``template`` with the signed-in ``user`` and this browser's CSRF token."""
    nonce, new = csrf_nonce(request)
    text = _ENV.get_template(template).render(
        user=user,
        csrf=csrf_token(service.store, nonce),
        path=request.url.path,
        event_types=_EVENT_TYPES,
        artifact_text=lambda value: artifact_text(service.store, value),
        **context,
    )
    response = HTMLResponse(text, status_code=code)
    if new:
        set_nonce(request, response, nonce)
    return _headers(response)


_INLINE_LIMIT = 64 * 1024  # larger text is offered as a download only
_TEXT_TYPES = ("application/json", "application/x-diff", "application/x-patch")


def artifact_text(store: Any, value: Any) -> str | None:
    """The text of a small text artifact named by ``value`` (an `Artifact` as builtins), to
    show inline (the template escapes it); None for anything else, or when it cannot be read
    (the download link stays, and says why when followed)."""
    if not isinstance(value, dict):
        return None
    ref, media, size = value.get("ref"), value.get("media_type") or "", value.get("size")
    if not isinstance(ref, str) or not isinstance(size, int) or size > _INLINE_LIMIT:
        return None
    if not (media.startswith("text/") or media in _TEXT_TYPES):
        return None
    from smithers.runtime.artifacts import read_artifact

    try:
        return read_artifact(store, ref).decode("utf-8", errors="replace")
    except SmithersError:
        return None


def redirect(url: str) -> Response:
    """303 See Other to ``url`` (after a POST, the browser GETs the outcome)."""
    return _headers(RedirectResponse(url, status_code=303))


def signed_in(service: Service, request: Request) -> TokenRecord:
    """The token of the request's session.

    Raises:
        Refusal: 401 (shown as the sign-in page) without a live session.
    """
    user = session_token(service.store, request)
    if user is None:
        raise Refusal(401, "Unauthorized", "Sign in with a token to see this page.")
    return user


def page(service: Service, path: str, endpoint: Page) -> Callable[[Request], Awaitable[Response]]:
    """One page route: refusals become an HTML page with their status code; a GET without
    a session goes to the sign-in page."""

    async def handle(request: Request) -> Response:
        try:
            response = await endpoint(service, request)
        except Refusal as exc:
            response = _refused(service, request, exc.status, exc.kind, exc.message)
        except SmithersError as exc:
            response = _refused(service, request, status_of(exc), type(exc).__name__, str(exc))
        service.metrics.requests.labels(path, request.method, str(response.status_code)).inc()
        if service.pending_news:
            from starlette.background import BackgroundTask

            response.background = BackgroundTask(service.flush_news)
        return response

    return handle


def _refused(service: Service, request: Request, status: int, kind: str, message: str) -> Response:
    if status == 401 and request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return redirect(f"/signin?next={quote(target, safe='')}")
    user = session_token(service.store, request)
    return render(
        service, request, "message.html", user=user, code=status, kind=kind, message=message
    )


def web_routes(service: Service) -> list[BaseRoute]:
    """The pages, the forms and ``/static`` (files inside the package: no CDN)."""
    from smithers.service.forms import FORM_ROUTES
    from smithers.service.pages import PAGE_ROUTES

    routes: list[BaseRoute] = [
        Route(path, page(service, path, endpoint), methods=methods)
        for path, endpoint, methods in [*PAGE_ROUTES, *FORM_ROUTES]
    ]
    static = StaticFiles(packages=[("smithers.service", "static")])
    routes.append(Mount("/static", app=static, name="static"))
    return routes
