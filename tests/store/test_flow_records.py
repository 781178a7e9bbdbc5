"""Artifacts, consumer cursors and webhooks on every backend: bytes stored once per digest and
checked on read, cursors that persist, webhooks unique by name."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from smithers.errors import InputError, StoreError
from smithers.store import Store
from smithers.store.kv.kvstore import KVStore
from smithers.store.records import ArtifactRecord, WebhookRecord


def _record(run_id: str, data: bytes, name: str) -> ArtifactRecord:
    sha = hashlib.sha256(data).hexdigest()
    return ArtifactRecord(run_id=run_id, sha256=sha, name=name, size=len(data))


def test_an_artifact_is_stored_once_and_listed_with_each_run(store: Store) -> None:
    """The same bytes put by two runs are one blob; each run lists its own artifacts."""
    first = _record("r1", b"diff", "change.diff")
    store.put_artifact(first, b"diff")
    store.put_artifact(_record("r1", b"log", "test.log"), b"log")
    store.put_artifact(_record("r2", b"diff", "same.diff"), b"diff")
    assert store.artifact_data(first.sha256) == b"diff"
    assert {a.name for a in store.run_artifacts("r1")} == {"change.diff", "test.log"}
    assert [a.name for a in store.run_artifacts("r2")] == ["same.diff"]
    assert store.artifact_data("0" * 64) is None


def test_bytes_that_do_not_match_their_digest_are_refused(store: Store) -> None:
    """put_artifact refuses a record whose digest is not the data's, writing nothing."""
    wrong = _record("r1", b"one", "x")
    with pytest.raises(InputError, match="do not hash to"):
        store.put_artifact(wrong, b"two")
    assert store.run_artifacts("r1") == []


def test_a_damaged_artifact_is_detected_on_read(lmdb_store: KVStore) -> None:
    """Bytes changed under the store fail the digest check when read."""
    record = _record("r1", b"original", "a.txt")
    lmdb_store.put_artifact(record, b"original")
    lmdb_store._kv.write(lambda txn: txn.put("artifacts", record.sha256.encode(), b"tampered"))
    with pytest.raises(StoreError, match=f"Artifact {record.sha256} .* is damaged"):
        lmdb_store.artifact_data(record.sha256)


def test_cursors_start_at_zero_and_keep_their_position(store: Store) -> None:
    """A new consumer's cursor is 0; set_cursor moves it; consumers are independent."""
    assert store.cursor("chat") == 0
    store.set_cursor("chat", 7)
    store.set_cursor("audit", 2)
    store.set_cursor("chat", 9)
    assert (store.cursor("chat"), store.cursor("audit")) == (9, 2)


def test_webhooks_are_unique_by_name_and_removal_drops_their_cursor(store: Store) -> None:
    """A taken name is refused; removing a webhook forgets its cursor too."""
    hook = WebhookRecord(name="chat", url="http://x/", events=("approval.requested",))
    store.add_webhook(hook)
    with pytest.raises(InputError, match="A webhook named `chat` already exists"):
        store.add_webhook(hook)
    store.set_cursor("webhook:chat", 5)
    assert store.webhooks() == [hook]
    assert store.remove_webhook("chat") is True
    assert store.remove_webhook("chat") is False
    assert store.webhooks() == []
    assert store.cursor("webhook:chat") == 0


def test_creating_a_running_run_on_a_full_key_is_refused(store: Store) -> None:
    """The creating transaction checks the key's slots: a second running run is refused
    (naming the run ahead) and nothing is written; a queued one is stored; other keys pass."""
    from smithers.errors import ConcurrencyLimitError
    from smithers.store.base import Batch
    from tests.store.helpers import run_record

    store.create_run(run_record("a", concurrency_key="x"), Batch())
    with pytest.raises(ConcurrencyLimitError) as refused:
        store.create_run(run_record("b", concurrency_key="x"), Batch())
    assert refused.value.ahead == "a"
    assert store.get_run("b") is None
    store.create_run(run_record("b", "queued", concurrency_key="x"), Batch())
    with pytest.raises(ConcurrencyLimitError, match="when run b ends"):
        store.create_run(run_record("c", concurrency_key="x", concurrency_limit=2), Batch())
    store.create_run(run_record("d", concurrency_key="y"), Batch())


def test_an_older_lmdb_store_opened_read_only_reads_the_new_tables_as_empty(
    tmp_path: Path,
) -> None:
    """A store made before artifacts, cursors and webhooks opens read-only (no error) and
    has none of them; opening it for writing adds the tables."""
    import lmdb

    from smithers.store import open_store
    from smithers.store.kv.lmdb_kv import _ADDED_LATER, _FORMAT, _FORMAT_KEY
    from smithers.store.kv.protocol import TABLES

    path = tmp_path / "old"
    env = lmdb.open(str(path), max_dbs=32)
    with env.begin(write=True) as txn:
        dbs = {t: env.open_db(t.encode(), txn=txn) for t in TABLES if t not in _ADDED_LATER}
        txn.put(_FORMAT_KEY, _FORMAT, db=dbs["meta"])
    env.close()
    old = open_store(str(path), readonly=True)
    try:
        assert (old.runs(), old.webhooks(), old.cursor("chat")) == ([], [], 0)
        assert old.artifact_data("0" * 64) is None
    finally:
        old.close()
    writable = open_store(str(path))
    try:
        writable.set_cursor("chat", 3)
        assert writable.cursor("chat") == 3
    finally:
        writable.close()
