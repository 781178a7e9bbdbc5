"""Shared fixtures: stores of both kinds, and hypothesis profiles sized for CI."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from smithers.store import KVStore, Store, memory_store, open_store

settings.register_profile(
    "ci",
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=400,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads a developer's store or actor name from the environment.

    SMITHERS_CHECK_RENDER is left alone: CI runs the runtime tests once with it set.
    """
    monkeypatch.delenv("SMITHERS_STORE", raising=False)
    monkeypatch.delenv("SMITHERS_ACTOR", raising=False)


@pytest.fixture(params=["memory", "lmdb"])
def store(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[Store]:
    """Each backend in turn, seen only as a `Store`: in memory, and LMDB in a temp directory."""
    if request.param == "memory":
        opened = memory_store()
    else:
        opened = open_store(os.path.join(str(tmp_path), "store"))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def lmdb_store(tmp_path: object) -> Iterator[KVStore]:
    """An LMDB store in a temp directory."""
    opened = open_store(os.path.join(str(tmp_path), "store"))
    try:
        yield opened
    finally:
        opened.close()
