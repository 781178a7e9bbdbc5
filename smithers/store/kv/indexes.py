"""The indexes derived from run records, and `due_runs`, the worker's question answered from
them: which runs have news, are due to wake, or lost their owner. Never a scan of all runs.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from smithers.store.base import DEAD_AFTER, DueRun, is_parked
from smithers.store.kv.keys import status_key, time_key
from smithers.store.kv.protocol import KV, Txn
from smithers.store.records import TERMINAL_RUN_STATUSES, Lease, RunRecord

__all__ = ["due_runs", "index_keys", "put_run"]

_ENC = msgspec.msgpack.Encoder()
_RUN = msgspec.msgpack.Decoder(RunRecord)


def index_keys(rk: bytes, run: RunRecord) -> set[tuple[str, bytes]]:
    """The index entries a run record implies: its status, its wake-up, its lease."""
    keys = {("idx_status", status_key(run.status, rk))}
    if run.status not in TERMINAL_RUN_STATUSES:
        if run.wake_at is not None:
            keys.add(("idx_wake", time_key(run.wake_at, rk)))
        if run.lease is not None:
            keys.add(("idx_leases", time_key(run.lease.heartbeat, rk)))
    return keys


def put_run(txn: Txn, rk: bytes, old: RunRecord | None, new: RunRecord) -> None:
    """Write a run record and move the index entries it implies, in ``txn``."""
    before = set() if old is None else index_keys(rk, old)
    after = index_keys(rk, new)
    for table, key in before - after:
        txn.delete(table, key)
    for table, key in after - before:
        txn.put(table, key, b"")
    if old is not None and new.inbox != old.inbox and is_parked(new):
        txn.put("idx_news", rk, b"")  # news for a run nobody executes: a worker resumes it
    elif old is not None and is_parked(old) and not is_parked(new):
        txn.delete("idx_news", rk)
    txn.put("runs", rk, _ENC.encode(new))


def due_runs(
    kv: KV,
    now: float,
    limit: int,
    *,
    is_dead: Callable[[Lease], bool] | None = None,
    dead_after: float = DEAD_AFTER,
) -> list[DueRun]:
    """`Store.due_runs` over a `KV` backend (see the protocol for the order and arguments)."""

    def read(txn: Txn) -> tuple[list[DueRun], list[tuple[bytes, RunRecord]]]:
        found: list[DueRun] = []
        seen: set[bytes] = set()

        def record(rk: bytes) -> RunRecord | None:
            raw = None if rk in seen else txn.get("runs", rk)
            return None if raw is None else _RUN.decode(raw)

        for rk, _ in txn.scan("idx_news"):
            if len(found) >= limit:
                return found, []
            run = record(rk)
            if run is not None and is_parked(run):
                seen.add(rk)
                found.append(DueRun(run, "news"))
        until = time_key(now, b"\xff" * 8)
        for key, _ in txn.scan("idx_wake"):
            if len(found) >= limit or key > until:
                break
            run = record(key[8:])
            if run is not None and run.lease is None:
                seen.add(key[8:])
                found.append(DueRun(run, "due"))
        leased: list[tuple[bytes, RunRecord]] = []
        silent = time_key(now - dead_after, b"")  # heartbeats before this are too old
        for key, _ in txn.scan("idx_leases"):
            if is_dead is None and (len(found) + len(leased) >= limit or key >= silent):
                break
            run = record(key[8:])
            if run is not None and run.lease is not None:
                leased.append((key[8:], run))
        return found, leased

    if limit <= 0:
        return []
    found, leased = kv.read(read)
    for _, run in leased:  # judged outside the transaction: is_dead may read /proc
        if len(found) >= limit:
            break
        assert run.lease is not None
        if is_dead is None or is_dead(run.lease):
            found.append(DueRun(run, "owner-dead"))
    return found
