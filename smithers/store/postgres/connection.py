"""Connections to PostgreSQL: a small thread-safe pool, transactions, and one-sentence errors.

Every psycopg error that reaches the runtime becomes a `StoreError` naming the store (its
password hidden) and the fix; a transaction cut off by a lost connection wrote nothing, so
the run it belonged to is resumable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg

from smithers.errors import StoreError
from smithers.store.base import redacted

__all__ = ["Pool", "redacted"]

T = TypeVar("T")
_CONNECT_TIMEOUT = 10  # seconds: an unreachable server is reported, not waited for forever


def _reason(exc: BaseException) -> str:
    """The first line of a driver error, without any password it might echo."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.rstrip(".")


class Pool:
    """Idle connections kept for reuse; each operation takes one for its transaction.

    Args:
        url: The ``postgresql://`` URL (libpq keywords in its query string work too).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = redacted(url)
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._closed = False

    def connect(self, *, writing: bool = False) -> psycopg.Connection[Any]:
        """A new autocommit connection.

        Raises:
            StoreError: When the server cannot be reached or refuses the login.
        """
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT)
        except psycopg.Error as exc:
            if writing:
                raise StoreError(
                    f"The PostgreSQL store at {self.where} could not be reached "
                    f"({_reason(exc)}), so nothing of this step was written; check the "
                    "server, then resume the run."
                ) from None
            raise StoreError(
                f"The PostgreSQL store at {self.where} could not be reached ({_reason(exc)}); "
                "check that the server runs and the URL is right, then try again."
            ) from None

    @contextmanager
    def connection(self, *, writing: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """Lend a connection; a broken one is dropped instead of going back to the pool."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self.connect(writing=writing)
        try:
            yield conn
        finally:
            if conn.broken or conn.closed or self._closed:
                conn.close()
            else:
                with self._lock:
                    self._idle.append(conn)

    def run(self, fn: Callable[[psycopg.Cursor[Any]], T], *, write: bool) -> T:
        """Run ``fn`` in one transaction (a read-only snapshot unless ``write``) and commit.

        When the connection breaks before COMMIT was sent (a pooled connection the server
        dropped while idle, a restart), the server has discarded the transaction, so it is
        run once more on a new connection.

        Raises:
            StoreError: When the server fails or the connection is lost; nothing of the
                transaction was written.
        """
        for retry in (True, False):
            try:
                with self.connection(writing=write) as conn, conn.cursor() as cursor:
                    committing = False
                    try:
                        if write:
                            # Pipelined: statements go out without waiting for each answer;
                            # only a read of a result (the run's row, the event counter)
                            # waits, so a commit takes a few round trips, not one per row.
                            with conn.pipeline():
                                cursor.execute("BEGIN")
                                result = fn(cursor)
                                committing = True
                                cursor.execute("COMMIT")
                        else:
                            cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                            result = fn(cursor)
                            cursor.execute("COMMIT")
                        return result
                    except BaseException as exc:
                        if not conn.broken and not conn.closed:
                            cursor.execute("ROLLBACK")
                        elif retry and not committing and isinstance(exc, psycopg.Error):
                            continue
                        raise
            except psycopg.Error as exc:
                raise self.fault(exc, writing=write) from None
        raise AssertionError("unreachable: the second try returns or raises")

    def fault(self, exc: psycopg.Error, *, writing: bool) -> StoreError:
        """The one-sentence `StoreError` for a driver error met while using the store."""
        if writing:
            return StoreError(
                f"The PostgreSQL store at {self.where} could not commit ({_reason(exc)}), so "
                "nothing of this step was written; check the server, then resume the run."
            )
        return StoreError(
            f"The PostgreSQL store at {self.where} could not be read ({_reason(exc)}); check "
            "the server, then try again."
        )

    def close(self) -> None:
        """Close every idle connection; connections on loan close when they come back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
