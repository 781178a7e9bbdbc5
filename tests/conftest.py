"""Shared fixtures: stores of every kind (a throwaway PostgreSQL server among them), and
hypothesis profiles sized for CI."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from smithers.store import KVStore, Store, memory_store, open_store
from tests.postgres_cluster import FAST, Cluster, cluster, empty_store, missing_reason

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


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """A PostgreSQL server for the session (skipped without the binaries, failed under CI)."""
    reason = missing_reason()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs the PostgreSQL tests to run, but {reason}.")
        pytest.skip(f"PostgreSQL tests skipped: {reason}")
    with cluster(*FAST) as running:
        yield running


@pytest.fixture(scope="session")
def postgres_url(postgres_cluster: Cluster) -> str:
    """The URL of a database holding the smithers tables, shared by the session's tests."""
    url = postgres_cluster.create_database("smithers_test")
    open_store(url).close()  # first use creates the tables
    return url


@pytest.fixture
def postgres_store(postgres_url: str) -> Iterator[Store]:
    """A PostgreSQL store, emptied after the test."""
    opened = open_store(postgres_url)
    try:
        yield opened
    finally:
        opened.close()
        empty_store(postgres_url)


@pytest.fixture(params=["memory", "lmdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[Store]:
    """Each backend in turn, seen only as a `Store`: in memory, LMDB in a temp directory, and
    PostgreSQL in the session's server."""
    if request.param == "postgres":
        yield request.getfixturevalue("postgres_store")
        return
    if request.param == "memory":
        opened = memory_store()
    else:
        opened = open_store(os.path.join(str(tmp_path), "store"))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(params=["memory", "lmdb"])
def kv_store(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[KVStore]:
    """Each backend of the ordered-KV family in turn (for tests of that layer itself)."""
    opened = (
        memory_store()
        if request.param == "memory"
        else open_store(os.path.join(str(tmp_path), "store"))
    )
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
