"""Persistence: the `Store` protocol, its records, the LMDB store and an in-memory store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from smithers.errors import StoreError
from smithers.store.base import (
    Batch,
    CommitResult,
    Decision,
    DueRun,
    RunSnapshot,
    Store,
    default_store_path,
    redacted,
)
from smithers.store.kv.kvstore import KVStore
from smithers.store.kv.memory import memory_store
from smithers.store.records import (
    ApprovalRecord,
    AttemptRecord,
    EventRecord,
    NodeRecord,
    RunRecord,
    SignalRecord,
)

if TYPE_CHECKING:
    from smithers.store.postgres import PostgresStore

__all__ = [
    "ApprovalRecord",
    "AttemptRecord",
    "Batch",
    "CommitResult",
    "Decision",
    "DueRun",
    "EventRecord",
    "KVStore",
    "NodeRecord",
    "RunRecord",
    "RunSnapshot",
    "SignalRecord",
    "Store",
    "default_store_path",
    "memory_store",
    "migrate_store",
    "open_store",
    "redacted",
]


def open_store(
    location: str | None = None, *, create: bool = True, readonly: bool = False
) -> KVStore | PostgresStore:
    """Open the store at ``location``, choosing the backend by its form.

    A directory path opens (or makes) an LMDB store; a ``postgresql://`` (or ``postgres://``)
    URL opens the PostgreSQL store (DESIGN §15; needs ``pip install 'smithers[postgres]'``),
    creating its tables in an empty database. With no location, the
    default applies: ``$SMITHERS_STORE``, else the nearest ``.smithers/`` walking up from the
    working directory, else ``./.smithers``.

    Args:
        location: A store directory, or a URL naming another backend.
        create: Make the store if it does not exist; when False an absent store is an error.
        readonly: Open for reading only (an absent store is an error; opening never waits for
            a writer in another process).

    Returns:
        The store.

    Raises:
        StoreError: When the location names no backend this smithers has, cannot hold a
            store, or holds none and ``create`` is False.
    """
    location = location or default_store_path()[0]
    scheme, sep, _ = location.partition("://")
    if sep and scheme.isidentifier():
        shown = redacted(location)
        if scheme in ("postgresql", "postgres"):
            if readonly:
                create = False
            return _open_postgres(location, shown, create=create)
        raise StoreError(
            f"The store location {shown} uses the unknown scheme `{scheme}://`; pass --store "
            "with a directory for an LMDB store, or a postgresql:// URL."
        )
    from smithers.store.kv.lmdb_kv import open_lmdb_store

    return open_lmdb_store(location, create=create, readonly=readonly)


def migrate_store(location: str) -> tuple[int, int] | None:
    """Create or migrate the tables of the PostgreSQL store at ``location`` to this
    smithers's schema version (``smithers store migrate``).

    Args:
        location: A ``postgresql://`` URL, or an LMDB directory (which needs no migration).

    Returns:
        The schema version before and after, or None for an LMDB store.

    Raises:
        StoreError: When the server cannot be reached, the driver is missing, or the
            database's schema is newer than this smithers knows.
    """
    scheme, sep, _ = location.partition("://")
    if not (sep and scheme in ("postgresql", "postgres")):
        return None
    try:
        from smithers.store.postgres import migrate_store as migrate_postgres
    except ImportError:
        raise StoreError(
            f"The store location {redacted(location)} names a PostgreSQL store, but its driver "
            "is not installed; run `pip install 'smithers[postgres]'`."
        ) from None
    return migrate_postgres(location)


def _open_postgres(url: str, shown: str, *, create: bool) -> PostgresStore:
    """The PostgreSQL store at ``url``, or a `StoreError` saying how to install its driver."""
    try:
        from smithers.store.postgres import open_postgres_store
    except ImportError:
        raise StoreError(
            f"The store location {shown} names a PostgreSQL store, but its driver is not "
            "installed; run `pip install 'smithers[postgres]'`."
        ) from None
    return open_postgres_store(url, create=create)
