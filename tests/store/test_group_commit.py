"""Group commit in the store: several runs' commits in one transaction, each one fenced and
undone on its own (`KVStore.commit_many`), on both backends."""

from __future__ import annotations

from typing import cast

import pytest

from smithers.errors import InputError, LeaseLostError
from smithers.store import Batch, CommitResult, KVStore, RunRecord, Store
from tests.store.helpers import event, lease, node, run_record


def _kv(store: Store) -> KVStore:
    return cast(KVStore, store)


def _owned(store: Store, run_id: str, token: str) -> None:
    store.create_run(run_record(run_id, lease=lease(token)), Batch())


def test_commit_many_applies_every_run_in_one_call_with_gap_free_events(store: Store) -> None:
    """Each item commits as `commit` would; the events of all items are numbered in order."""
    _owned(store, "a", "tok-a")
    _owned(store, "b", "tok-b")
    results = _kv(store).commit_many(
        [
            (
                "a",
                Batch(nodes=[node("x", state="finished")], events=[event("node.finished")]),
                "tok-a",
            ),
            ("b", Batch(outputs=[("y", (), b"\x01")], events=[event("node.finished")]), "tok-b"),
        ]
    )
    assert [type(r) for r in results] == [CommitResult, CommitResult]
    first, second = cast(list[CommitResult], results)
    assert (first.applied, first.seqs, second.applied, second.seqs) == (True, (1,), True, (2,))
    snapshot = store.load("a")
    assert snapshot is not None
    assert snapshot.nodes[("x", ())].state == "finished"
    assert store.output("b", "y", ()) == b"\x01"
    assert [(e.seq, e.run_id) for e in store.events()] == [(1, "a"), (2, "b")]


def test_a_lost_lease_inside_a_group_fails_that_run_only(store: Store) -> None:
    """Fencing per run: the item whose token is stale gets LeaseLostError, the others commit."""
    _owned(store, "a", "tok-a")
    _owned(store, "b", "tok-b")
    results = _kv(store).commit_many(
        [
            ("a", Batch(nodes=[node("x", state="finished")]), "stale"),
            ("b", Batch(nodes=[node("y", state="finished")]), "tok-b"),
        ]
    )
    assert isinstance(results[0], LeaseLostError)
    assert isinstance(results[1], CommitResult)
    assert results[1].applied
    a, b = store.load("a"), store.load("b")
    assert a is not None
    assert b is not None
    assert a.nodes == {}
    assert b.nodes[("y", ())].state == "finished"


def test_an_item_failing_mid_write_is_undone_alone(store: Store) -> None:
    """A batch that fails after some writes leaves none of them; the run before and after it
    in the same group still commit, and the event numbers stay gap-free."""
    _owned(store, "a", "tok-a")
    _owned(store, "b", "tok-b")
    _owned(store, "c", "tok-c")
    bad = Batch(
        nodes=[node("x", state="finished")],
        outputs=[("x", (), b"\x02")],
        events=[event("node.finished", data={"oops": object()})],  # does not encode
    )
    results = _kv(store).commit_many(
        [
            ("a", Batch(events=[event("node.started")]), "tok-a"),
            ("b", bad, "tok-b"),
            ("c", Batch(events=[event("node.started")]), "tok-c"),
        ]
    )
    assert isinstance(results[0], CommitResult)
    assert isinstance(results[2], CommitResult)
    assert isinstance(results[1], TypeError)
    b = store.load("b")
    assert b is not None
    assert (b.nodes, b.outputs) == ({}, {})
    assert [(e.seq, e.run_id) for e in store.events()] == [(1, "a"), (2, "c")]


def test_commit_many_creates_runs_and_a_taken_id_fails_alone(store: Store) -> None:
    """An item holding a run record creates that run; a taken id fails only its own item."""
    _owned(store, "old", "tok-o")
    results = _kv(store).commit_many(
        [
            (run_record("new"), Batch(events=[event("run.started")]), None),
            (run_record("old"), Batch(events=[event("run.started")]), None),
            ("old", Batch(events=[event("node.started")]), "tok-o"),
        ]
    )
    assert isinstance(results[0], RunRecord)
    assert results[0].key == 2
    assert isinstance(results[1], InputError)
    assert isinstance(results[2], CommitResult)
    assert [(e.run_id, e.type) for e in store.events()] == [
        ("new", "run.started"),
        ("old", "node.started"),
    ]


def test_a_park_in_a_group_that_finds_news_is_not_applied(store: Store) -> None:
    """``expect_inbox`` is checked per item inside the group, as in `commit`."""
    _owned(store, "a", "tok-a")
    _owned(store, "b", "tok-b")
    park = Batch(run={"status": "waiting-approval"}, release_lease=True, expect_inbox=7)
    other = Batch(events=[event("node.started")])
    results = _kv(store).commit_many([("a", park, "tok-a"), ("b", other, "tok-b")])
    assert isinstance(results[0], CommitResult)
    assert not results[0].applied
    assert isinstance(results[1], CommitResult)
    assert results[1].applied
    a = store.get_run("a")
    assert a is not None
    assert (a.status, a.lease is not None) == ("running", True)


@pytest.mark.parametrize("count", [0, 1])
def test_commit_many_with_few_items(store: Store, count: int) -> None:
    """An empty group writes nothing; a group of one behaves as `commit`."""
    _owned(store, "a", "tok-a")
    items = [("a", Batch(events=[event("node.started")]), "tok-a")][:count]
    results = _kv(store).commit_many(items)  # type: ignore[arg-type]
    assert len(results) == count
    assert len(store.events()) == count
