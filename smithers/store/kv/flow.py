"""Artifacts (bytes once per digest, and each run's list), consumer cursors and webhooks on a
`KV` (DESIGN §14). Each read-check-write is one transaction."""

from __future__ import annotations

import msgspec

from smithers.store.artifacts import check_digest, duplicate_webhook, verified
from smithers.store.kv.protocol import KV, Txn
from smithers.store.records import ArtifactRecord, WebhookRecord

__all__ = [
    "add_webhook",
    "artifact_data",
    "cursor",
    "put_artifact",
    "remove_webhook",
    "run_artifacts",
    "set_cursor",
    "webhooks",
]

_ENC = msgspec.msgpack.Encoder()
_ARTIFACT = msgspec.msgpack.Decoder(ArtifactRecord)
_WEBHOOK = msgspec.msgpack.Decoder(WebhookRecord)
_SEQ = msgspec.msgpack.Decoder(int)


def _run_prefix(run_id: str) -> bytes:
    return run_id.encode() + b"\x00"


def put_artifact(kv: KV, record: ArtifactRecord, data: bytes) -> None:
    """Store the bytes under their digest (once) and list the artifact with its run."""
    check_digest(record.sha256, data)
    key = _run_prefix(record.run_id) + record.sha256.encode() + b"\x00" + record.name.encode()[:300]

    def write(txn: Txn) -> None:
        txn.put("artifacts", record.sha256.encode(), data, overwrite=False)
        txn.put("run_artifacts", key, _ENC.encode(record))

    kv.write(write)


def artifact_data(kv: KV, sha256: str) -> bytes | None:
    """The bytes of an artifact, verified against their digest, or None."""
    raw = kv.read(lambda txn: txn.get("artifacts", sha256.encode()))
    return verified(sha256, None if raw is None else bytes(raw), kv.location)


def run_artifacts(kv: KV, run_id: str) -> list[ArtifactRecord]:
    """A run's artifacts, by digest then name."""
    prefix = _run_prefix(run_id)
    return kv.read(
        lambda txn: [_ARTIFACT.decode(raw) for _, raw in txn.scan("run_artifacts", prefix)]
    )


def cursor(kv: KV, name: str) -> int:
    """The last event sequence number consumer ``name`` acknowledged (0 when none)."""
    raw = kv.read(lambda txn: txn.get("cursors", name.encode()))
    return 0 if raw is None else _SEQ.decode(raw)


def set_cursor(kv: KV, name: str, seq: int) -> None:
    """Record that consumer ``name`` has handled every event up to ``seq``."""
    kv.write(lambda txn: txn.put("cursors", name.encode(), _ENC.encode(seq)))


def add_webhook(kv: KV, hook: WebhookRecord) -> None:
    """Store a new webhook under its name."""

    def write(txn: Txn) -> None:
        if not txn.put("webhooks", hook.name.encode(), _ENC.encode(hook), overwrite=False):
            raise duplicate_webhook(hook.name)

    kv.write(write)


def webhooks(kv: KV) -> list[WebhookRecord]:
    """Every webhook, by name."""
    return kv.read(lambda txn: [_WEBHOOK.decode(raw) for _, raw in txn.scan("webhooks")])


def remove_webhook(kv: KV, name: str) -> bool:
    """Delete a webhook and its cursor; whether it existed."""

    def write(txn: Txn) -> bool:
        txn.delete("cursors", f"webhook:{name}".encode())
        return txn.delete("webhooks", name.encode())

    return kv.write(write)
