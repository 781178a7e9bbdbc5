"""A first end-to-end check: the README example parks at its gate and finishes once approved."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

import smithers
from smithers.store import KVStore

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_deploy_example_parks_then_finishes_when_approved(store: KVStore) -> None:
    """The deploy example waits at approve-deploy, and an approval finishes it as approved."""
    deploy = runpy.run_path(str(EXAMPLES / "deploy.py"))["deploy"]
    parked = smithers.run(deploy, {"version": "2.0.0"}, store=store, run_id="d")
    assert parked.status == "waiting-approval"
    assert [p.node_id for p in parked.pending] == ["approve-deploy"]
    assert parked.pending[0].request is not None
    assert parked.pending[0].request.title == "Deploy 2.0.0?"
    smithers.approve("d", "approve-deploy", note="Ship it", by="alice", store=store)
    done = smithers.resume("d", store=store, definition=deploy)
    assert done.status == "finished"
    assert done.outputs["approve-deploy"].decided_by == "alice"
    assert done.outputs["record"].status == "approved"


def test_the_public_api_resolves_every_name_it_lists() -> None:
    """Every name in smithers.__all__ resolves lazily, and nothing else is listed."""
    import smithers as package

    assert set(package.__all__) == set(package._WHERE)
    for name in package.__all__:
        assert getattr(package, name) is not None
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = package.nope  # type: ignore[attr-defined]
