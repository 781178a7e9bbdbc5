"""Persistence: the `Store` protocol, its records, the LMDB store and an in-memory store."""

from __future__ import annotations

from smithers.store.base import (
    Batch,
    CommitResult,
    Decision,
    RunSnapshot,
    Store,
    default_store_path,
)
from smithers.store.kvstore import KVStore
from smithers.store.memory import memory_store
from smithers.store.records import (
    ApprovalRecord,
    AttemptRecord,
    EventRecord,
    NodeRecord,
    RunRecord,
    SignalRecord,
)

__all__ = [
    "ApprovalRecord",
    "AttemptRecord",
    "Batch",
    "CommitResult",
    "Decision",
    "EventRecord",
    "KVStore",
    "NodeRecord",
    "RunRecord",
    "RunSnapshot",
    "SignalRecord",
    "Store",
    "default_store_path",
    "memory_store",
    "open_store",
]


def open_store(path: str | None = None, *, create: bool = True, readonly: bool = False) -> KVStore:
    """Open the LMDB store at ``path``, or at the default location.

    The default is ``$SMITHERS_STORE``, else the nearest ``.smithers/`` walking up from the
    working directory, else ``./.smithers``.

    Args:
        path: The store directory.
        create: Make the store if it does not exist; when False an absent store is an error.
        readonly: Open for reading only (an absent store is an error; opening never waits for
            a writer in another process).

    Returns:
        The store.

    Raises:
        StoreError: When the path cannot hold a store (or holds none and ``create`` is False).
    """
    from smithers.store.lmdb_kv import open_lmdb_store

    return open_lmdb_store(path or default_store_path()[0], create=create, readonly=readonly)
