"""The in-memory backend: sorted dicts under one lock. For tests and previews; not durable."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from smithers.store.kv.kvstore import KVStore
from smithers.store.kv.protocol import TABLES

__all__ = ["MemoryKV", "memory_store"]

T = TypeVar("T")


class _Table:
    __slots__ = ("keys", "values")

    def __init__(self) -> None:
        self.values: dict[bytes, bytes] = {}
        self.keys: list[bytes] = []  # sorted


class _MemoryTxn:
    def __init__(self, tables: dict[str, _Table], writable: bool) -> None:
        self._tables = tables
        self._writable = writable
        self._undo: list[tuple[str, bytes, bytes | None]] = []

    def get(self, table: str, key: bytes) -> bytes | None:
        return self._tables[table].values.get(key)

    def put(
        self,
        table: str,
        key: bytes,
        value: bytes,
        *,
        overwrite: bool = True,
        append: bool = False,
    ) -> bool:
        if not self._writable:
            raise RuntimeError("write in a read transaction")
        t = self._tables[table]
        old = t.values.get(key)
        if old is not None and not overwrite:
            return False
        if append and t.keys and key <= t.keys[-1]:
            raise ValueError("append with a key that is not the greatest")
        self._undo.append((table, key, old))
        if old is None:
            bisect.insort(t.keys, key)
        t.values[key] = bytes(value)
        return True

    def delete(self, table: str, key: bytes) -> bool:
        if not self._writable:
            raise RuntimeError("write in a read transaction")
        t = self._tables[table]
        old = t.values.pop(key, None)
        if old is None:
            return False
        self._undo.append((table, key, old))
        del t.keys[bisect.bisect_left(t.keys, key)]
        return True

    def scan(
        self, table: str, prefix: bytes = b"", *, start: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        t = self._tables[table]
        begin = max(prefix, start) if start is not None else prefix
        i = bisect.bisect_left(t.keys, begin)
        keys = t.keys
        while i < len(keys) and keys[i].startswith(prefix):
            key = keys[i]
            yield key, t.values[key]
            i += 1

    def last(self, table: str) -> tuple[bytes, bytes] | None:
        t = self._tables[table]
        return (t.keys[-1], t.values[t.keys[-1]]) if t.keys else None

    def rollback(self) -> None:
        for table, key, old in reversed(self._undo):
            t = self._tables[table]
            if old is None:
                t.values.pop(key, None)
                del t.keys[bisect.bisect_left(t.keys, key)]
            else:
                if key not in t.values:
                    bisect.insort(t.keys, key)
                t.values[key] = old


class MemoryKV:
    """Sorted in-memory tables with all-or-nothing write transactions."""

    def __init__(self) -> None:
        self._tables = {name: _Table() for name in TABLES}
        self._lock = threading.RLock()

    @property
    def location(self) -> str | None:
        """None: nothing is kept anywhere."""
        return None

    def read(self, fn: Callable[[_MemoryTxn], T]) -> T:
        with self._lock:
            return fn(_MemoryTxn(self._tables, writable=False))

    def write(self, fn: Callable[[_MemoryTxn], T]) -> T:
        with self._lock:
            txn = _MemoryTxn(self._tables, writable=True)
            try:
                return fn(txn)
            except BaseException:
                txn.rollback()
                raise

    def write_each(self, fns: Sequence[Callable[[_MemoryTxn], T]]) -> list[T | Exception]:
        with self._lock:
            results: list[T | Exception] = []
            done: list[_MemoryTxn] = []
            for fn in fns:
                txn = _MemoryTxn(self._tables, writable=True)
                try:
                    results.append(fn(txn))
                except Exception as exc:
                    txn.rollback()
                    results.append(exc)
                except BaseException:
                    for earlier in reversed([*done, txn]):  # all or nothing, like `write`
                        earlier.rollback()
                    raise
                done.append(txn)
            return results

    def close(self) -> None:
        return None


def memory_store() -> KVStore:
    """A fresh, empty in-memory store."""
    return KVStore(MemoryKV())
