"""What only the PostgreSQL store must show under concurrency: event numbers visible in
commit order across connections, fencing and compare-and-set, workers' claims, and
LISTEN/NOTIFY wake-ups."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import psycopg
import pytest

from smithers.errors import AlreadyDecidedError, LeaseLostError, StoreError
from smithers.store import Batch, open_store
from smithers.store.postgres import PostgresStore
from tests.store.helpers import decision, event, lease, node, requested, run_record
from tests.store.postgres_helpers import (
    DEADLINE,
    hold_writes,
    in_thread,
    parked_with_news,
    until,
    waiting_on_a_lock,
)

# -- the event log's promise -----------------------------------------------------------------


def test_a_plain_bigserial_lets_a_follower_skip_an_event(postgres_url: str) -> None:
    """The hazard the store avoids: with a bigserial, number 2 commits before 1, and a
    follower that saw 2 and keeps it as its cursor never sees 1."""
    with (
        psycopg.connect(postgres_url, autocommit=True) as setup,
        psycopg.connect(postgres_url) as first,
        psycopg.connect(postgres_url) as second,
    ):
        setup.execute("DROP TABLE IF EXISTS naive_log")
        setup.execute("CREATE TABLE naive_log (seq bigserial PRIMARY KEY, what text)")
        try:
            first.execute("INSERT INTO naive_log (what) VALUES ('first')")  # takes 1
            second.execute("INSERT INTO naive_log (what) VALUES ('second')")  # takes 2
            second.commit()
            seen = setup.execute("SELECT seq FROM naive_log WHERE seq > 0 ORDER BY seq").fetchall()
            assert seen == [(2,)]
            cursor = 2
            first.commit()
            later = setup.execute(
                "SELECT seq FROM naive_log WHERE seq > %s ORDER BY seq", (cursor,)
            ).fetchall()
            assert later == []  # event 1 is committed, and the follower will never read it
        finally:
            setup.execute("DROP TABLE naive_log")


def test_a_later_writer_waits_so_numbers_become_visible_in_commit_order(
    pg: PostgresStore, other: PostgresStore, postgres_url: str
) -> None:
    """Writer A takes event 2 and stalls before COMMIT; writer B, on another connection,
    waits at the counter instead of committing 3 first; a follower never sees a hole."""
    pg.create_run(run_record("a"), Batch(events=[event("run.started")]))
    other.create_run(run_record("b"), Batch())
    release = threading.Event()
    holding = threading.Event()

    def stall() -> None:
        holding.set()
        assert release.wait(DEADLINE)

    hold_writes(pg, stall)
    a, a_box = in_thread(lambda: pg.commit("a", Batch(events=[event("node.started")]), token=None))
    assert holding.wait(DEADLINE)
    b, b_box = in_thread(
        lambda: other.commit("b", Batch(events=[event("run.started")]), token=None)
    )
    until(waiting_on_a_lock(postgres_url), "writer B to wait for the event counter")
    assert [e.seq for e in other.events(after=1)] == []  # nothing past the follower's cursor
    assert b.is_alive()
    release.set()
    a.join(DEADLINE)
    b.join(DEADLINE)
    assert (a_box["value"].seqs, b_box["value"].seqs) == ((2,), (3,))
    assert [(e.seq, e.run_id) for e in other.events(after=1)] == [(2, "a"), (3, "b")]


def test_a_follower_with_a_cursor_sees_every_event_under_concurrent_writers(
    pg: PostgresStore, postgres_url: str
) -> None:
    """Four writers on their own connections commit 200 events while a follower pages with
    a cursor: it sees 1..200 once each, in order, and each run's events in its order."""
    writers = [open_store(postgres_url) for _ in range(4)]
    try:
        for i, writer in enumerate(writers):
            writer.create_run(run_record(f"w{i}"), Batch())
        done = threading.Event()
        seen: list[tuple[int, str, str]] = []

        def follow() -> None:
            cursor = 0
            while True:
                finished = done.is_set()
                for e in pg.events(after=cursor, limit=50):
                    seen.append((e.seq, e.run_id, e.type))
                    cursor = e.seq
                if finished and cursor >= 200:
                    return

        def write(i: int) -> None:
            for k in range(25):
                evs = [event(f"e{k}.0"), event(f"e{k}.1")]
                writers[i].commit(f"w{i}", Batch(events=evs), token=None)

        follower, follower_box = in_thread(follow)
        threads = [in_thread(lambda i=i: write(i)) for i in range(4)]
        for thread, box in threads:
            thread.join(DEADLINE)
            assert "error" not in box, box.get("error")
        done.set()
        follower.join(DEADLINE)
        assert "error" not in follower_box, follower_box.get("error")
    finally:
        for writer in writers:
            writer.close()
    assert [s for s, _, _ in seen] == list(range(1, 201))
    for i in range(4):
        mine = [t for _, r, t in seen if r == f"w{i}"]
        assert mine == [f"e{k}.{j}" for k in range(25) for j in (0, 1)]


# -- ownership and compare-and-set -----------------------------------------------------------


def test_an_owner_stalled_past_its_lease_commits_nothing_after_a_takeover(
    pg: PostgresStore, other: PostgresStore
) -> None:
    """Owner A stalls; B takes the run over (A counts as dead); A's next write is refused
    and nothing of it lands, while B's writes go on."""
    pg.create_run(run_record("r", lease=lease("tok-a", epoch=1), epoch=1), Batch())
    taken = other.acquire("r", lease("tok-b", pid=7), is_dead=lambda _: True, batch=Batch())
    assert (taken.epoch, taken.lease and taken.lease.token) == (2, "tok-b")
    with pytest.raises(LeaseLostError, match=re.escape("(now pid 7 on box-a)")):
        pg.commit("r", Batch(nodes=[node("late")], events=[event("node.finished")]), token="tok-a")
    assert other.commit("r", Batch(nodes=[node("t")]), token="tok-b").applied
    loaded = other.load("r")
    assert loaded is not None
    assert list(loaded.nodes) == [("t", ())]
    assert other.last_seq() == 0


def test_a_takeover_waits_for_the_owners_commit_in_flight(
    pg: PostgresStore, other: PostgresStore, postgres_url: str
) -> None:
    """An acquire racing a commit of the current owner waits on the run's row: the owner's
    commit lands whole, then the lease moves (fencing never splits a transaction)."""
    pg.create_run(run_record("r", lease=lease("tok-a", epoch=1), epoch=1), Batch())
    release = threading.Event()
    holding = threading.Event()

    def stall() -> None:
        holding.set()  # the owner's transaction holds the run's row from here to COMMIT
        assert release.wait(DEADLINE)

    hold_writes(pg, stall)
    owner, owner_box = in_thread(
        lambda: pg.commit("r", Batch(nodes=[node("t")], events=[event("x")]), token="tok-a")
    )
    assert holding.wait(DEADLINE)
    taker, taker_box = in_thread(
        lambda: other.acquire("r", lease("tok-b"), is_dead=lambda _: True, batch=Batch())
    )
    until(waiting_on_a_lock(postgres_url), "the takeover to wait for the run's row")
    release.set()
    owner.join(DEADLINE)
    taker.join(DEADLINE)
    assert owner_box["value"].seqs == (1,)
    assert taker_box["value"].epoch == 2
    loaded = other.load("r")
    assert loaded is not None
    assert list(loaded.nodes) == [("t", ())]


def test_racing_deciders_on_many_connections_decide_each_gate_once(
    pg: PostgresStore, postgres_url: str
) -> None:
    """Four deciders race over 20 gates, each on its own connection: one winner per gate."""
    gates = [f"g{i}" for i in range(20)]
    pg.create_run(run_record("race"), Batch(approvals=[requested(g) for g in gates]))
    deciders = [open_store(postgres_url) for _ in range(4)]
    barrier = threading.Barrier(4)
    outcomes: list[tuple[str, str]] = []
    lock = threading.Lock()

    def decide(i: int) -> None:
        for gate in gates:
            barrier.wait(DEADLINE)
            try:
                deciders[i].decide("race", decision(gate, by=f"d{i}"))
                result = "won"
            except AlreadyDecidedError:
                result = "lost"
            with lock:
                outcomes.append((gate, result))

    try:
        threads = [in_thread(lambda i=i: decide(i)) for i in range(4)]
        for thread, box in threads:
            thread.join(DEADLINE)
            assert "error" not in box, box.get("error")
    finally:
        for decider in deciders:
            decider.close()
    assert sorted(g for g, r in outcomes if r == "won") == sorted(gates)
    assert len(outcomes) == 80
    run = pg.get_run("race")
    assert run is not None
    assert run.inbox == 20
    assert [e.type for e in pg.events()] == ["approval.decided"] * 20


# -- workers claiming ------------------------------------------------------------------------


def test_workers_claim_different_runs_until_the_claim_lapses(
    pg: PostgresStore, other: PostgresStore
) -> None:
    """Two workers claiming at once split the due runs; a claim hides a run for hold_for."""
    for i in range(6):
        parked_with_news(pg, f"r{i}")
    first = pg.claim_due_runs(100.0, 4, hold_for=30.0)
    second = other.claim_due_runs(100.0, 4, hold_for=30.0)
    assert [d.run.run_id for d in first] == ["r0", "r1", "r2", "r3"]
    assert [(d.run.run_id, d.reason) for d in second] == [("r4", "news"), ("r5", "news")]
    assert other.claim_due_runs(129.0, 10) == []
    assert len(pg.due_runs(100.0, 10)) == 6  # claims hide nothing from the plain question
    assert [d.run.run_id for d in other.claim_due_runs(130.0, 10)] == [f"r{i}" for i in range(6)]


def test_a_claim_skips_a_run_locked_by_a_commit_in_flight(
    pg: PostgresStore, other: PostgresStore
) -> None:
    """A run whose row a transaction holds is skipped (SKIP LOCKED), not waited for."""
    parked_with_news(pg, "busy")
    parked_with_news(pg, "free")
    release = threading.Event()
    holding = threading.Event()

    def stall() -> None:
        holding.set()
        assert release.wait(DEADLINE)

    hold_writes(pg, stall)
    writer, box = in_thread(lambda: pg.commit("busy", Batch(nodes=[node("t")]), token=None))
    assert holding.wait(DEADLINE)
    try:
        claimed = other.claim_due_runs(0.0, 10)
    finally:
        release.set()
        writer.join(DEADLINE)
    assert [(d.run.run_id, d.reason) for d in claimed] == [("free", "news")]
    assert box["value"].applied


def test_a_claim_takes_dead_owners_by_silence_or_by_judgement(pg: PostgresStore) -> None:
    """Leased runs are claimed when their heartbeat is too old, or when is_dead says so."""
    pg.create_run(run_record("silent", lease=lease("ta")), Batch())
    pg.create_run(run_record("judged", lease=lease("tb")), Batch())
    assert [d.run.run_id for d in pg.claim_due_runs(5.0, 10)] == []
    assert [d.run.run_id for d in pg.claim_due_runs(20.0, 10)] == ["silent", "judged"]
    assert [
        (d.run.run_id, d.reason)
        for d in pg.claim_due_runs(60.0, 10, is_dead=lambda owner: owner.token == "tb")
    ] == [("judged", "owner-dead")]


# -- LISTEN/NOTIFY -----------------------------------------------------------------------------


def test_a_decision_on_a_parked_run_wakes_a_waiting_worker(
    pg: PostgresStore, other: PostgresStore
) -> None:
    """A worker waiting on the hint wakes when another connection decides a parked run."""
    pg.create_run(run_record("r", lease=lease()), Batch(approvals=[requested("g")]))
    pg.commit("r", Batch(run={"status": "waiting-approval"}, release_lease=True), token=None)
    assert other.wait_for_news(0.0) is False  # starts listening; nothing new yet
    pg.decide("r", decision("g"))
    assert other.wait_for_news(DEADLINE) is True
    assert [(d.run.run_id, d.reason) for d in other.due_runs(0.0, 10)] == [("r", "news")]


def test_without_a_server_the_wait_falls_back_to_polling() -> None:
    """When the listener cannot connect, waiting lasts its timeout and says nothing came."""
    from smithers.store.postgres.events import Listener

    def refuse() -> Any:
        raise StoreError("no server")

    listener = Listener(refuse)
    assert listener.wait(0.01) is False
    listener.close()


def test_closing_the_store_ends_a_long_wait_promptly(pg: PostgresStore) -> None:
    """A worker blocked in a 30 s wait returns soon after the store is closed."""
    assert pg.wait_for_news(0.0) is False
    waiter, box = in_thread(lambda: pg.wait_for_news(DEADLINE))
    until(lambda: pg._listener._lock.locked(), "the waiter to be listening")
    started = time.monotonic()
    pg._listener.close()
    waiter.join(DEADLINE)
    assert box["value"] is False
    assert time.monotonic() - started < DEADLINE / 2
