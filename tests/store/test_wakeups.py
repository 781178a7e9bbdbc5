"""`Store.due_runs`: parked runs with news, runs whose wake-up is due, runs whose owner died,
found through indexes on both backends."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smithers.store import Batch, KVStore, Store, memory_store, open_store
from smithers.store.base import DueRun, is_parked
from smithers.store.kv.memory import MemoryKV
from smithers.store.records import TERMINAL_RUN_STATUSES, Lease, RunRecord
from tests.postgres_cluster import empty_store
from tests.store.helpers import decision, lease, requested, run_record, signal

T = TypeVar("T")


def leased(token: str, heartbeat: float) -> Lease:
    """A lease of ``token`` whose last heartbeat was at ``heartbeat``."""
    return msgspec.structs.replace(lease(token), heartbeat=heartbeat)


def park(store: Store, run_id: str, *, wake_at: float | None = None) -> None:
    """The owner parks the run at its gate, releasing the lease (and setting a wake-up)."""
    store.commit(
        run_id,
        Batch(run={"status": "waiting-approval", "wake_at": wake_at}, release_lease=True),
        token=None,
    )


def due(store: Store, now: float = 0.0, limit: int = 100, **options: Any) -> list[tuple[str, str]]:
    """(run id, reason) of every run ``due_runs`` returns."""
    return [(d.run.run_id, d.reason) for d in store.due_runs(now, limit, **options)]


def started(store: Store, run_id: str, token: str = "tok", heartbeat: float = 0.0) -> None:
    """A running run with a requested gate, held by ``token``."""
    store.create_run(
        run_record(run_id, lease=leased(token, heartbeat), epoch=1),
        Batch(approvals=[requested("g")]),
    )


def test_a_parked_run_without_news_or_wake_up_is_not_due(store: Store) -> None:
    """Parking with nothing arrived and no wake-up time leaves nothing for a worker."""
    started(store, "r")
    park(store, "r")
    assert due(store, now=1e9) == []


def test_a_decision_on_a_parked_run_is_news_until_someone_takes_it(store: Store) -> None:
    """Deciding a parked run's gate makes it due with reason news; acquiring it clears that."""
    started(store, "r")
    park(store, "r")
    store.decide("r", decision("g"))
    (found,) = store.due_runs(0.0, 10)
    assert found == DueRun(store.get_run("r"), "news")  # type: ignore[arg-type]
    store.acquire("r", leased("tok-2", 50.0), is_dead=lambda _: True, batch=Batch())
    assert due(store, now=55.0) == []


def test_news_taken_by_an_owner_is_gone_when_it_parks_again(store: Store) -> None:
    """News read by a new owner is spent: parking again without new arrivals is not due."""
    started(store, "r")
    park(store, "r")
    store.decide("r", decision("g"))
    store.acquire("r", leased("tok-2", 50.0), is_dead=lambda _: True, batch=Batch())
    park(store, "r")
    assert due(store, now=55.0) == []


def test_a_signal_or_a_cancel_request_on_a_parked_run_is_news(store: Store) -> None:
    """Delivering a signal, or bumping the inbox to ask for a cancel, makes a parked run due."""
    started(store, "a")
    park(store, "a")
    started(store, "b")
    park(store, "b")
    started(store, "c")
    park(store, "c")
    store.deliver("a", signal("s"))
    store.commit("c", Batch(run={"cancel_requested": True}, bump_inbox=True), token=None)
    assert due(store) == [("a", "news"), ("c", "news")]


def test_news_for_a_run_its_owner_executes_is_not_due(store: Store) -> None:
    """A decision on a run held by a live owner is the owner's to read, not a worker's."""
    started(store, "r", heartbeat=100.0)
    store.decide("r", decision("g"))
    assert due(store, now=101.0) == []


def test_wake_ups_come_due_in_time_order_and_respect_the_limit(store: Store) -> None:
    """Runs whose wake_at is at or before now are due, earliest first, at most ``limit``."""
    for run_id, wake in [("a", 30.0), ("b", 10.0), ("c", 20.0), ("d", 40.0)]:
        started(store, run_id)
        park(store, run_id, wake_at=wake)
    assert due(store, now=9.9) == []
    assert due(store, now=20.0) == [("b", "due"), ("c", "due")]
    assert due(store, now=100.0, limit=3) == [("b", "due"), ("c", "due"), ("a", "due")]
    assert due(store, now=100.0, limit=0) == []


def test_a_finished_run_or_a_taken_run_is_never_due_by_its_wake_up(store: Store) -> None:
    """Ending a run, or acquiring it, takes its wake-up out of the index."""
    started(store, "a")
    park(store, "a", wake_at=5.0)
    started(store, "b")
    park(store, "b", wake_at=5.0)
    store.commit("a", Batch(run={"status": "finished"}), token=None)
    taken = store.acquire("b", leased("tok-2", 50.0), is_dead=lambda _: True, batch=Batch())
    assert taken.wake_at is None
    assert due(store, now=55.0) == []


def test_an_owner_silent_past_the_limit_is_dead(store: Store) -> None:
    """By default a lease whose heartbeat is older than now - dead_after is due, oldest first."""
    started(store, "a", token="ta", heartbeat=100.0)
    started(store, "b", token="tb", heartbeat=90.0)
    assert due(store, now=110.0) == [("b", "owner-dead")]
    assert due(store, now=110.5) == [("b", "owner-dead"), ("a", "owner-dead")]
    assert due(store, now=110.5, dead_after=25.0) == []
    beat = store.commit("b", Batch(run={"lease": leased("tb", 110.0)}), token="tb").run
    assert beat.lease is not None
    assert due(store, now=110.5) == [("a", "owner-dead")]


def test_is_dead_judges_every_leased_run(store: Store) -> None:
    """With ``is_dead`` the caller decides (e.g. by pid), whatever the heartbeat's age."""
    started(store, "a", token="ta", heartbeat=100.0)
    started(store, "b", token="tb", heartbeat=100.0)
    judged: list[str] = []

    def dead(owner: Lease) -> bool:
        judged.append(owner.token)
        return owner.token == "tb"

    assert due(store, now=100.0, is_dead=dead) == [("b", "owner-dead")]
    assert sorted(judged) == ["ta", "tb"]


def test_reasons_come_in_order_and_each_run_once(store: Store) -> None:
    """News first, then due wake-ups, then dead owners; a run with news and a wake-up once."""
    started(store, "dead", token="td", heartbeat=0.0)
    started(store, "woken")
    park(store, "woken", wake_at=1.0)
    started(store, "both")
    park(store, "both", wake_at=1.0)
    store.decide("both", decision("g"))
    assert due(store, now=50.0) == [("both", "news"), ("woken", "due"), ("dead", "owner-dead")]
    assert due(store, now=50.0, limit=2) == [("both", "news"), ("woken", "due")]


class _ReadCountingKV:
    """A `KV` wrapper counting the gets on table ``runs`` of its read transactions."""

    def __init__(self, inner: MemoryKV) -> None:
        self.inner = inner
        self.run_gets = 0

    @property
    def location(self) -> str | None:
        return None

    def read(self, fn: Callable[[Any], T]) -> T:
        outer = self

        class Txn:
            def __getattr__(self, name: str) -> Any:
                return getattr(txn, name)

            def get(self, table: str, key: bytes) -> bytes | None:
                outer.run_gets += table == "runs"
                return txn.get(table, key)

            def scan(self, table: str, *args: Any, **kwargs: Any) -> Any:
                assert table != "runs", "due_runs scanned the runs"
                return txn.scan(table, *args, **kwargs)

        def wrapped(inner_txn: Any) -> T:
            nonlocal txn
            txn = inner_txn
            return fn(Txn())

        txn: Any = None
        return self.inner.read(wrapped)

    def write(self, fn: Callable[[Any], T]) -> T:
        return self.inner.write(fn)

    def close(self) -> None:
        self.inner.close()


def test_due_runs_reads_only_the_runs_its_indexes_name() -> None:
    """Among 300 runs (finished, parked, running) only the two that are due are read."""
    kv = _ReadCountingKV(MemoryKV())
    store = KVStore(kv)
    for i in range(100):
        store.create_run(run_record(f"done-{i}", status="finished"), Batch())
        started(store, f"parked-{i}")
        park(store, f"parked-{i}", wake_at=1000.0 + i)
        started(store, f"live-{i}", token=f"t{i}", heartbeat=500.0)
    started(store, "woken")
    park(store, "woken", wake_at=5.0)
    store.decide("parked-7", decision("g"))
    kv.run_gets = 0
    assert due(store, now=505.0) == [("parked-7", "news"), ("woken", "due")]
    assert kv.run_gets == 2


# -- a model: what a full scan would say ----------------------------------------------------

OPS = st.lists(
    st.tuples(
        st.sampled_from(["park", "decide", "acquire", "beat", "finish", "deliver"]),
        st.integers(0, 2),
        st.one_of(st.none(), st.integers(0, 20).map(float)),
    ),
    max_size=30,
)


def _apply(store: Store, op: str, run_id: str, when: float | None) -> None:
    run = store.get_run(run_id)
    assert run is not None
    if run.status in TERMINAL_RUN_STATUSES:
        return
    if op == "park" and run.lease is not None:
        park(store, run_id, wake_at=when)
    elif op == "decide" and run.status == "waiting-approval":
        store.commit(run_id, Batch(approvals=[requested("g")]), token=None)
        store.decide(run_id, decision("g"))
    elif op == "deliver":
        store.commit(run_id, Batch(bump_inbox=True), token=None)
    elif op == "acquire":
        owner = leased(f"t-{run_id}-{run.epoch}", when or 0.0)
        store.acquire(run_id, owner, is_dead=lambda _: True, batch=Batch(run={"status": "running"}))
    elif op == "beat" and run.lease is not None:
        fresh = msgspec.structs.replace(run.lease, heartbeat=when or 0.0)
        store.commit(run_id, Batch(run={"lease": fresh}), token=run.lease.token)
    elif op == "finish":
        store.commit(run_id, Batch(run={"status": "finished"}, release_lease=True), token=None)


def _model(runs: list[RunRecord], news: set[str], now: float) -> set[tuple[str, str]]:
    found: dict[str, str] = {}
    for run in runs:
        if run.status in TERMINAL_RUN_STATUSES:
            continue
        if run.run_id in news and is_parked(run):
            found[run.run_id] = "news"
        elif run.lease is None and run.wake_at is not None and run.wake_at <= now:
            found[run.run_id] = "due"
        elif run.lease is not None and now - run.lease.heartbeat > 10.0:
            found[run.run_id] = "owner-dead"
    return set(found.items())


@pytest.mark.parametrize("kind", ["memory", "lmdb"])
@given(ops=OPS, now=st.integers(0, 25).map(float))
def test_due_runs_agrees_with_a_scan_of_every_run(kind: str, ops: Any, now: float) -> None:
    """After any sequence of parks, decisions, takeovers, heartbeats and endings, the indexed
    answer equals what a scan of every run would say."""
    with tempfile.TemporaryDirectory() as folder:
        store = memory_store() if kind == "memory" else open_store(os.path.join(folder, "s"))
        with store:
            check_against_model(store, ops, now)


@given(ops=OPS, now=st.integers(0, 25).map(float))
def test_due_runs_and_claims_on_postgresql_agree_with_a_scan(
    postgres_url: str, ops: Any, now: float
) -> None:
    """On PostgreSQL the partial indexes give the scan's answer, and a worker's claim takes
    exactly the runs `due_runs` names."""
    store = open_store(postgres_url)
    try:
        check_against_model(store, ops, now)
        due = {(d.run.run_id, d.reason) for d in store.due_runs(now, 100)}
        claimed = store.claim_due_runs(now, 100)  # type: ignore[attr-defined]
        assert {(d.run.run_id, d.reason) for d in claimed} == due
    finally:
        store.close()
        empty_store(postgres_url)


def check_against_model(store: Store, ops: Any, now: float) -> None:
    """Run ``ops`` on three fresh runs, then compare ``due_runs`` with `_model`."""
    ids = [f"h{i}" for i in range(3)]
    for run_id in ids:
        started(store, run_id)
    news: set[str] = set()
    for op, index, when in ops:
        run_id = ids[index]
        before = store.get_run(run_id)
        _apply(store, op, run_id, when)
        after = store.get_run(run_id)
        assert before is not None
        assert after is not None
        if after.inbox != before.inbox and is_parked(after):
            news.add(run_id)
        elif is_parked(before) and not is_parked(after):
            news.discard(run_id)
    got = {(d.run.run_id, d.reason) for d in store.due_runs(now, 100)}
    assert got == _model(store.runs(), news, now)
