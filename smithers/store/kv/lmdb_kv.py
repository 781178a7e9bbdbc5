"""The LMDB backend: the only module that imports ``lmdb``.

Opened the same way in every process (STORAGE.md): durable commits (``sync`` and
``metasync``), never ``writemap``, readers never block the writer, and the map grows on
demand so no ``MapFullError`` reaches a user.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import lmdb
import msgspec

from smithers.errors import StoreError
from smithers.store.kv.keys import MAX_KEY
from smithers.store.kv.kvstore import KVStore
from smithers.store.kv.protocol import TABLES

__all__ = ["OPEN_OPTIONS", "LmdbKV", "check_file_size", "open_lmdb_store"]

T = TypeVar("T")
_FORMAT_KEY = b"format"
_FORMAT = b"smithers/1"
_MAP_FLOOR = 64 << 30  # address space, not disk: the file grows only with data
# How every process opens the environment (STORAGE.md): the first opener fixes max_readers;
# never writemap; durable commits; map_size=0 adopts the stored size, then _MAP_FLOOR applies.
OPEN_OPTIONS: dict[str, Any] = {
    "subdir": True,
    "sync": True,
    "metasync": True,
    "writemap": False,
    "map_async": False,
    "lock": True,
    "max_dbs": 32,
    "max_readers": 512,
    "max_spare_txns": 0,
    "map_size": 0,
}
# LMDB's two meta pages open the file: page header (16 bytes), then magic, version, ..., the
# page size (in the free DB's pad field), the last used page number and the transaction id.
_META = struct.Struct("<II8x8xI44x48xQQ")
_META_MAGIC = 0xBEEFC0DE
# Errors that mean the file's content is damaged (not the disk or the permissions). A bad
# page can poison a transaction silently, so the next call reports MDB_BAD_TXN instead.
_DAMAGE = (
    lmdb.CorruptedError,
    lmdb.PageNotFoundError,
    lmdb.InvalidError,
    lmdb.PanicError,
    lmdb.BadTxnError,
)
_ENVS: dict[tuple[str, int], tuple[Any, dict[str, Any], list[int], bool]] = {}
_ENVS_LOCK = threading.Lock()


def _damaged(path: str, cause: str) -> StoreError:
    return StoreError(
        f"The store at {path} is damaged ({cause}); restore it from a backup, or move it "
        "aside to start a new store."
    )


def _fault(path: str, exc: Exception, *, writing: bool) -> StoreError:
    """The one-sentence `StoreError` for an error met while using the store at ``path``."""
    if isinstance(exc, _DAMAGE):
        return _damaged(path, str(exc))
    if isinstance(exc, msgspec.DecodeError):
        return _damaged(path, f"a record does not decode: {exc}")
    if writing:
        return StoreError(
            f"The store at {path} could not commit ({exc}), so nothing of this step was "
            "written; check the disk (free space, errors), then resume the run."
        )
    return StoreError(
        f"The store at {path} could not be read ({exc}); check the disk, then try again."
    )


def check_file_size(path: str) -> None:
    """Refuse a ``data.mdb`` shorter than its newest meta page says (reading it would SIGBUS).

    Raises:
        StoreError: When the file is truncated.
    """
    data = os.path.join(path, "data.mdb")
    try:
        with open(data, "rb") as file:
            head = file.read(_META.size + 16)
            if len(head) < _META.size + 16:
                size = os.fstat(file.fileno()).st_size
                if size:
                    raise _damaged(path, f"data.mdb is only {size} bytes")
                return
            pages = [_META.unpack_from(head, 16)]
            psize = pages[0][2]
            if pages[0][0] != _META_MAGIC or psize < 512 or psize & (psize - 1):
                return  # not LMDB's meta page: lmdb.open says so precisely
            file.seek(psize)
            second = file.read(_META.size + 16)
            if len(second) == _META.size + 16:
                pages.append(_META.unpack_from(second, 16))
            size = os.fstat(file.fileno()).st_size
    except FileNotFoundError:
        return
    valid = [m for m in pages if m[0] == _META_MAGIC]
    last_page = max(valid, key=lambda m: m[4])[3]
    needed = (last_page + 1) * psize
    if size < needed:
        raise _damaged(path, f"data.mdb is {size} bytes but its last page ends at byte {needed}")


class _LmdbTxn:
    __slots__ = ("_dbs", "_txn")

    def __init__(self, txn: Any, dbs: dict[str, Any]) -> None:
        self._txn = txn
        self._dbs = dbs

    def get(self, table: str, key: bytes) -> bytes | None:
        if not key or len(key) > MAX_KEY:
            return None  # LMDB could never have stored it (and would raise BadValsizeError)
        db = self._dbs[table]
        if db is None:  # a later table missing from an older store opened read-only
            return None
        value = self._txn.get(key, db=db)
        return None if value is None else bytes(value)

    def put(
        self,
        table: str,
        key: bytes,
        value: bytes,
        *,
        overwrite: bool = True,
        append: bool = False,
    ) -> bool:
        return bool(
            self._txn.put(key, value, db=self._dbs[table], overwrite=overwrite, append=append)
        )

    def delete(self, table: str, key: bytes) -> bool:
        return bool(self._txn.delete(key, db=self._dbs[table]))

    def scan(
        self, table: str, prefix: bytes = b"", *, start: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        if self._dbs[table] is None:
            return
        cursor = self._txn.cursor(db=self._dbs[table])
        begin = max(prefix, start) if start is not None else prefix
        if not cursor.set_range(begin):
            return
        for key, value in cursor:
            if not key.startswith(prefix):
                return
            yield bytes(key), bytes(value)

    def last(self, table: str) -> tuple[bytes, bytes] | None:
        cursor = self._txn.cursor(db=self._dbs[table])
        if not cursor.last():
            return None
        return bytes(cursor.key()), bytes(cursor.value())


def _open_env(path: str, readonly: bool) -> tuple[Any, dict[str, Any]]:
    """One environment per path per process (a forked child opens its own).

    A read-only request reuses a read-write environment already open in this process.
    """
    key = (os.path.realpath(path), os.getpid())
    with _ENVS_LOCK:
        found = _ENVS.get(key)
        if found is not None:
            env, dbs, refs, was_readonly = found
            if was_readonly and not readonly:
                raise StoreError(
                    f"The store at {path} is open read-only in this process; close it before "
                    "opening it for writing."
                )
            refs[0] += 1
            return env, dbs
        env = lmdb.open(path, readonly=readonly, **OPEN_OPTIONS)
        try:
            if not readonly and env.info()["map_size"] < _MAP_FLOOR:
                env.set_mapsize(_MAP_FLOOR)
            env.reader_check()
            dbs = _open_tables(env, path, readonly)
        except BaseException:
            env.close()
            raise
        _ENVS[key] = (env, dbs, [1], readonly)
        return env, dbs


# Tables added after the first stores were made: a store opened read-only before anything
# opened it for writing (which creates them) reads them as empty.
_ADDED_LATER = frozenset({"artifacts", "run_artifacts", "cursors", "webhooks"})


def _open_existing(env: Any, name: str) -> Any:
    """A named database of a read-only environment; None for a missing later table."""
    try:
        return env.open_db(name.encode(), create=False)
    except lmdb.NotFoundError:
        if name in _ADDED_LATER:
            return None
        raise


def _open_tables(env: Any, path: str, readonly: bool) -> dict[str, Any]:
    """Open the named databases and check the format marker.

    A read-only environment opens them in a read transaction (it never waits for a writer
    in another process); a read-write one needs the write lock for a moment, once.
    """
    if readonly:
        try:
            dbs = {name: _open_existing(env, name) for name in TABLES}
        except lmdb.NotFoundError:
            raise StoreError(
                f"The directory {path} holds an LMDB environment that is not a smithers store; "
                "pass --store with a smithers store."
            ) from None
        with env.begin() as txn:
            stored = txn.get(_FORMAT_KEY, db=dbs["meta"])
    else:
        with env.begin(write=True) as txn:
            dbs = {name: env.open_db(name.encode(), txn=txn, create=True) for name in TABLES}
            stored = txn.get(_FORMAT_KEY, db=dbs["meta"])
            if stored is None:
                txn.put(_FORMAT_KEY, _FORMAT, db=dbs["meta"])
                stored = _FORMAT
    if stored is None or bytes(stored) != _FORMAT:
        shown = "no format marker" if stored is None else f"format {bytes(stored)!r}"
        raise StoreError(
            f"The store at {path} has {shown}; this smithers reads {_FORMAT!r}, so open it "
            "with the smithers that wrote it."
        )
    return dbs


def _release_env(path: str) -> None:
    key = (os.path.realpath(path), os.getpid())
    with _ENVS_LOCK:
        found = _ENVS.get(key)
        if found is None:
            return
        found[2][0] -= 1
        if found[2][0] == 0:
            del _ENVS[key]
            found[0].close()


class LmdbKV:
    """An LMDB environment directory as a `KV` backend.

    With ``readonly`` the environment is opened read-only: opening never waits for a writer
    in another process, and any write raises `StoreError`.
    """

    def __init__(self, path: str, *, create: bool = True, readonly: bool = False) -> None:
        path = os.path.abspath(path)
        if os.path.exists(path) and not os.path.isdir(path):
            raise StoreError(
                f"The store path {path} is a file; pass a directory (for example "
                "--store .smithers)."
            )
        if (readonly or not create) and not os.path.exists(os.path.join(path, "data.mdb")):
            raise StoreError(
                f"No smithers store at {path}; run a workflow first, or pass "
                "--store with the directory that holds one."
            )
        try:
            os.makedirs(path, exist_ok=True)
            check_file_size(path)
            self._env, self._dbs = _open_env(path, readonly)
        except StoreError:
            raise
        except _DAMAGE as exc:
            raise _damaged(path, str(exc)) from None
        except lmdb.Error as exc:
            raise StoreError(
                f"Cannot open the store at {path} ({exc}); pass --store with a writable directory."
            ) from None
        except OSError as exc:
            raise StoreError(
                f"Cannot open the store at {path} ({exc.strerror}); pass --store "
                "with a writable directory."
            ) from None
        self._path = path
        self._readonly = readonly
        self._closed = False

    @property
    def location(self) -> str | None:
        """The environment's directory."""
        return self._path

    def read(self, fn: Callable[[_LmdbTxn], T]) -> T:
        while True:
            try:
                with self._env.begin(buffers=False) as txn:
                    return fn(_LmdbTxn(txn, self._dbs))
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)
            except (lmdb.Error, msgspec.DecodeError) as exc:
                raise _fault(self._path, exc, writing=False) from None

    def write(self, fn: Callable[[_LmdbTxn], T]) -> T:
        if self._readonly:
            raise StoreError(f"The store at {self._path} was opened read-only; nothing written.")
        while True:
            try:
                with self._env.begin(write=True, buffers=False) as txn:
                    return fn(_LmdbTxn(txn, self._dbs))
            except lmdb.MapFullError:
                # The whole transaction was aborted; grow and run it again from the start.
                self._env.set_mapsize(self._env.info()["map_size"] * 2)
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)
            except (lmdb.Error, msgspec.DecodeError) as exc:
                raise _fault(self._path, exc, writing=True) from None

    def write_each(self, fns: Sequence[Callable[[_LmdbTxn], T]]) -> list[T | Exception]:
        if self._readonly:
            raise StoreError(f"The store at {self._path} was opened read-only; nothing written.")
        env, dbs = self._env, self._dbs
        while True:
            try:
                with env.begin(write=True, buffers=False) as parent:
                    results: list[T | Exception] = []
                    for fn in fns:
                        # A child transaction per function: aborting it undoes that
                        # function's writes only (LMDB nests without writemap).
                        child = env.begin(write=True, parent=parent, buffers=False)
                        try:
                            results.append(fn(_LmdbTxn(child, dbs)))
                        except (lmdb.Error, msgspec.DecodeError):
                            child.abort()
                            raise
                        except Exception as exc:
                            child.abort()
                            results.append(exc)
                        else:
                            child.commit()
                    return results
            except lmdb.MapFullError:
                self._env.set_mapsize(self._env.info()["map_size"] * 2)
            except lmdb.MapResizedError:
                self._env.set_mapsize(0)
            except (lmdb.Error, msgspec.DecodeError) as exc:
                raise _fault(self._path, exc, writing=True) from None

    def reader_check(self) -> int:
        """Clear reader slots left by killed processes; return how many were cleared."""
        return int(self._env.reader_check())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _release_env(self._path)


def open_lmdb_store(path: str, *, create: bool = True, readonly: bool = False) -> KVStore:
    """Open (or, with ``create``, make) the LMDB store in directory ``path``.

    Raises:
        StoreError: When ``path`` is a file, holds no store (and ``create`` is False), or
            cannot be opened.
    """
    return KVStore(LmdbKV(path, create=create, readonly=readonly))
