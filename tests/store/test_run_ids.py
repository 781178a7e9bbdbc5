"""Run ids no backend can hold (empty, longer than a key) never reach it: not found, or refused."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from smithers.errors import InputError, RunNotFoundError
from smithers.store import Batch, Store
from smithers.store.records import SignalRecord
from tests.store.helpers import T1, decision, event, lease, run_record

IMPOSSIBLE = ["", "r" * 512, "é" * 300]


@pytest.mark.parametrize("run_id", IMPOSSIBLE, ids=["empty", "512-bytes", "600-utf8-bytes"])
def test_reads_of_an_impossible_run_id_find_nothing(store: Store, run_id: str) -> None:
    """Every read answers "no such run" for an id no key can hold, instead of a backend error."""
    store.create_run(run_record("r"), Batch(events=[event("run.started")]))
    assert store.get_run(run_id) is None
    assert store.load(run_id) is None
    assert store.output(run_id, "t", ()) is None
    assert store.attempts(run_id) == []
    assert store.approvals(run_id) == []
    assert store.signals(run_id) == []
    assert store.events(run_id=run_id) == []


def _commit(store: Store, run_id: str) -> Any:
    return store.commit(run_id, Batch(events=[event("x")]), token=None)


def _decide(store: Store, run_id: str) -> Any:
    return store.decide(run_id, decision("g"))


def _deliver(store: Store, run_id: str) -> Any:
    return store.deliver(run_id, SignalRecord(node_id="s", data=b"\xc0", received_at=T1))


def _acquire(store: Store, run_id: str) -> Any:
    return store.acquire(run_id, lease(), is_dead=lambda _: True, batch=Batch())


@pytest.mark.parametrize("write", [_commit, _decide, _deliver, _acquire])
@pytest.mark.parametrize("run_id", IMPOSSIBLE, ids=["empty", "512-bytes", "600-utf8-bytes"])
def test_writes_to_an_impossible_run_id_raise_run_not_found(
    store: Store, run_id: str, write: Callable[[Store, str], Any]
) -> None:
    """Writes to an id no key can hold raise the usual RunNotFoundError and write nothing."""
    with pytest.raises(RunNotFoundError, match=re.escape(f"No run `{run_id}` in the store at")):
        write(store, run_id)
    assert store.last_seq() == 0


def test_a_node_id_longer_than_a_key_has_no_output(store: Store) -> None:
    """Asking for the output of a node id too long for a key answers None."""
    store.create_run(run_record("r"), Batch())
    assert store.output("r", "n" * 600, ()) is None


@pytest.mark.parametrize("run_id", ["", "r" * 512], ids=["empty", "512-bytes"])
def test_creating_a_run_with_an_impossible_id_is_refused(store: Store, run_id: str) -> None:
    """A run id of 0 or more than 511 bytes is refused with InputError, and nothing is written."""
    with pytest.raises(InputError, match=r"is invalid; a run id takes 1 to 511 bytes\."):
        store.create_run(run_record(run_id), Batch(events=[event("run.started")]))
    assert store.runs() == []
    assert store.last_seq() == 0
