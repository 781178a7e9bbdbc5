"""Records to rows and back, and the one function that applies a `Batch` inside a transaction.

Records are stored as msgspec JSON in ``json`` columns (exact text, readable and queryable in
``psql``); the columns beside them (status, lease token, heartbeat, wake-up, state) are
derived from the record by `run_columns`, the only writer of a run row.
"""

from __future__ import annotations

from typing import Any

import msgspec

from smithers.store.base import Batch, is_parked
from smithers.store.postgres.events import append_events
from smithers.store.records import (
    TERMINAL_RUN_STATUSES,
    ApprovalRecord,
    AttemptRecord,
    GroupRecord,
    NodeRecord,
    RunRecord,
    SignalRecord,
)

__all__ = ["RUN_COLUMNS", "Encoded", "apply_batch", "decode_run", "encode", "run_columns"]

_JSON = msgspec.json.Encoder()
_RUN = msgspec.json.Decoder(RunRecord)
encode = _JSON.encode

# What a query selects to rebuild a run: its record, plus the news flag kept beside it.
RUN_COLUMNS = "key, record::text, has_news"

_UPSERT_NODE = """INSERT INTO smithers_nodes (run_key, node_id, iteration, state, record)
    VALUES (%s, %s, %s::int[], %s, %s::json)
    ON CONFLICT (run_key, node_id, iteration)
    DO UPDATE SET state = EXCLUDED.state, record = EXCLUDED.record"""
_UPSERT_GROUP = """INSERT INTO smithers_groups (run_key, kind, key, iteration, record)
    VALUES (%s, %s, %s, %s::int[], %s::json)
    ON CONFLICT (run_key, kind, key, iteration) DO UPDATE SET record = EXCLUDED.record"""
_UPSERT_ATTEMPT = """INSERT INTO smithers_attempts
    (run_key, node_id, iteration, number, outcome, record)
    VALUES (%s, %s, %s::int[], %s, %s, %s::json)
    ON CONFLICT (run_key, node_id, iteration, number)
    DO UPDATE SET outcome = EXCLUDED.outcome, record = EXCLUDED.record"""
_UPSERT_OUTPUT = """INSERT INTO smithers_outputs (run_key, node_id, iteration, data)
    VALUES (%s, %s, %s::int[], %s)
    ON CONFLICT (run_key, node_id, iteration) DO UPDATE SET data = EXCLUDED.data"""
_UPSERT_APPROVAL = """INSERT INTO smithers_approvals (run_key, node_id, iteration, status, record)
    VALUES (%s, %s, %s::int[], %s, %s::json)
    ON CONFLICT (run_key, node_id, iteration)
    DO UPDATE SET status = EXCLUDED.status, record = EXCLUDED.record"""
_UPSERT_SIGNAL = """INSERT INTO smithers_signals (run_key, node_id, iteration, record, data)
    VALUES (%s, %s, %s::int[], %s::json, %s)
    ON CONFLICT (run_key, node_id, iteration)
    DO UPDATE SET record = EXCLUDED.record, data = EXCLUDED.data"""
_INSERT_FRAME = """INSERT INTO smithers_frames (digest, data) VALUES (%s, %s)
    ON CONFLICT (digest) DO NOTHING"""
_UPDATE_RUN = """UPDATE smithers_runs SET status = %s, epoch = %s, inbox = %s,
    lease_token = %s, heartbeat = %s, wake_at = %s, has_news = %s, updated_at = %s,
    record = %s::json
    WHERE key = %s"""


def decode_run(record: str) -> RunRecord:
    """A run record from its stored JSON."""
    return _RUN.decode(record)


def run_columns(run: RunRecord, has_news: bool) -> tuple[Any, ...]:
    """The derived columns of a run row, in `_UPDATE_RUN`'s order (the key comes last)."""
    lease = run.lease
    return (
        run.status,
        run.epoch,
        run.inbox,
        None if lease is None else lease.token,
        None if lease is None else lease.heartbeat,
        run.wake_at,
        has_news,
        run.updated_at,
        encode(msgspec.structs.replace(run, input=None)).decode(),
    )


def news_after(old: RunRecord, new: RunRecord, had_news: bool) -> bool:
    """Whether the run has news for a worker after ``old`` became ``new``.

    News is a decision, signal or cancel request that reached a parked run; it is spent when
    the run stops being parked (an owner took it, or it ended).
    """
    if new.inbox != old.inbox and is_parked(new):
        return True
    if is_parked(old) and not is_parked(new):
        return False
    return had_news


class Encoded:
    """A batch's rows, encoded before the transaction opens (an unencodable record fails
    the commit before anything is sent)."""

    __slots__ = ("approvals", "attempts", "frames", "groups", "nodes", "outputs", "signals")

    def __init__(self, batch: Batch) -> None:
        self.nodes = [_node_row(n) for n in batch.nodes]
        self.groups = [_group_row(g) for g in batch.groups]
        self.attempts = [_attempt_row(a) for a in batch.attempts]
        self.outputs = [(node_id, list(it), raw) for node_id, it, raw in batch.outputs]
        self.approvals = [_approval_row(a) for a in batch.approvals]
        self.signals = [_signal_row(s) for s in batch.signals]
        self.frames = list(batch.frames)


def _node_row(node: NodeRecord) -> tuple[Any, ...]:
    return (node.node_id, list(node.iteration), node.state, encode(node).decode())


def _group_row(group: GroupRecord) -> tuple[Any, ...]:
    return (group.kind, group.key, list(group.iteration), encode(group).decode())


def _attempt_row(attempt: AttemptRecord) -> tuple[Any, ...]:
    return (
        attempt.node_id,
        list(attempt.iteration),
        attempt.number,
        attempt.outcome,
        encode(attempt).decode(),
    )


def _approval_row(approval: ApprovalRecord) -> tuple[Any, ...]:
    return (
        approval.node_id,
        list(approval.iteration),
        approval.status,
        encode(approval).decode(),
    )


def _signal_row(signal: SignalRecord) -> tuple[Any, ...]:
    # The data travels as bytea beside the record, not base64 inside its JSON.
    return (
        signal.node_id,
        list(signal.iteration),
        encode(msgspec.structs.replace(signal, data=b"")).decode(),
        signal.data,
    )


def _wakes_a_worker(old: RunRecord, new: RunRecord, fresh_news: bool) -> bool:
    """Whether a worker waiting on LISTEN should look now: news arrived, a wake-up time was
    set, or an owner let go of a run that is not over."""
    if new.status in TERMINAL_RUN_STATUSES:
        return False
    released = old.lease is not None and new.lease is None
    return fresh_news or released or (new.wake_at is not None and new.wake_at != old.wake_at)


def _many(cursor: Any, query: str, key: int, rows: list[tuple[Any, ...]]) -> None:
    if len(rows) == 1:
        cursor.execute(query, (key, *rows[0]))
    elif rows:
        cursor.executemany(query, [(key, *row) for row in rows])


def apply_batch(
    cursor: Any,
    key: int,
    run: RunRecord,
    had_news: bool,
    batch: Batch,
    rows: Encoded,
    **forced: object,
) -> tuple[RunRecord, tuple[int, ...]]:
    """Apply ``batch`` (and the ``forced`` run fields) to run ``run``, whose row the
    transaction has locked; return the new run and its events' sequence numbers.

    The events come last, so the transaction holds the event counter only for the moment
    between appending them and committing (see `events.append_events`).
    """
    updates = {**batch.run, **forced}
    if batch.release_lease:
        updates["lease"] = None
    if batch.bump_inbox:
        updates["inbox"] = run.inbox + 1
    new_run = msgspec.structs.replace(run, **updates) if updates else run
    _many(cursor, _UPSERT_NODE, key, rows.nodes)
    _many(cursor, _UPSERT_GROUP, key, rows.groups)
    _many(cursor, _UPSERT_ATTEMPT, key, rows.attempts)
    _many(cursor, _UPSERT_OUTPUT, key, rows.outputs)
    _many(cursor, _UPSERT_APPROVAL, key, rows.approvals)
    _many(cursor, _UPSERT_SIGNAL, key, rows.signals)
    for frame in rows.frames:  # one by one: the first of two equal digests in a batch wins
        cursor.execute(_INSERT_FRAME, frame)
    if new_run is not run:
        news = news_after(run, new_run, had_news)
        # The caller locked the row and checked the lease token under that lock: that is
        # the fence, and it holds until COMMIT.
        cursor.execute(_UPDATE_RUN, (*run_columns(new_run, news), key))
        if _wakes_a_worker(run, new_run, news and not had_news):
            cursor.execute("SELECT pg_notify('smithers_wake', %s)", (run.run_id,))
    seqs = append_events(cursor, key, run.run_id, batch.events)
    return new_run, seqs
