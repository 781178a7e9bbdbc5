"""The event log on PostgreSQL: sequence numbers allocated in commit order, reads, and the
LISTEN/NOTIFY wake-up hint.

A plain ``bigserial`` hands out numbers at insert time, so a transaction that took 7 can
commit after one that took 8: a follower that read 8 and stored it as its cursor never sees
7. Here every transaction that appends events first updates the ``events`` counter row
(``UPDATE ... SET value = value + n RETURNING value``). The row lock it takes is held until
commit, so a second appender waits at that statement until the first has committed (and is
visible), then continues from its number: numbers are gap-free and become visible in
order. Appending is the last thing a transaction does, so the lock is held only for the
insert of the events and the commit.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import msgspec
import psycopg

from smithers.store.records import EventRecord, NewEvent

__all__ = ["CHANNEL", "Listener", "append_events", "event_from_row"]

CHANNEL = "smithers_wake"
_SLICE = 0.25  # seconds: how long a waiter may keep `Listener.close` waiting
_JSON = msgspec.json.Encoder()
_DATA = msgspec.json.Decoder(dict[str, Any])

_TAKE_SEQS = "UPDATE smithers_counters SET value = value + %s WHERE name = 'events' RETURNING value"
_INSERT_EVENT = """INSERT INTO smithers_events
    (seq, run_key, run_id, type, node_id, iteration, at, data)
    VALUES (%s, %s, %s, %s, %s, %s::int[], %s, %s::json)"""
EVENT_COLUMNS = "seq, run_id, type, node_id, iteration, at, data::text"


def append_events(cursor: Any, key: int, run_id: str, events: list[NewEvent]) -> tuple[int, ...]:
    """Append ``events`` of run ``run_id`` (row key ``key``); return their sequence numbers.

    Call it last in the transaction: from here to the commit, other appenders wait.
    """
    if not events:
        return ()
    rows = [
        (
            event.type,
            event.node_id,
            None if event.iteration is None else list(event.iteration),
            event.at,
            _JSON.encode(event.data).decode(),
        )
        for event in events
    ]
    cursor.execute(_TAKE_SEQS, (len(events),))
    (last,) = cursor.fetchone()
    first = int(last) - len(events) + 1
    seqs = tuple(range(first, first + len(events)))
    params = [(seq, key, run_id, *row) for seq, row in zip(seqs, rows, strict=True)]
    if len(params) == 1:
        cursor.execute(_INSERT_EVENT, params[0])
    else:
        cursor.executemany(_INSERT_EVENT, params)
    return seqs


def event_from_row(row: tuple[Any, ...]) -> EventRecord:
    """An `EventRecord` from a row selected as `EVENT_COLUMNS`."""
    seq, run_id, type_, node_id, iteration, at, data = row
    return EventRecord(
        seq=seq,
        type=type_,
        run_id=run_id,
        node_id=node_id,
        iteration=None if iteration is None else tuple(iteration),
        at=at,
        data=_DATA.decode(data),
    )


class Listener:
    """A connection LISTENing on `CHANNEL`, opened on first use; polling is the fallback.

    Args:
        connect: Opens a new autocommit connection (raises `StoreError` when it cannot).
    """

    def __init__(self, connect: Any) -> None:
        self._connect = connect
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a notification; True when one came.

        When the server cannot be reached the wait simply lasts ``timeout`` (the caller
        polls anyway), and listening starts again at the next call.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            try:
                if self._conn is None or self._conn.closed or self._conn.broken:
                    self._conn = self._connect()
                    self._conn.execute(f"LISTEN {CHANNEL}")
                while True:  # in slices, so that `close` never waits long for a waiter
                    left = max(0.0, deadline - time.monotonic())
                    for _ in self._conn.notifies(timeout=min(left, _SLICE), stop_after=1):
                        return True
                    if left <= _SLICE or self._closed.is_set():
                        return False
            except Exception:  # the hint is lost, not the work: fall back to polling
                self._drop()
        self._closed.wait(max(0.0, deadline - time.monotonic()))
        return False

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Stop listening."""
        self._closed.set()
        with self._lock:
            self._drop()
