"""The service's records on a `KV`: API tokens (hashed), the signed-link key and workers'
claims on runs (with their failures to resume). Each read-check-write is one transaction."""

from __future__ import annotations

import msgspec

from smithers.store.kv.protocol import KV, Txn
from smithers.store.records import LinkKey, TokenRecord, WorkerClaim
from smithers.store.rules import claim_released, claim_taken, token_taken

__all__ = [
    "add_token",
    "claim_run",
    "link_key",
    "release_claim",
    "revoke_token",
    "tokens",
    "worker_claim",
]

_ENC = msgspec.msgpack.Encoder()
_TOKEN = msgspec.msgpack.Decoder(TokenRecord)
_LINK_KEY = msgspec.msgpack.Decoder(LinkKey)
_CLAIM = msgspec.msgpack.Decoder(WorkerClaim)
_CURRENT = b"current"


def add_token(kv: KV, token: TokenRecord) -> None:
    """Store a new token under its name (see `Store.add_token`)."""

    def write(txn: Txn) -> None:
        if not txn.put("tokens", token.name.encode(), _ENC.encode(token), overwrite=False):
            raise token_taken(token.name)

    kv.write(write)


def tokens(kv: KV) -> list[TokenRecord]:
    """Every token, by name."""
    return kv.read(lambda txn: [_TOKEN.decode(raw) for _, raw in txn.scan("tokens")])


def revoke_token(kv: KV, name: str) -> bool:
    """Delete a token; whether it existed."""
    return kv.write(lambda txn: txn.delete("tokens", name.encode()))


def link_key(kv: KV, new: LinkKey | None, rotate: bool) -> LinkKey | None:
    """The current link key, storing ``new`` when there is none (or when rotating)."""
    current = kv.read(lambda txn: txn.get("link_keys", _CURRENT))
    if current is not None and not rotate:
        return _LINK_KEY.decode(current)
    if new is None:
        return None

    def write(txn: Txn) -> LinkKey:
        found = txn.get("link_keys", _CURRENT)
        if found is not None and not rotate:
            return _LINK_KEY.decode(found)  # another process made one a moment ago
        txn.put("link_keys", _CURRENT, _ENC.encode(new))
        return new

    return kv.write(write)


def claim_run(kv: KV, run_id: str, owner: str, now: float, until: float) -> bool:
    """Claim a run for ``owner`` unless another claim (or a failure's backoff) holds it."""

    def write(txn: Txn) -> bool:
        raw = txn.get("claims", run_id.encode())
        claim = claim_taken(None if raw is None else _CLAIM.decode(raw), run_id, owner, now, until)
        if claim is None:
            return False
        txn.put("claims", run_id.encode(), _ENC.encode(claim))
        return True

    return kv.write(write)


def release_claim(
    kv: KV,
    run_id: str,
    owner: str,
    failure: str | None,
    failed_at: str | None,
    retry_at: float | None,
) -> None:
    """Drop ``owner``'s claim; on a failure keep it as a backoff until ``retry_at``."""

    def write(txn: Txn) -> None:
        raw = txn.get("claims", run_id.encode())
        found = None if raw is None else _CLAIM.decode(raw)
        if found is not None and found.owner != owner:
            return  # the claim lapsed and another worker holds it now
        claim = claim_released(found, run_id, failure, failed_at, retry_at)
        if claim is None:
            txn.delete("claims", run_id.encode())
        else:
            txn.put("claims", run_id.encode(), _ENC.encode(claim))

    kv.write(write)


def worker_claim(kv: KV, run_id: str) -> WorkerClaim | None:
    """The run's claim record, or None."""
    raw = kv.read(lambda txn: txn.get("claims", run_id.encode()))
    return None if raw is None else _CLAIM.decode(raw)
