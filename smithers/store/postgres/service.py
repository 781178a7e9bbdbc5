"""The service's records on PostgreSQL: API tokens (hashed), the signed-link key and workers'
claims on runs (with their failures to resume), as `store/kv/service.py` keeps them on a KV.
Each read-check-write runs in one transaction under a row lock."""

from __future__ import annotations

from typing import Any

import msgspec

from smithers.store.records import LinkKey, TokenRecord, WorkerClaim
from smithers.store.rules import claim_released, claim_taken, token_taken

__all__ = [
    "MIGRATION",
    "add_token",
    "claim_run",
    "link_key",
    "record_claim",
    "release_claim",
    "revoke_token",
    "tokens",
    "worker_claim",
]

MIGRATION = [
    """CREATE TABLE smithers_tokens (
        name text COLLATE "C" PRIMARY KEY,
        record json NOT NULL
    )""",
    """CREATE TABLE smithers_link_keys (
        name text PRIMARY KEY,
        record json NOT NULL
    )""",
    """CREATE TABLE smithers_claims (
        run_id text COLLATE "C" PRIMARY KEY,
        record json NOT NULL
    )""",
]
"""Schema version 3: the tables of the service (tokens, the link key, worker claims)."""

_TOKEN = msgspec.json.Decoder(TokenRecord)
_LINK_KEY = msgspec.json.Decoder(LinkKey)
_CLAIM = msgspec.json.Decoder(WorkerClaim)
_CURRENT = "current"


def _json(record: msgspec.Struct) -> str:
    return msgspec.json.encode(record).decode()


def add_token(cur: Any, token: TokenRecord) -> None:
    """Store a new token under its name (see `Store.add_token`)."""
    cur.execute(
        "INSERT INTO smithers_tokens (name, record) VALUES (%s, %s::json) "
        "ON CONFLICT (name) DO NOTHING RETURNING name",
        (token.name, _json(token)),
    )
    if cur.fetchone() is None:
        raise token_taken(token.name)


def tokens(cur: Any) -> list[TokenRecord]:
    """Every token, by name."""
    cur.execute("SELECT record::text FROM smithers_tokens ORDER BY name")
    return [_TOKEN.decode(raw) for (raw,) in cur.fetchall()]


def revoke_token(cur: Any, name: str) -> bool:
    """Delete a token; whether it existed."""
    cur.execute("DELETE FROM smithers_tokens WHERE name = %s RETURNING name", (name,))
    return cur.fetchone() is not None


def link_key(cur: Any, new: LinkKey | None, rotate: bool) -> LinkKey | None:
    """The current link key, storing ``new`` when there is none (or when rotating)."""
    cur.execute(
        "SELECT record::text FROM smithers_link_keys WHERE name = %s FOR UPDATE", (_CURRENT,)
    )
    row = cur.fetchone()
    if row is not None and not rotate:
        return _LINK_KEY.decode(row[0])
    if new is None:
        return None
    cur.execute(
        "INSERT INTO smithers_link_keys (name, record) VALUES (%s, %s::json) "
        "ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record "
        "RETURNING record::text",
        (_CURRENT, _json(new)),
    )
    # Two first uses at once: the loser's insert updates the winner's row; both then read
    # what stands, and the loser's key is the one kept (neither signed anything yet).
    (stored,) = cur.fetchone()
    return _LINK_KEY.decode(stored)


def _claim(cur: Any, run_id: str) -> WorkerClaim | None:
    cur.execute("SELECT record::text FROM smithers_claims WHERE run_id = %s FOR UPDATE", (run_id,))
    row = cur.fetchone()
    return None if row is None else _CLAIM.decode(row[0])


def _put_claim(cur: Any, claim: WorkerClaim) -> None:
    cur.execute(
        "INSERT INTO smithers_claims (run_id, record) VALUES (%s, %s::json) "
        "ON CONFLICT (run_id) DO UPDATE SET record = EXCLUDED.record",
        (claim.run_id, _json(claim)),
    )


def _lock_run_row(cur: Any, run_id: str) -> None:
    """Lock the run's row first (when the run exists), as `claim_due_runs` does, so that
    claimers take their locks in one order."""
    cur.execute("SELECT 1 FROM smithers_runs WHERE run_id = %s FOR UPDATE", (run_id,))
    cur.fetchall()


def _hide_until(cur: Any, run_id: str, until: float | None) -> None:
    """Set the run row's ``claimed_until`` (what `claim_due_runs` skips on)."""
    cur.execute("UPDATE smithers_runs SET claimed_until = %s WHERE run_id = %s", (until, run_id))


def record_claim(cur: Any, run_id: str, owner: str, until: float) -> None:
    """Record ``owner``'s claim until ``until``, keeping the run's failures (the caller has
    locked the run's row and judged the claim free)."""
    found = _claim(cur, run_id)
    base = found or WorkerClaim(run_id=run_id)
    _put_claim(cur, msgspec.structs.replace(base, owner=owner, until=until))


def claim_run(cur: Any, run_id: str, owner: str, now: float, until: float) -> bool:
    """Claim a run for ``owner`` unless another claim (or a failure's backoff) holds it."""
    _lock_run_row(cur, run_id)
    # A first claim of a run has no row to lock: serialise claimers of this run id.
    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("smithers-claim:" + run_id,))
    cur.fetchone()
    claim = claim_taken(_claim(cur, run_id), run_id, owner, now, until)
    if claim is None:
        return False
    _put_claim(cur, claim)
    _hide_until(cur, run_id, until)
    return True


def release_claim(
    cur: Any,
    run_id: str,
    owner: str,
    failure: str | None,
    failed_at: str | None,
    retry_at: float | None,
) -> None:
    """Drop ``owner``'s claim; on a failure keep it as a backoff until ``retry_at``."""
    _lock_run_row(cur, run_id)
    found = _claim(cur, run_id)
    if found is not None and found.owner != owner:
        return  # the claim lapsed and another worker holds it now
    claim = claim_released(found, run_id, failure, failed_at, retry_at)
    if claim is None:
        cur.execute("DELETE FROM smithers_claims WHERE run_id = %s", (run_id,))
        _hide_until(cur, run_id, None)
        return
    _hide_until(cur, run_id, claim.until)
    _put_claim(cur, claim)


def worker_claim(cur: Any, run_id: str) -> WorkerClaim | None:
    """The run's claim record, or None."""
    cur.execute("SELECT record::text FROM smithers_claims WHERE run_id = %s", (run_id,))
    row = cur.fetchone()
    return None if row is None else _CLAIM.decode(row[0])
