"""API tokens and roles: a token is made once (its secret shown once, only its SHA-256 kept),
carries a name (the decider it records) and a role, and is checked in constant time.
Never imports the web framework: the CLI manages tokens with the same functions."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Literal, get_args

import attrs

from smithers.errors import InputError
from smithers.runtime import clock
from smithers.runtime.lease import os_user
from smithers.store.base import Store
from smithers.store.records import Role, TokenRecord

__all__ = [
    "ROLES",
    "Created",
    "Permission",
    "allows",
    "authenticate",
    "create_token",
    "digest_of",
]

ROLES: tuple[Role, ...] = get_args(Role)
Permission = Literal["read", "decide", "signal", "cancel", "metrics"]
_GRANTS: dict[Role, frozenset[Permission]] = {
    "viewer": frozenset({"read", "metrics"}),
    "approver": frozenset({"read", "decide", "metrics"}),
    "agent": frozenset({"signal", "metrics"}),
    "admin": frozenset({"read", "decide", "signal", "cancel", "metrics"}),
}
_NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")
_PREFIX = "smt_"


def digest_of(secret: str) -> str:
    """The SHA-256 (hex) the store keeps instead of a token's secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


@attrs.frozen
class Created:
    """A new token: its record and its secret (shown once, never stored)."""

    record: TokenRecord
    secret: str


def create_token(store: Store, name: str, role: Role, expires_in: float | None) -> Created:
    """Make a token and store only its hash.

    Raises:
        InputError: For a bad name, or a name already taken (nothing is written).
    """
    if not _NAME.fullmatch(name):
        raise InputError(
            f"Token name {name!r} is invalid; use 1 to 64 letters, digits or `_.:@-` (it is "
            "recorded as the decider)."
        )
    secret = _PREFIX + secrets.token_urlsafe(32)
    record = TokenRecord(
        name=name,
        role=role,
        digest=digest_of(secret),
        created_at=clock.now_iso(),
        expires_at=None if expires_in is None else clock.now() + expires_in,
        created_by=os_user(),
    )
    store.add_token(record)
    return Created(record, secret)


def authenticate(store: Store, secret: str) -> TokenRecord | None:
    """The live token whose secret this is, or None (unknown, revoked or expired).

    Every stored digest is compared in constant time, so timing tells nothing about which
    bytes matched.
    """
    wanted = digest_of(secret)
    found = None
    for record in store.tokens():
        if hmac.compare_digest(record.digest, wanted):
            found = record
    if found is None or (found.expires_at is not None and clock.now() >= found.expires_at):
        return None
    return found


def allows(role: Role, permission: Permission) -> bool:
    """Whether ``role`` grants ``permission``."""
    return permission in _GRANTS[role]
