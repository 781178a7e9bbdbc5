"""What every HTTP route shares: the one error body, the status code of each refusal,
authentication by bearer token, and JSON bodies decoded with the failing field's path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from smithers.errors import (
    AlreadyDecidedError,
    AlreadyDeliveredError,
    AmbiguousGateError,
    ApprovalError,
    ApprovalRefusedError,
    GateNotRequestedError,
    InputError,
    LinkError,
    LinkExpiredError,
    NotAnApprovalError,
    NotASignalError,
    RunNotFoundError,
    SignalDataError,
    SignalError,
    SmithersError,
    UnknownNodeError,
)
from smithers.service.auth import Permission, allows, authenticate
from smithers.store.base import Store
from smithers.store.records import TokenRecord

__all__ = [
    "Refusal",
    "decode_body",
    "error_response",
    "json_response",
    "principal",
    "refuse",
    "status_of",
]

T = TypeVar("T")
_JSON = msgspec.json.Encoder()
Handler = Callable[[Request], Awaitable[Response]]


class Refusal(Exception):
    """An HTTP refusal: status code, error type and a one-sentence message."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


def refuse(status: int, kind: str, message: str) -> NoReturn:
    """Raise a `Refusal`."""
    raise Refusal(status, kind, message)


def json_response(document: Any, status: int = 200) -> Response:
    """A JSON document, encoded as ``--json`` prints it."""
    return Response(_JSON.encode(document), status_code=status, media_type="application/json")


def error_response(status: int, kind: str, message: str) -> Response:
    """``{"error": {"type": ..., "message": ...}}`` with ``status``."""
    return json_response({"error": {"type": kind, "message": message}}, status)


def status_of(exc: SmithersError) -> int:
    """The HTTP status of a refusal the runtime raised (DESIGN §11)."""
    match exc:
        case LinkExpiredError():
            return 410
        case LinkError() | RunNotFoundError() | UnknownNodeError():
            return 404
        case NotAnApprovalError() | NotASignalError():
            return 404
        case SignalDataError():
            return 422
        case ApprovalRefusedError():  # the gate's policy does not let this principal decide
            return 403
        case (
            GateNotRequestedError()
            | AlreadyDecidedError()
            | AlreadyDeliveredError()
            | AmbiguousGateError()
        ):
            return 409
        case SignalError() | ApprovalError():
            return 409
        case InputError():
            return 422
        case _:
            return 500


def principal(store: Store, request: Request, permission: Permission) -> TokenRecord:
    """The token a request carries (its bearer header, or for a GET the web page's session
    cookie), allowed ``permission``.

    Raises:
        Refusal: 401 without a token or with one that is unknown, revoked or expired; 403
            when its role does not grant ``permission``.
    """
    header = request.headers.get("authorization", "")
    if not header and request.method in ("GET", "HEAD"):
        # The web page's EventSource and downloads carry the session cookie, not a header;
        # a cookie never authorizes a change (the page's forms check a CSRF token).
        from smithers.service.session import session_token

        session = session_token(store, request)
        if session is not None:
            return _granted(session, permission)
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        refuse(
            401,
            "Unauthorized",
            "This request needs a token; send `Authorization: Bearer <token>` (make one with "
            "`smithers token create NAME`).",
        )
    token = authenticate(store, secret.strip())
    if token is None:
        refuse(
            401,
            "Unauthorized",
            "The bearer token is unknown, revoked or expired; make a new one with "
            "`smithers token create NAME`.",
        )
    return _granted(token, permission)


def _granted(token: TokenRecord, permission: Permission) -> TokenRecord:
    """``token``, when its role grants ``permission`` (403 otherwise)."""
    if not allows(token.role, permission):
        refuse(
            403,
            "Forbidden",
            f"Token `{token.name}` has the role {token.role}, which may not {permission}; ask "
            "an admin for a token with a role that may.",
        )
    return token


async def decode_body(request: Request, kind: type[T]) -> T:
    """The request's JSON body as ``kind`` (an empty body is ``{}``).

    Raises:
        Refusal: 400 for a body that is not JSON; 422 for JSON that does not fit ``kind``
            (the message names the field path).
    """
    raw = await request.body()
    try:
        return msgspec.json.decode(raw or b"{}", type=kind)
    except msgspec.ValidationError as exc:
        refuse(422, "ValidationError", f"The request body does not validate: {exc}.")
    except msgspec.DecodeError as exc:
        refuse(400, "MalformedBody", f"The request body is not valid JSON ({exc}); send JSON.")
