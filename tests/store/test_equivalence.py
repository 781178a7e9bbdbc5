"""The memory store and the LMDB store agree: the same writes give the same answers."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from smithers.store import AttemptRecord, Batch, KVStore, memory_store, open_store
from smithers.store.records import GroupRecord
from tests.store.helpers import (
    STATUSES,
    T1,
    decision,
    dump,
    event,
    lease,
    node,
    requested,
    run_record,
    signal,
)

RUN_IDS = ("r", "r1", "r10", "r2")  # the first three exist from the start
NODE_IDS = ("a", "ab", "a.b")
ITERATIONS: tuple[tuple[int, ...], ...] = ((), (1,), (1, 0), (2,))
FRAMES = ("h1", "h2")

run_ids = st.sampled_from(RUN_IDS)
cells = st.tuples(st.sampled_from(NODE_IDS), st.sampled_from(ITERATIONS))
statuses = st.sampled_from(STATUSES)
live_statuses = st.sampled_from(["running", "waiting-approval", "waiting-signal"])
tokens = st.sampled_from([None, "tok-a", "tok-b"])


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    """A batch mixing every kind of record, with or without run updates and conditions."""
    status = draw(st.none() | live_statuses | statuses)
    return Batch(
        run={} if status is None else {"status": status, "updated_at": T1},
        nodes=[
            node(n, it, state=state)
            for (n, it), state in draw(
                st.lists(st.tuples(cells, st.sampled_from(["pending", "finished"])), max_size=3)
            )
        ],
        groups=[
            GroupRecord(kind="loop", key=n, iteration=it, loop_iteration=k)
            for (n, it), k in draw(st.lists(st.tuples(cells, st.integers(0, 2)), max_size=2))
        ],
        attempts=[
            AttemptRecord(node_id=n, iteration=it, number=k, started_at=T1)
            for (n, it), k in draw(st.lists(st.tuples(cells, st.integers(1, 3)), max_size=2))
        ],
        outputs=[
            (n, it, raw)
            for (n, it), raw in draw(st.lists(st.tuples(cells, st.binary(max_size=6)), max_size=2))
        ],
        approvals=[
            requested(n, it, status=status)
            for (n, it), status in draw(
                st.lists(
                    st.tuples(
                        cells, st.sampled_from(["requested", "requested", "withdrawn", "approved"])
                    ),
                    max_size=2,
                )
            )
        ],
        frames=draw(
            st.lists(st.tuples(st.sampled_from(FRAMES), st.binary(max_size=4)), max_size=2)
        ),
        events=[
            event(kind, n, it)
            for kind, (n, it) in draw(
                st.lists(
                    st.tuples(st.sampled_from(["node.started", "run.waiting"]), cells), max_size=3
                )
            )
        ],
        expect_inbox=draw(st.one_of(st.none(), st.none(), st.integers(0, 2))),
        release_lease=draw(st.booleans()),
        bump_inbox=draw(st.booleans()),
    )


creates = st.tuples(
    st.just("create"),
    run_ids,
    live_statuses | statuses,
    st.sampled_from([None, "tok-a"]),
    batches(),
)
operations = st.one_of(
    creates,
    st.tuples(st.just("commit"), run_ids, batches(), tokens),
    st.tuples(st.just("decide"), run_ids, cells, st.booleans()),
    st.tuples(st.just("deliver"), run_ids, cells),
    st.tuples(
        st.just("acquire"), run_ids, st.sampled_from(["tok-a", "tok-b"]), st.booleans(), batches()
    ),
)


def apply(store: KVStore, op: tuple[Any, ...]) -> tuple[str, Any]:
    """Run one operation; return its result, or its error's type and message."""
    try:
        if op[0] == "create":
            _, run_id, status, token, batch = op
            holder = None if token is None else lease(token)
            return "ok", store.create_run(run_record(run_id, status=status, lease=holder), batch)
        if op[0] == "commit":
            _, run_id, batch, token = op
            return "ok", store.commit(run_id, batch, token=token)
        if op[0] == "decide":
            _, run_id, (n, it), approved = op
            return "ok", store.decide(run_id, decision(n, it, approved=approved))
        if op[0] == "deliver":
            _, run_id, (n, it) = op
            return "ok", store.deliver(run_id, signal(n, it))
        _, run_id, token, dead, batch = op
        return "ok", store.acquire(run_id, lease(token), is_dead=lambda _: dead, batch=batch)
    except Exception as exc:  # the other store must fail the same way
        message = re.sub(r"in the store at \S+;", "in the store at <store>;", str(exc))
        return type(exc).__name__, message


def check_invariants(store: KVStore) -> None:
    """The log is gap-free and every index agrees with the records it indexes."""
    events = store.events()
    assert [e.seq for e in events] == list(range(1, store.last_seq() + 1))
    runs = store.runs()
    assert [r.key for r in runs] == sorted(r.key for r in runs)
    for status in STATUSES:
        assert store.runs(status) == [r for r in runs if r.status == status]
    assert store.requested_gates() == [
        (run, approval)
        for run in runs
        for approval in store.approvals(run.run_id)
        if approval.status == "requested"
    ]
    for run in runs:
        assert store.events(run_id=run.run_id) == [e for e in events if e.run_id == run.run_id]


@st.composite
def scripts(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    """Create the first three runs, then any operations (on those runs or on ``r2``)."""
    setup = []
    for run_id in RUN_IDS[:3]:
        _, _, status, token, batch = draw(creates)
        setup.append(("create", run_id, status, token, batch))
    return setup + draw(st.lists(operations, max_size=25))


@given(scripts())
def test_random_writes_give_the_same_reads_on_both_stores(
    tmp_path: Path, ops: list[tuple[Any, ...]]
) -> None:
    """Any sequence of creates, commits, decisions, deliveries and acquires gives equal results,
    equal load()/events()/runs() and equal indexes on the memory store and the LMDB store."""
    memory = memory_store()
    lmdb = open_store(tempfile.mkdtemp(dir=tmp_path))
    try:
        for i, op in enumerate(ops):
            assert apply(memory, op) == apply(lmdb, op), (i, op)
        assert dump(memory, RUN_IDS) == dump(lmdb, RUN_IDS)
        for run_id in RUN_IDS:
            for after in (0, 2, 5):
                assert memory.events(run_id=run_id, after=after, limit=3) == lmdb.events(
                    run_id=run_id, after=after, limit=3
                )
        for after in (0, 3, 7):
            assert memory.events(after=after, limit=4) == lmdb.events(after=after, limit=4)
        assert [memory.frame(h) for h in FRAMES] == [lmdb.frame(h) for h in FRAMES]
        check_invariants(lmdb)
    finally:
        memory.close()
        lmdb.close()
