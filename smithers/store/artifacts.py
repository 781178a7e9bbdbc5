"""What every backend shares about artifacts, cursors and webhooks: the digest check on read
and the one-sentence errors."""

from __future__ import annotations

import hashlib
import re

from smithers.errors import InputError, StoreError

__all__ = ["check_digest", "check_sha256", "duplicate_webhook", "verified"]

_HEX = re.compile(r"[0-9a-f]{64}")


def check_sha256(sha256: str) -> str:
    """``sha256`` when it is 64 lowercase hex digits.

    Raises:
        InputError: Otherwise.
    """
    if not _HEX.fullmatch(sha256):
        raise InputError(
            f"`{sha256}` is not an artifact digest; pass the 64 hex digits after "
            "`res://sha256/` in the artifact's ref."
        )
    return sha256


def check_digest(sha256: str, data: bytes) -> None:
    """Refuse to store ``data`` under a digest it does not have.

    Raises:
        InputError: When the SHA-256 of ``data`` is not ``sha256``.
    """
    if hashlib.sha256(data).hexdigest() != sha256:
        raise InputError(
            f"The artifact bytes do not hash to {sha256}; pass the SHA-256 of the bytes stored."
        )


def verified(sha256: str, data: bytes | None, where: str | None) -> bytes | None:
    """``data`` after checking it still hashes to ``sha256`` (None stays None).

    Raises:
        StoreError: When the stored bytes are damaged.
    """
    if data is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise StoreError(
            f"Artifact {sha256} in the store at {where} is damaged (its bytes no longer hash "
            "to its digest); put it again from its source or restore the store from a backup."
        )
    return data


def duplicate_webhook(name: str) -> InputError:
    """The error for a webhook name that is taken."""
    return InputError(
        f"A webhook named `{name}` already exists; pick another name, or remove it first with "
        f"`smithers webhook remove {name}`."
    )
