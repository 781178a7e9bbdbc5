"""A run's input is written once: heartbeats and status changes rewrite only small records."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
import pytest

from smithers.store import Batch, KVStore, Store
from smithers.store.kv.protocol import KV, Txn
from tests.store.helpers import lease, run_record

T = TypeVar("T")
BIG = bytes(range(256)) * 8192  # 2 MiB


class _CountingTxn:
    """A transaction that adds up the bytes of every key and value put through it."""

    def __init__(self, txn: Txn, counter: list[int]) -> None:
        self._txn = txn
        self._counter = counter

    def put(self, table: str, key: bytes, value: bytes, **options: Any) -> bool:
        self._counter[0] += len(key) + len(value)
        return self._txn.put(table, key, value, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._txn, name)


class CountingKV:
    """A `KV` wrapper counting the bytes its write transactions put."""

    def __init__(self, inner: KV) -> None:
        self.inner = inner
        self.written = [0]

    @property
    def location(self) -> str | None:
        return self.inner.location

    def read(self, fn: Callable[[Any], T]) -> T:
        return self.inner.read(fn)

    def write(self, fn: Callable[[Any], T]) -> T:
        return self.inner.write(lambda txn: fn(_CountingTxn(txn, self.written)))

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def counted(kv_store: KVStore) -> tuple[Store, CountingKV]:
    """A KV store with a byte counter between it and its backend (PostgreSQL keeps the input
    in its own column, which an UPDATE of the run row never sets)."""
    kv = CountingKV(kv_store._kv)
    return KVStore(kv), kv


def test_heartbeats_do_not_rewrite_a_large_input(counted: tuple[Store, CountingKV]) -> None:
    """With a 2 MiB input, ten heartbeats put a few hundred bytes each, not the input again."""
    store, kv = counted
    store.create_run(run_record("r", input=BIG, lease=lease("tok")), Batch())
    assert len(BIG) <= kv.written[0] < len(BIG) + 1024
    kv.written[0] = 0
    for beat in range(10):
        run = store.get_run("r")
        assert run is not None
        assert run.lease is not None
        fresh = msgspec.structs.replace(run.lease, heartbeat=float(beat))
        assert store.commit("r", Batch(run={"lease": fresh}), token="tok").applied
    assert kv.written[0] < 10 * 512


def test_load_carries_the_input_and_get_run_leaves_it_out(store: Store) -> None:
    """The input comes back whole from `load`; the small record of `get_run` omits it."""
    created = store.create_run(run_record("r", input=BIG), Batch())
    store.commit("r", Batch(run={"status": "waiting-signal"}), token=None)
    snapshot = store.load("r")
    assert snapshot is not None
    assert snapshot.run.input == BIG
    assert created.input is None
    got = store.get_run("r")
    assert got is not None
    assert got.input is None
    assert got.status == "waiting-signal"
    assert store.runs() == [got]


def test_a_run_without_input_loads_without_input(store: Store) -> None:
    """A run created with no input loads with ``input`` None."""
    store.create_run(run_record("r"), Batch())
    snapshot = store.load("r")
    assert snapshot is not None
    assert snapshot.run.input is None
