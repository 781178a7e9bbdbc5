"""Artifacts of a run (DESIGN §14): what ``task.artifacts.put`` calls, and reading one back
by its ref or digest for ``smithers artifact`` and ``GET /api/v1/artifacts/{sha256}``."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from smithers.components.artifacts import REF_PREFIX, Artifact, Putter
from smithers.errors import InputError
from smithers.store.artifacts import check_sha256
from smithers.store.base import Store
from smithers.store.records import ArtifactRecord

__all__ = ["artifact_of", "artifact_putter", "read_artifact", "run_artifacts", "sha256_of"]


def artifact_of(record: ArtifactRecord) -> Artifact:
    """The user-facing `Artifact` of a stored record."""
    return Artifact(
        ref=REF_PREFIX + record.sha256,
        name=record.name,
        size=record.size,
        media_type=record.media_type,
    )


def artifact_putter(store: Store, run_id: str) -> Putter:
    """What ``task.artifacts.put`` calls for run ``run_id``: hash, store once, list."""

    def put(data: bytes, name: str, media_type: str | None) -> Artifact:
        record = ArtifactRecord(
            run_id=run_id,
            sha256=hashlib.sha256(data).hexdigest(),
            name=name,
            size=len(data),
            media_type=media_type,
            created_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        )
        store.put_artifact(record, data)
        return artifact_of(record)

    return put


def sha256_of(ref: str) -> str:
    """The digest in ``res://sha256/<hex>`` (or a bare digest).

    Raises:
        InputError: When ``ref`` names no digest.
    """
    return check_sha256(ref.removeprefix(REF_PREFIX))


def read_artifact(store: Store, ref: str) -> bytes:
    """The bytes of an artifact, checked against their digest.

    Raises:
        InputError: When no artifact has that digest.
        StoreError: When the stored bytes are damaged.
    """
    sha = sha256_of(ref)
    data = store.artifact_data(sha)
    if data is None:
        raise InputError(
            f"No artifact {REF_PREFIX}{sha} in the store at {store.location}; list a run's "
            "artifacts with `smithers artifact ls RUN_ID`."
        )
    return data


def run_artifacts(store: Store, run_id: str) -> list[dict[str, object]]:
    """A run's artifacts as JSON documents (ref, name, size, media_type, created_at)."""
    return [
        {
            "ref": REF_PREFIX + r.sha256,
            "name": r.name,
            "size": r.size,
            "media_type": r.media_type,
            "created_at": r.created_at,
        }
        for r in store.run_artifacts(run_id)
    ]
