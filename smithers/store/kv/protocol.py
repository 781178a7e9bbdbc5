"""`KV`: the ordered, transactional key-value interface both stores' backends provide.

All store logic (runs, events, indexes, compare-and-set) lives once in `KVStore` on top of
it; the LMDB backend and the in-memory backend only move bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar

__all__ = ["KV", "TABLES", "Txn"]

T = TypeVar("T")

TABLES = (
    "meta",
    "runs",
    "inputs",
    "run_ids",
    "nodes",
    "groups",
    "attempts",
    "outputs",
    "approvals",
    "signals",
    "events",
    "run_events",
    "frames",
    "idx_status",
    "idx_gates",
    "idx_wake",
    "idx_news",
    "idx_leases",
    "actor_groups",
    "tokens",
    "link_keys",
    "claims",
    "artifacts",
    "run_artifacts",
    "cursors",
    "webhooks",
)


class Txn(Protocol):
    """One transaction: reads see its own writes; a write transaction commits atomically."""

    def get(self, table: str, key: bytes) -> bytes | None:
        """The value at ``key``, or None."""

    def put(
        self,
        table: str,
        key: bytes,
        value: bytes,
        *,
        overwrite: bool = True,
        append: bool = False,
    ) -> bool:
        """Store a value; with ``overwrite=False`` keep an existing one and return False."""

    def delete(self, table: str, key: bytes) -> bool:
        """Remove a key; return whether it existed."""

    def scan(
        self, table: str, prefix: bytes = b"", *, start: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """Keys with ``prefix`` in order, from ``start`` (inclusive) when given."""

    def last(self, table: str) -> tuple[bytes, bytes] | None:
        """The greatest key and its value, or None when the table is empty."""


class KV(Protocol):
    """A backend: runs functions inside read or write transactions."""

    @property
    def location(self) -> str | None:
        """Where the backend keeps its data (a directory), or None in memory."""

    def read(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a read transaction (a consistent snapshot; never blocks writers)."""

    def write(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a write transaction and commit durably; an exception aborts it.

        ``fn`` may be re-run from the start (e.g. after the map grows), so it must only
        touch the transaction.
        """

    def write_each(self, fns: Sequence[Callable[[Txn], T]]) -> list[T | Exception]:
        """Run each of ``fns`` in its own nested transaction inside ONE durable commit.

        An ``Exception`` from one function undoes that function's writes only and takes its
        place in the result; the others still commit (group commit: several runs' steps,
        one fsync). A backend failure aborts the whole transaction and is raised. Like
        `write`, the functions may be re-run from the start.
        """

    def close(self) -> None:
        """Release the backend."""
