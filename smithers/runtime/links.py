"""Signed links: capability URLs for one action (approve, deny or signal) on one gate or
signal of one run, issued for a name and valid until an expiry. HMAC-SHA256 with a key kept
in the store (made on first use, rotatable), compared in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from typing import Literal

import attrs
import msgspec

from smithers.errors import InputError, LinkError, LinkExpiredError
from smithers.runtime import clock
from smithers.store.base import Store
from smithers.store.records import Iteration, LinkKey

__all__ = [
    "BASE_URL_ENV",
    "Action",
    "Link",
    "base_url",
    "link_url",
    "parse_duration",
    "rotate_key",
    "sign",
    "task_link_maker",
    "verify",
]

Action = Literal["approve", "deny", "signal"]
BASE_URL_ENV = "SMITHERS_BASE_URL"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class _Payload(msgspec.Struct, frozen=True, kw_only=True):
    r: str  # run
    n: str  # node
    i: tuple[int, ...] | None  # iteration (None: the signal's current one)
    a: Action
    f: str  # issued for
    e: int  # expiry, epoch seconds
    k: str  # key id


@attrs.frozen
class Link:
    """What a verified link allows: one action on one node of one run, by ``issued_for``."""

    run_id: str
    node_id: str
    iteration: Iteration | None
    action: Action
    issued_for: str
    expires_at: int


def parse_duration(text: str, what: str = "--expires") -> float:
    """``"30m"``, ``"4h"``, ``"2d"``, ``"90s"`` or plain seconds -> seconds.

    Raises:
        InputError: For anything else, or a duration that is not positive.
    """
    raw = text.strip()
    number, unit = (raw[:-1], raw[-1]) if raw[-1:] in _UNITS else (raw, "s")
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise InputError(
            f"{what} {text!r} is not a duration; pass a positive number with s, m, h or d "
            "(for example 30m or 2d)."
        )
    return seconds


def _key(store: Store) -> LinkKey:
    fresh = LinkKey(
        key_id=secrets.token_hex(4), secret=secrets.token_bytes(32), created_at=clock.now_iso()
    )
    key = store.link_key(fresh)
    assert key is not None
    return key


def rotate_key(store: Store) -> LinkKey:
    """Replace the signing key: every link signed before stops working (404)."""
    fresh = LinkKey(
        key_id=secrets.token_hex(4), secret=secrets.token_bytes(32), created_at=clock.now_iso()
    )
    key = store.link_key(fresh, rotate=True)
    assert key is not None
    return key


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(
    store: Store,
    run_id: str,
    node_id: str,
    iteration: Iteration | None,
    action: Action,
    issued_for: str,
    expires_in: float,
) -> str:
    """The link token (the last part of ``/hooks/{token}``) for one action."""
    key = _key(store)
    payload = _Payload(
        r=run_id,
        n=node_id,
        i=None if iteration is None else tuple(iteration),
        a=action,
        f=issued_for,
        e=int(clock.now() + expires_in),
        k=key.key_id,
    )
    body = _b64(msgspec.json.encode(payload))
    mac = hmac.new(key.secret, body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def verify(store: Store, token: str) -> Link:
    """The action a link token allows.

    Raises:
        LinkError: For a malformed token or a signature that does not match the current key
            (a tampered link, or one signed before the key was rotated).
        LinkExpiredError: For a genuine link past its expiry.
    """
    unknown = LinkError("No such link; ask for a new one.")
    body, dot, mac_text = token.partition(".")
    key = store.link_key()
    if not dot or key is None:
        raise unknown
    try:
        mac = _unb64(mac_text)
    except ValueError:
        raise unknown from None
    expected = hmac.new(key.secret, body.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        raise unknown
    try:
        payload = msgspec.json.decode(_unb64(body), type=_Payload)
    except (ValueError, msgspec.DecodeError):
        raise unknown from None
    if payload.k != key.key_id:
        raise unknown
    if clock.now() >= payload.e:
        raise LinkExpiredError(
            f"This link to {payload.a} `{payload.n}` of run `{payload.r}` expired at "
            f"{clock.format_iso(payload.e)}; ask for a new one."
        )
    return Link(payload.r, payload.n, payload.i, payload.a, payload.f, payload.e)


def base_url() -> str | None:
    """The service's public base URL (``$SMITHERS_BASE_URL``), or None when not configured."""
    return os.environ.get(BASE_URL_ENV) or None


def link_url(base: str, token: str) -> str:
    """The full URL of a link token under ``base``."""
    return f"{base.rstrip('/')}/hooks/{token}"


def task_link_maker(store: Store, run_id: str) -> Callable[[str, float], str] | None:
    """What `TaskInfo.signal_link` calls, ``(node_id, expires_in) -> URL`` for this run, or
    None when no base URL is configured."""
    base = base_url()
    if base is None:
        return None

    def make(node_id: str, expires_in: float) -> str:
        token = sign(store, run_id, node_id, None, "signal", f"task:{run_id}", expires_in)
        return link_url(base, token)

    return make
