"""The PostgreSQL store's reads, each a function of a cursor inside a read-only snapshot.

Orders match the LMDB store's key order: runs by internal key; per-run records by node id
(byte order, ``COLLATE "C"``), then iteration (``int[]`` compares like the tuple).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from smithers.store.base import DueRun, NodeKey, RunSnapshot, is_parked
from smithers.store.kv.keys import MAX_KEY
from smithers.store.postgres.events import EVENT_COLUMNS, event_from_row
from smithers.store.postgres.rows import RUN_COLUMNS, decode_run
from smithers.store.records import (
    ApprovalRecord,
    AttemptRecord,
    EventRecord,
    GroupRecord,
    Iteration,
    Lease,
    NodeRecord,
    RunRecord,
    SignalRecord,
)

__all__ = [
    "approvals",
    "attempts",
    "due_runs",
    "events",
    "frame",
    "get_run",
    "last_seq",
    "load",
    "output",
    "requested_gates",
    "runs",
    "signals",
]

_NODE = msgspec.json.Decoder(NodeRecord)
_GROUP = msgspec.json.Decoder(GroupRecord)
_ATTEMPT = msgspec.json.Decoder(AttemptRecord)
_APPROVAL = msgspec.json.Decoder(ApprovalRecord)
_SIGNAL = msgspec.json.Decoder(SignalRecord)
_KEY_OF = "(SELECT key FROM smithers_runs WHERE run_id = %s)"
_TERMINAL = "('finished', 'failed', 'cancelled')"


def _valid(run_id: str) -> bool:
    raw = run_id.encode()
    return bool(raw) and len(raw) <= MAX_KEY


def _run_key(cur: Any, run_id: str) -> int | None:
    if not _valid(run_id):
        return None
    cur.execute("SELECT key FROM smithers_runs WHERE run_id = %s", (run_id,))
    row = cur.fetchone()
    return None if row is None else int(row[0])


def get_run(cur: Any, run_id: str) -> RunRecord | None:
    """The run record without its input, or None."""
    if not _valid(run_id):
        return None
    cur.execute("SELECT record::text FROM smithers_runs WHERE run_id = %s", (run_id,))
    row = cur.fetchone()
    return None if row is None else decode_run(row[0])


def runs(cur: Any, status: str | None) -> list[RunRecord]:
    """Every run, or those with ``status`` (from the status index), oldest first."""
    if status is None:
        cur.execute("SELECT record::text FROM smithers_runs ORDER BY key")
    else:
        cur.execute(
            "SELECT record::text FROM smithers_runs WHERE status = %s ORDER BY key", (status,)
        )
    return [decode_run(raw) for (raw,) in cur.fetchall()]


def _signal(record: str, data: bytes) -> SignalRecord:
    return msgspec.structs.replace(_SIGNAL.decode(record), data=bytes(data))


def load(cur: Any, run_id: str) -> RunSnapshot | None:
    """All of a run's records, input included, or None."""
    if not _valid(run_id):
        return None
    cur.execute("SELECT key, record::text, input FROM smithers_runs WHERE run_id = %s", (run_id,))
    row = cur.fetchone()
    if row is None:
        return None
    key, record, stored_input = row
    run = decode_run(record)
    if stored_input is not None:
        run = msgspec.structs.replace(run, input=bytes(stored_input))
    cur.execute("SELECT record::text FROM smithers_nodes WHERE run_key = %s", (key,))
    nodes: dict[NodeKey, NodeRecord] = {}
    for (raw,) in cur.fetchall():
        rec = _NODE.decode(raw)
        nodes[(rec.node_id, rec.iteration)] = rec
    cur.execute("SELECT record::text FROM smithers_groups WHERE run_key = %s", (key,))
    groups: dict[tuple[str, str, Iteration], GroupRecord] = {}
    for (raw,) in cur.fetchall():
        grp = _GROUP.decode(raw)
        groups[(grp.kind, grp.key, grp.iteration)] = grp
    cur.execute("SELECT node_id, iteration, data FROM smithers_outputs WHERE run_key = %s", (key,))
    outputs = {(n, tuple(it)): bytes(data) for n, it, data in cur.fetchall()}
    cur.execute("SELECT record::text FROM smithers_approvals WHERE run_key = %s", (key,))
    approvals = {}
    for (raw,) in cur.fetchall():
        apr = _APPROVAL.decode(raw)
        approvals[(apr.node_id, apr.iteration)] = apr
    cur.execute("SELECT record::text, data FROM smithers_signals WHERE run_key = %s", (key,))
    signals = {}
    for raw, data in cur.fetchall():
        sig = _signal(raw, data)
        signals[(sig.node_id, sig.iteration)] = sig
    return RunSnapshot(run, nodes, groups, outputs, approvals, signals)


def output(cur: Any, run_id: str, node_id: str, iteration: Iteration) -> bytes | None:
    """One committed output's bytes."""
    if not _valid(run_id):
        return None
    cur.execute(
        f"SELECT data FROM smithers_outputs WHERE run_key = {_KEY_OF} "
        "AND node_id = %s AND iteration = %s::int[]",
        (run_id, node_id, list(iteration)),
    )
    row = cur.fetchone()
    return None if row is None else bytes(row[0])


def attempts(cur: Any, run_id: str) -> list[AttemptRecord]:
    """Every attempt of the run, by node, iteration, then number."""
    key = _run_key(cur, run_id)
    if key is None:
        return []
    cur.execute(
        "SELECT record::text FROM smithers_attempts WHERE run_key = %s "
        "ORDER BY node_id, iteration, number",
        (key,),
    )
    return [_ATTEMPT.decode(raw) for (raw,) in cur.fetchall()]


def approvals(cur: Any, run_id: str) -> list[ApprovalRecord]:
    """Every approval record of the run, by node then iteration."""
    key = _run_key(cur, run_id)
    if key is None:
        return []
    cur.execute(
        "SELECT record::text FROM smithers_approvals WHERE run_key = %s "
        "ORDER BY node_id, iteration",
        (key,),
    )
    return [_APPROVAL.decode(raw) for (raw,) in cur.fetchall()]


def signals(cur: Any, run_id: str) -> list[SignalRecord]:
    """Every signal delivery of the run, by node then iteration."""
    key = _run_key(cur, run_id)
    if key is None:
        return []
    cur.execute(
        "SELECT record::text, data FROM smithers_signals WHERE run_key = %s "
        "ORDER BY node_id, iteration",
        (key,),
    )
    return [_signal(raw, data) for raw, data in cur.fetchall()]


def requested_gates(cur: Any) -> list[tuple[RunRecord, ApprovalRecord]]:
    """Every requested gate across runs, from the partial index on requested approvals."""
    cur.execute(
        "SELECT r.record::text, a.record::text FROM smithers_approvals a "
        "JOIN smithers_runs r ON r.key = a.run_key WHERE a.status = 'requested' "
        "ORDER BY a.run_key, a.node_id, a.iteration"
    )
    found = []
    cache: dict[str, RunRecord] = {}
    for run_raw, approval_raw in cur.fetchall():
        run = cache.get(run_raw) or cache.setdefault(run_raw, decode_run(run_raw))
        found.append((run, _APPROVAL.decode(approval_raw)))
    return found


def frame(cur: Any, digest: str) -> bytes | None:
    """A stored graph frame by its hash."""
    cur.execute("SELECT data FROM smithers_frames WHERE digest = %s", (digest,))
    row = cur.fetchone()
    return None if row is None else bytes(row[0])


def events(cur: Any, after: int, run_id: str | None, limit: int | None) -> list[EventRecord]:
    """Events with ``seq > after`` in order, globally or of one run (from its index)."""
    cap = "" if limit is None else f" LIMIT {int(limit)}"
    if run_id is None:
        cur.execute(
            f"SELECT {EVENT_COLUMNS} FROM smithers_events WHERE seq > %s ORDER BY seq{cap}",
            (after,),
        )
    else:
        if not _valid(run_id):
            return []
        cur.execute(
            f"SELECT {EVENT_COLUMNS} FROM smithers_events WHERE run_key = {_KEY_OF} "
            f"AND seq > %s ORDER BY seq{cap}",
            (run_id, after),
        )
    return [event_from_row(row) for row in cur.fetchall()]


def last_seq(cur: Any) -> int:
    """The newest event's number (0 for an empty log)."""
    cur.execute("SELECT coalesce(max(seq), 0) FROM smithers_events")
    (seq,) = cur.fetchone()
    return int(seq)


def due_runs(
    cur: Any,
    now: float,
    limit: int,
    is_dead: Callable[[Lease], bool] | None,
    dead_after: float,
) -> tuple[list[DueRun], list[RunRecord]]:
    """The runs with news and the due wake-ups, then the leased runs to judge (outside the
    snapshot), each from its partial index."""
    found: list[DueRun] = []
    seen: set[int] = set()
    cur.execute(
        f"SELECT {RUN_COLUMNS} FROM smithers_runs WHERE has_news ORDER BY key LIMIT %s",
        (limit,),
    )
    for key, raw, _ in cur.fetchall():
        run = decode_run(raw)
        if is_parked(run):
            seen.add(key)
            found.append(DueRun(run, "news"))
    if len(found) < limit:
        cur.execute(
            f"SELECT {RUN_COLUMNS} FROM smithers_runs WHERE wake_at IS NOT NULL "
            f"AND lease_token IS NULL AND status NOT IN {_TERMINAL} AND wake_at <= %s "
            "ORDER BY wake_at, key LIMIT %s",
            (now, limit),
        )
        for key, raw, _ in cur.fetchall():
            if key not in seen and len(found) < limit:
                seen.add(key)
                found.append(DueRun(decode_run(raw), "due"))
    leased: list[RunRecord] = []
    if len(found) < limit or is_dead is not None:
        silent = "" if is_dead is not None else " AND heartbeat < %s"
        cap = "" if is_dead is not None else " LIMIT %s"
        params = () if is_dead is not None else (now - dead_after, limit - len(found))
        cur.execute(
            f"SELECT {RUN_COLUMNS} FROM smithers_runs WHERE lease_token IS NOT NULL "
            f"AND status NOT IN {_TERMINAL}{silent} ORDER BY heartbeat, key{cap}",
            params,
        )
        leased = [decode_run(raw) for key, raw, _ in cur.fetchall() if key not in seen]
    return found, leased
