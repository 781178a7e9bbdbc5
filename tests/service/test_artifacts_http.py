"""``GET /api/v1/artifacts/{sha256}`` and ``GET /api/v1/runs/{run_id}/artifacts`` against a
real server: authenticated, the exact bytes, 404 for unknown digests and runs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from smithers.runtime.artifacts import artifact_putter
from smithers.service.auth import create_token
from tests.service.helpers import opened_store, park, serving, workflows

pytestmark = pytest.mark.slow

DIFF = b"--- a/x\n+++ b/x\n"


def test_artifacts_are_served_to_a_token_holder(tmp_path: Path) -> None:
    """A viewer reads the bytes and the run's list; no token is 401; unknown digests 404."""
    store = tmp_path / ".smithers"
    workflows(tmp_path)
    park(tmp_path, store, "gate.py:gated", ["r"])
    with opened_store(store) as s:
        artifact = artifact_putter(s, "r")(DIFF, "change.diff", "text/x-diff")
        secret = create_token(s, "viewer", "viewer", None).secret
    sha = hashlib.sha256(DIFF).hexdigest()
    with serving(store, tmp_path) as served, served.client(secret) as client:
        got = client.get(f"/api/v1/artifacts/{sha}")
        assert (got.status_code, got.content) == (200, DIFF)
        assert got.headers["content-type"] == "application/octet-stream"
        listed = client.get("/api/v1/runs/r/artifacts").json()
        assert [(a["ref"], a["name"]) for a in listed] == [(artifact.ref, "change.diff")]
        assert client.get(f"/api/v1/artifacts/{'0' * 64}").status_code == 404
        assert client.get("/api/v1/artifacts/nothex").status_code == 422
        assert client.get("/api/v1/runs/nope/artifacts").status_code == 404
        with served.client() as anonymous:
            assert anonymous.get(f"/api/v1/artifacts/{sha}").status_code == 401
