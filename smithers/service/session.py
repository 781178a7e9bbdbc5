"""The web page's session and CSRF tokens: a signed, HttpOnly, SameSite=Strict cookie that
names the token a person signed in with (by its digest, so revoking the token ends the
session), and a per-browser nonce cookie from which every form's CSRF token is derived.
Both are HMAC-SHA256 under a key derived from the store's link key (rotating it signs
everyone out). Never imports the runtime's use cases: only who is asking."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from smithers.runtime import clock
from smithers.store.base import Store
from smithers.store.records import LinkKey, TokenRecord

__all__ = [
    "CSRF_COOKIE",
    "SESSION_COOKIE",
    "SESSION_SECONDS",
    "check_csrf",
    "clear_session",
    "csrf_nonce",
    "csrf_token",
    "session_token",
    "set_nonce",
    "set_session",
]

SESSION_COOKIE = "smithers_session"
CSRF_COOKIE = "smithers_csrf"
SESSION_SECONDS = 12 * 3600


class _Session(msgspec.Struct, frozen=True):
    d: str  # the token's digest
    e: int  # expiry, epoch seconds


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(store: Store) -> bytes:
    fresh = LinkKey(
        key_id=secrets.token_hex(4), secret=secrets.token_bytes(32), created_at=clock.now_iso()
    )
    key = store.link_key(fresh)
    assert key is not None
    return hmac.new(key.secret, b"smithers web session", hashlib.sha256).digest()


def _mac(store: Store, text: str) -> str:
    return _b64(hmac.new(_key(store), text.encode(), hashlib.sha256).digest())


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session(store: Store, request: Request, response: Response, token: TokenRecord) -> None:
    """Sign ``token`` in: the session cookie lasts 12 hours or until the token expires."""
    expires = clock.now() + SESSION_SECONDS
    if token.expires_at is not None:
        expires = min(expires, token.expires_at)
    body = _b64(msgspec.json.encode(_Session(token.digest, int(expires))))
    response.set_cookie(
        SESSION_COOKIE,
        f"{body}.{_mac(store, 'session:' + body)}",
        max_age=max(0, int(expires - clock.now())),
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/",
    )


def clear_session(request: Request, response: Response) -> None:
    """Sign out: the browser drops the session cookie."""
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request)
    )


def session_token(store: Store, request: Request) -> TokenRecord | None:
    """The live token the request's session cookie names, or None (no cookie, a bad
    signature, an expired session, or a token revoked or expired since)."""
    cookie = request.cookies.get(SESSION_COOKIE, "")
    body, dot, mac = cookie.partition(".")
    if not dot or not hmac.compare_digest(mac, _mac(store, "session:" + body)):
        return None
    try:
        session = msgspec.json.decode(_unb64(body), type=_Session)
    except (ValueError, msgspec.DecodeError):
        return None
    now = clock.now()
    if now >= session.e:
        return None
    for record in store.tokens():
        if hmac.compare_digest(record.digest, session.d):
            if record.expires_at is not None and now >= record.expires_at:
                return None
            return record
    return None


def csrf_nonce(request: Request) -> tuple[str, bool]:
    """The browser's CSRF nonce, and whether it is new (the response must then set it)."""
    nonce = request.cookies.get(CSRF_COOKIE, "")
    if len(nonce) >= 16:
        return nonce, False
    return secrets.token_urlsafe(24), True


def set_nonce(request: Request, response: Response, nonce: str) -> None:
    """Set the CSRF nonce cookie (HttpOnly, SameSite=Strict)."""
    response.set_cookie(
        CSRF_COOKIE, nonce, httponly=True, samesite="strict", secure=_secure(request), path="/"
    )


def csrf_token(store: Store, nonce: str) -> str:
    """The CSRF token every form of this browser carries."""
    return _mac(store, "csrf:" + nonce)


def check_csrf(store: Store, request: Request, sent: str | None) -> bool:
    """Whether a form's CSRF token matches this browser's nonce cookie."""
    nonce = request.cookies.get(CSRF_COOKIE, "")
    return bool(nonce and sent) and hmac.compare_digest(str(sent), csrf_token(store, nonce))
