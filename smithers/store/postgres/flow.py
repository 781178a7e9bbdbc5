"""Artifacts (bytes once per digest, and each run's list), consumer cursors and webhooks on
PostgreSQL (DESIGN §14), as `store/kv/flow.py` keeps them on a KV."""

from __future__ import annotations

from typing import Any

import msgspec

from smithers.store.artifacts import check_digest, duplicate_webhook
from smithers.store.records import ArtifactRecord, WebhookRecord

__all__ = [
    "MIGRATION",
    "add_webhook",
    "artifact_data",
    "cursor",
    "put_artifact",
    "remove_webhook",
    "run_artifacts",
    "set_cursor",
    "webhooks",
]

MIGRATION = [
    """CREATE TABLE smithers_artifacts (
        sha256 text COLLATE "C" PRIMARY KEY,
        data bytea NOT NULL
    )""",
    """CREATE TABLE smithers_run_artifacts (
        run_id text COLLATE "C" NOT NULL,
        sha256 text COLLATE "C" NOT NULL,
        name text COLLATE "C" NOT NULL,
        record json NOT NULL,
        PRIMARY KEY (run_id, sha256, name)
    )""",
    """CREATE TABLE smithers_cursors (
        name text COLLATE "C" PRIMARY KEY,
        seq bigint NOT NULL
    )""",
    """CREATE TABLE smithers_webhooks (
        name text COLLATE "C" PRIMARY KEY,
        record json NOT NULL
    )""",
]
"""Schema version 4: artifacts, consumer cursors and webhooks."""

_ARTIFACT = msgspec.json.Decoder(ArtifactRecord)
_WEBHOOK = msgspec.json.Decoder(WebhookRecord)


def _json(record: msgspec.Struct) -> str:
    return msgspec.json.encode(record).decode()


def put_artifact(cur: Any, record: ArtifactRecord, data: bytes) -> None:
    """Store the bytes under their digest (once) and list the artifact with its run."""
    check_digest(record.sha256, data)
    cur.execute(
        "INSERT INTO smithers_artifacts (sha256, data) VALUES (%s, %s) "
        "ON CONFLICT (sha256) DO NOTHING",
        (record.sha256, data),
    )
    cur.execute(
        "INSERT INTO smithers_run_artifacts (run_id, sha256, name, record) "
        "VALUES (%s, %s, %s, %s::json) ON CONFLICT (run_id, sha256, name) "
        "DO UPDATE SET record = EXCLUDED.record",
        (record.run_id, record.sha256, record.name, _json(record)),
    )


def artifact_data(cur: Any, sha256: str) -> bytes | None:
    """The stored bytes of an artifact (unchecked), or None."""
    cur.execute("SELECT data FROM smithers_artifacts WHERE sha256 = %s", (sha256,))
    row = cur.fetchone()
    return None if row is None else bytes(row[0])


def run_artifacts(cur: Any, run_id: str) -> list[ArtifactRecord]:
    """A run's artifacts, by digest then name."""
    cur.execute(
        "SELECT record::text FROM smithers_run_artifacts WHERE run_id = %s ORDER BY sha256, name",
        (run_id,),
    )
    return [_ARTIFACT.decode(raw) for (raw,) in cur.fetchall()]


def cursor(cur: Any, name: str) -> int:
    """The last event number consumer ``name`` acknowledged (0 when none)."""
    cur.execute("SELECT seq FROM smithers_cursors WHERE name = %s", (name,))
    row = cur.fetchone()
    return 0 if row is None else int(row[0])


def set_cursor(cur: Any, name: str, seq: int) -> None:
    """Record that consumer ``name`` has handled every event up to ``seq``."""
    cur.execute(
        "INSERT INTO smithers_cursors (name, seq) VALUES (%s, %s) "
        "ON CONFLICT (name) DO UPDATE SET seq = EXCLUDED.seq",
        (name, seq),
    )


def add_webhook(cur: Any, hook: WebhookRecord) -> None:
    """Store a new webhook under its name."""
    cur.execute(
        "INSERT INTO smithers_webhooks (name, record) VALUES (%s, %s::json) "
        "ON CONFLICT (name) DO NOTHING RETURNING name",
        (hook.name, _json(hook)),
    )
    if cur.fetchone() is None:
        raise duplicate_webhook(hook.name)


def webhooks(cur: Any) -> list[WebhookRecord]:
    """Every webhook, by name."""
    cur.execute("SELECT record::text FROM smithers_webhooks ORDER BY name")
    return [_WEBHOOK.decode(raw) for (raw,) in cur.fetchall()]


def remove_webhook(cur: Any, name: str) -> bool:
    """Delete a webhook and its cursor; whether it existed."""
    cur.execute("DELETE FROM smithers_cursors WHERE name = %s", (f"webhook:{name}",))
    cur.execute("DELETE FROM smithers_webhooks WHERE name = %s RETURNING name", (name,))
    return cur.fetchone() is not None
