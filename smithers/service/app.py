"""The HTTP API (Starlette): the routes of DESIGN §11, one function each, serving the same
documents as ``--json``. Reads and decisions are answered from the store; anything that runs
workflow code (resuming, validating signal data) happens in a child process."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, get_args

import msgspec
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

import smithers.errors as errors
from smithers.errors import SmithersError
from smithers.runtime.documents import (
    event_document,
    inbox_document,
    output_value,
    result_document,
    run_graph,
    runs_document,
    status_document,
    status_view,
)
from smithers.runtime.remote import decide_as, decision_document
from smithers.runtime.usecases import cancel_run
from smithers.service.children import Child, run_dir, smithers_child
from smithers.service.http import (
    Refusal,
    decode_body,
    error_response,
    json_response,
    principal,
    refuse,
    status_of,
)
from smithers.service.metrics import CONTENT_TYPE, Metrics
from smithers.service.worker import Worker
from smithers.store.base import Store, need_run
from smithers.store.records import RunStatus

__all__ = ["DecisionBody", "Service", "create_app"]

_STATUSES = get_args(RunStatus)
_EVENT_JSON = msgspec.json.Encoder()


class DecisionBody(msgspec.Struct, forbid_unknown_fields=True):
    """The body of approve/deny; the decider is the token's name, never a body field."""

    note: str | None = None
    iteration: list[int] | None = None


class Service:
    """What the routes share: the store, the worker to wake, metrics, and shutdown."""

    def __init__(
        self, store: Store, *, worker: Worker | None, metrics: Metrics, poll: float = 0.1
    ) -> None:
        self.store = store
        self.worker = worker
        self.metrics = metrics
        self.poll = poll
        self.stopping = asyncio.Event()
        self.pending_news = False
        location = store.location or ""
        self.store_flag = f" --store {shlex.quote(location)}" if location else ""

    def news(self) -> None:
        """Something was recorded: the worker goes on with it as soon as the response is
        sent (starting a child before would delay the answer)."""
        self.pending_news = True

    def flush_news(self) -> None:
        """Wake the worker for what was recorded."""
        self.pending_news = False
        if self.worker is not None:
            self.worker.poke()

    async def child(self, run_id: str, args: list[str]) -> Child:
        """Run a ``smithers`` command about a run in a child, in the run's directory."""
        run = need_run(self.store, run_id)
        assert self.store.location is not None
        return await smithers_child(self.store.location, args, cwd=run_dir(run))


Endpoint = Callable[[Service, Request], Awaitable[Response]]


def _iteration(request: Request) -> tuple[int, ...] | None:
    text = request.query_params.get("iteration")
    if text is None:
        return None
    from smithers.compiler.iterations import parse_iteration

    try:
        return parse_iteration(text)
    except SmithersError as exc:
        refuse(400, "MalformedQuery", str(exc))


# -- reads ------------------------------------------------------------------------------------


async def healthz(service: Service, request: Request) -> Response:
    """GET /healthz: whether the server is up (no token needed)."""
    return json_response({"status": "stopping" if service.stopping.is_set() else "ok"})


async def metrics(service: Service, request: Request) -> Response:
    """GET /metrics: the Prometheus text (a token of any role)."""
    principal(service.store, request, "metrics")
    return Response(service.metrics.render(), media_type=CONTENT_TYPE)


async def list_runs(service: Service, request: Request) -> Response:
    """GET /api/v1/runs[?status=S]: the run list of ``smithers runs --json``."""
    principal(service.store, request, "read")
    status = request.query_params.get("status")
    if status is not None and status not in _STATUSES:
        refuse(400, "MalformedQuery", f"Status {status!r} is unknown; pass one of {_STATUSES}.")
    return json_response(runs_document(service.store.runs(status), service.store_flag))


async def run_status(service: Service, request: Request) -> Response:
    """GET /api/v1/runs/{run_id}: the document of ``smithers status --json``."""
    principal(service.store, request, "read")
    view = status_view(service.store, request.path_params["run_id"])
    return json_response(status_document(view, service.store_flag))


async def graph(service: Service, request: Request) -> Response:
    """GET /api/v1/runs/{run_id}/graph[?format=json|mermaid|dot]: the run's graph and states."""
    principal(service.store, request, "read")
    fmt = request.query_params.get("format", "json")
    if fmt not in ("json", "mermaid", "dot"):
        refuse(400, "MalformedQuery", f"Format {fmt!r} is unknown; pass json, mermaid or dot.")
    found, states = run_graph(service.store, request.path_params["run_id"])
    if fmt == "mermaid":
        return PlainTextResponse(found.to_mermaid(states=states))
    if fmt == "dot":
        return PlainTextResponse(found.to_dot(states=states))
    return json_response({**found.to_dict(), "states": states})


async def output(service: Service, request: Request) -> Response:
    """GET .../nodes/{node_id}/output[?iteration=I]: a node's committed output."""
    principal(service.store, request, "read")
    p = request.path_params
    value = output_value(service.store, p["run_id"], p["node_id"], _iteration(request))
    return json_response(value)


async def approvals(service: Service, request: Request) -> Response:
    """GET /api/v1/approvals: the inbox of ``smithers approvals --json``."""
    principal(service.store, request, "read")
    return json_response(inbox_document(service.store, service.store_flag))


# -- writes -----------------------------------------------------------------------------------


async def _decide(service: Service, request: Request, approved: bool) -> Response:
    token = principal(service.store, request, "decide")
    body = await decode_body(request, DecisionBody)
    p = request.path_params
    recorded = decide_as(
        service.store,
        p["run_id"],
        p["node_id"],
        None if body.iteration is None else tuple(body.iteration),
        approved=approved,
        note=body.note,
        by=token.name,
    )
    if not recorded.repeated:
        service.metrics.decisions.labels("approved" if approved else "denied").inc()
        service.news()
    return json_response(decision_document(service.store, recorded, service.store_flag))


async def approve(service: Service, request: Request) -> Response:
    """POST .../approve: record an approval as the token's name."""
    return await _decide(service, request, True)


async def deny(service: Service, request: Request) -> Response:
    """POST .../deny: record a denial as the token's name."""
    return await _decide(service, request, False)


async def deliver_signal(
    service: Service, run_id: str, node_id: str, raw: bytes, its: tuple[int, ...] | None
) -> Response:
    """Validate and record a signal's data in a child (it loads the workflow), then wake the
    worker. Shared by the API route and signal links."""
    try:
        msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        refuse(400, "MalformedBody", f"The request body is not valid JSON ({exc}); send JSON.")
    args = ["signal", run_id, "--node", node_id, "--data", raw.decode(), "--no-resume"]
    if its is not None:
        args += ["--iteration", ".".join(map(str, its)) or "()"]
    child = await service.child(run_id, args)
    if child.code != 0:
        raise _child_refusal(child)
    service.news()
    return json_response(child.document)


def _child_refusal(child: Child) -> Refusal:
    kind = child.error_type or "ChildError"
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, SmithersError):
        return Refusal(status_of(cls(child.error_message)), kind, child.error_message)
    return Refusal(500, kind, child.error_message)


async def signal(service: Service, request: Request) -> Response:
    """POST .../signal: deliver the body's JSON to a Signal."""
    principal(service.store, request, "signal")
    p = request.path_params
    raw = await request.body()
    return await deliver_signal(service, p["run_id"], p["node_id"], raw, _iteration(request))


async def cancel(service: Service, request: Request) -> Response:
    """POST /api/v1/runs/{run_id}/cancel: cancel a run (admin)."""
    principal(service.store, request, "cancel")
    outcome = cancel_run(service.store, request.path_params["run_id"])
    service.news()
    return json_response(result_document(outcome.result, service.store_flag, outcome.note))


# -- events -----------------------------------------------------------------------------------


async def events(service: Service, request: Request) -> Response:
    """GET /api/v1/events: the event log as Server-Sent Events, from Last-Event-ID or after."""
    principal(service.store, request, "read")
    start = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    if not start.isdigit():
        refuse(400, "MalformedQuery", f"Event id {start!r} is not a number; pass after=SEQ.")
    run_id = request.query_params.get("run_id")
    if run_id is not None:
        need_run(service.store, run_id)
    return StreamingResponse(
        _stream(service, int(start), run_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(service: Service, after: int, run_id: str | None) -> AsyncIterator[bytes]:
    yield b": smithers events\n\n"  # the headers and a first byte go out at once
    quiet = 0.0
    while not service.stopping.is_set():
        batch = service.store.events(after=after, run_id=run_id, limit=500)
        for event in batch:
            data = _EVENT_JSON.encode(event_document(event)).decode()
            yield f"id: {event.seq}\nevent: {event.type}\ndata: {data}\n\n".encode()
            after = event.seq
        if batch:
            quiet = 0.0
            continue
        quiet += service.poll
        if quiet >= 15.0:
            quiet = 0.0
            yield b": keep-alive\n\n"
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(service.stopping.wait(), service.poll)


# -- the application --------------------------------------------------------------------------

_API = "/api/v1"
ROUTES: list[tuple[str, Endpoint, list[str]]] = [
    ("/healthz", healthz, ["GET"]),
    ("/metrics", metrics, ["GET"]),
    (f"{_API}/runs", list_runs, ["GET"]),
    (f"{_API}/runs/{{run_id}}", run_status, ["GET"]),
    (f"{_API}/runs/{{run_id}}/graph", graph, ["GET"]),
    (f"{_API}/runs/{{run_id}}/nodes/{{node_id}}/output", output, ["GET"]),
    (f"{_API}/approvals", approvals, ["GET"]),
    (f"{_API}/runs/{{run_id}}/nodes/{{node_id}}/approve", approve, ["POST"]),
    (f"{_API}/runs/{{run_id}}/nodes/{{node_id}}/deny", deny, ["POST"]),
    (f"{_API}/runs/{{run_id}}/nodes/{{node_id}}/signal", signal, ["POST"]),
    (f"{_API}/runs/{{run_id}}/cancel", cancel, ["POST"]),
    (f"{_API}/events", events, ["GET"]),
]


def _wrap(service: Service, path: str, endpoint: Endpoint) -> Callable[[Request], Any]:
    """One endpoint with the shared refusals and the request counter."""

    async def handle(request: Request) -> Response:
        try:
            response = await endpoint(service, request)
        except Refusal as exc:
            response = error_response(exc.status, exc.kind, exc.message)
        except SmithersError as exc:
            response = error_response(status_of(exc), type(exc).__name__, str(exc))
        service.metrics.requests.labels(path, request.method, str(response.status_code)).inc()
        if service.pending_news:
            response.background = BackgroundTask(service.flush_news)
        return response

    return handle


def create_app(service: Service) -> Starlette:
    """The ASGI application over ``service``: the API routes, the artifact downloads, the
    signed-link hooks, and the web pages with their static files."""
    from smithers.service.artifacts import ARTIFACT_ROUTES
    from smithers.service.hooks import HOOK_ROUTES
    from smithers.service.web import web_routes

    routes: list[BaseRoute] = [
        Route(path, _wrap(service, path, endpoint), methods=methods)
        for path, endpoint, methods in [*ROUTES, *HOOK_ROUTES, *ARTIFACT_ROUTES]
    ]
    routes += web_routes(service)

    async def not_found(request: Request, exc: Exception) -> Response:
        code = getattr(exc, "status_code", 404)
        kind = "MethodNotAllowed" if code == 405 else "NotFound"
        message = (
            f"{request.method} is not allowed on {request.url.path}; see DESIGN §11 routes."
            if code == 405
            else f"No route {request.url.path}; the API lives under {_API}/."
        )
        return error_response(code, kind, message)

    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
