"""Fixtures of the store tests: the session's PostgreSQL store and a second connection to it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from smithers.store import Store, open_store

if TYPE_CHECKING:  # psycopg is imported by the tests that need it, not by every store test
    from smithers.store.postgres import PostgresStore


@pytest.fixture
def pg(postgres_store: Store) -> PostgresStore:
    """The session's PostgreSQL store, emptied after the test."""
    from smithers.store.postgres import PostgresStore

    assert isinstance(postgres_store, PostgresStore)
    return postgres_store


@pytest.fixture
def other(postgres_url: str) -> Iterator[PostgresStore]:
    """A second store on the same database: another process, as far as the server knows."""
    from smithers.store.postgres import PostgresStore

    opened = open_store(postgres_url)
    assert isinstance(opened, PostgresStore)
    try:
        yield opened
    finally:
        opened.close()
