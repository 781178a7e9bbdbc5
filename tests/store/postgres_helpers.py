"""Helpers for the PostgreSQL store's tests: waiting for a condition, stalling a write
before its COMMIT, running calls in threads, and a parked run with news."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from smithers.store import Batch
from smithers.store.postgres import PostgresStore
from tests.store.helpers import decision, lease, requested, run_record

DEADLINE = 30.0  # a hang guard only: every wait below ends as soon as its condition holds


def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` (polling); fail after `DEADLINE` naming ``what``."""
    end = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.005)


def waiting_on_a_lock(url: str) -> Callable[[], bool]:
    """Whether some backend of the database waits for a lock held by another transaction."""

    def check() -> bool:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
        return bool(row and row[0])

    return check


def hold_writes(store: PostgresStore, inside: Callable[[], None]) -> None:
    """Make every write of ``store`` call ``inside()`` after its work, before its COMMIT."""
    run = store._pool.run

    def write(fn: Callable[[Any], Any]) -> Any:
        def held(cursor: Any) -> Any:
            result = fn(cursor)
            inside()
            return result

        return run(held, write=True)

    store._write = write  # type: ignore[method-assign]


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Start ``fn`` in a thread; its result or exception lands in the returned box."""
    box: dict[str, Any] = {}

    def call() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread, box


def parked_with_news(store: PostgresStore, run_id: str) -> None:
    """A parked run whose gate was just decided: news for a worker."""
    store.create_run(run_record(run_id, lease=lease()), Batch(approvals=[requested("g")]))
    store.commit(run_id, Batch(run={"status": "waiting-approval"}, release_lease=True), token=None)
    store.decide(run_id, decision("g"))
