"""LMDB-only behaviour: other processes, crashes, map growth, bad paths, shared environments."""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
from collections.abc import Iterator
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import pytest

import smithers.store.kv.lmdb_kv as lmdb_kv
from smithers.errors import StoreError
from smithers.store import Batch, KVStore, open_store
from tests.store.helpers import (
    commit_and_exit,
    commit_one_node,
    commit_then_die_holding,
    decider_main,
    event,
    grow_map,
    hold_writes,
    node,
    reader_main,
    requested,
    run_record,
    snapshot,
)

SPAWN = multiprocessing.get_context("spawn")
# How long to wait for a child before calling it stuck. A guard against hanging the suite,
# never reached when the store behaves; no test asserts anything about speed.
PATIENCE = 30.0
# How long a reader may take to answer while this process holds a write open: opening the
# store and reading take milliseconds, so a reader still silent after this is waiting for us.
READER_PATIENCE = 10.0


@pytest.fixture
def children() -> Iterator[list[BaseProcess]]:
    """Processes a test starts; any still alive at the end is killed."""
    started: list[BaseProcess] = []
    yield started
    for child in started:
        if child.is_alive():
            child.kill()
        child.join(PATIENCE)


def start(children: list[BaseProcess], target: Any, *args: Any) -> BaseProcess:
    """Start ``target(*args)`` in a fresh interpreter (the "spawn" context)."""
    child = SPAWN.Process(target=target, args=args, daemon=True)
    children.append(child)
    child.start()
    return child


def finish(child: BaseProcess) -> int | None:
    """Wait for ``child`` to exit and return its exit code (None if it is stuck)."""
    child.join(PATIENCE)
    return child.exitcode


def ask(conn: Connection, *command: Any, patience: float = PATIENCE) -> Any:
    """Send ``command`` to a reader and return its answer, or "no answer" if it is stuck."""
    for part in command:
        conn.send(part)
    return conn.recv() if conn.poll(patience) else "no answer"


# -- readers in other processes ---------------------------------------------------------------


@pytest.mark.parametrize("opened", ["before", "during"], ids=["opened-before", "opened-during"])
def test_a_reader_in_another_process_sees_only_committed_data_while_a_write_is_open(
    lmdb_store: KVStore, children: list[BaseProcess], opened: str
) -> None:
    """A reader answers while this process holds a write open, and sees only committed data,
    whether it opened the store before the write began or while it was open."""
    assert lmdb_store.location is not None
    lmdb_store.create_run(run_record("r"), Batch(events=[event("run.started")]))
    conn, child_end = SPAWN.Pipe()
    reader = start(children, reader_main, lmdb_store.location, child_end)
    assert ask(conn, "ping") == "pong"
    if opened == "before":
        assert ask(conn, "open") == "opened"
    committed = {"runs": [("r", "running")], "events": [(1, "run.started", "r")], "nodes": []}

    seen_inside: list[Any] = []
    hold_writes(lmdb_store, lambda: seen_inside.append(ask(conn, "read", patience=READER_PATIENCE)))
    lmdb_store.commit(
        "r",
        Batch(
            run={"status": "waiting-approval"},
            nodes=[node("t")],
            events=[event("node.started", "t")],
        ),
        token=None,
    )
    late = conn.recv() if seen_inside == ["no answer"] and conn.poll(PATIENCE) else None
    assert (seen_inside, late) == ([committed], None)

    lmdb_store.create_run(run_record("s"), Batch(events=[event("run.started")]))
    assert seen_inside[1] == {
        "runs": [("r", "waiting-approval")],
        "events": [(1, "run.started", "r"), (2, "node.started", "r")],
        "nodes": ["t"],
    }
    assert ask(conn, "read") == {
        "runs": [("r", "waiting-approval"), ("s", "running")],
        "events": [(1, "run.started", "r"), (2, "node.started", "r"), (3, "run.started", "s")],
        "nodes": ["t"],
    }
    conn.send("stop")
    assert finish(reader) == 0


def test_a_reader_in_another_process_sees_every_commit_whole(
    lmdb_store: KVStore, children: list[BaseProcess]
) -> None:
    """While this process commits over and over, a reader's every snapshot is a whole commit."""
    assert lmdb_store.location is not None
    lmdb_store.create_run(run_record("r", updated_at="0"), Batch(events=[event("run.started")]))
    conn, child_end = SPAWN.Pipe()
    reader = start(children, reader_main, lmdb_store.location, child_end)
    assert ask(conn, "open") == "opened"
    commits = 150
    conn.send("watch")
    conn.send(commits)
    for i in range(1, commits + 1):
        lmdb_store.commit(
            "r",
            Batch(
                run={"updated_at": str(i)},
                nodes=[node(f"n{i}")],
                events=[event("node.started", f"n{i}")],
            ),
            token=None,
        )
    assert conn.poll(PATIENCE)
    assert conn.recv() == []
    conn.send("stop")
    assert finish(reader) == 0


# -- durability across processes ---------------------------------------------------------------


def test_data_committed_by_a_subprocess_is_visible_after_it_exits(
    tmp_path: Path, children: list[BaseProcess]
) -> None:
    """What another process committed is read here, through an already open and a new store."""
    path = str(tmp_path / "store")
    expected = {
        "runs": [("r", "waiting-approval")],
        "events": [(1, "run.started", "r"), (2, "approval.requested", "r")],
        "nodes": ["gate"],
    }
    with open_store(path) as store:
        assert store.runs() == []
        assert finish(start(children, commit_and_exit, path)) == 0
        assert snapshot(store) == expected
        assert [(r.run_id, g) for r, g in store.requested_gates()] == [("r", requested("gate"))]
    with open_store(path, create=False) as store:
        assert snapshot(store) == expected


def test_a_writer_killed_mid_transaction_leaves_committed_data_and_frees_the_lock(
    tmp_path: Path, children: list[BaseProcess]
) -> None:
    """SIGKILL during an open write loses only that transaction; the next writer gets the lock."""
    path = str(tmp_path / "store")
    with open_store(path) as store:
        conn, child_end = SPAWN.Pipe()
        writer = start(children, commit_then_die_holding, path, child_end)
        assert conn.poll(PATIENCE)
        assert conn.recv() == "holding"
        writer.kill()
        assert finish(writer) == -signal.SIGKILL

        committed = {
            "runs": [("r", "running")],
            "events": [(1, "run.started", "r"), (2, "node.started", "r")],
            "nodes": ["n1"],
        }
        assert snapshot(store) == committed
        with open_store(path, create=False) as again:
            assert snapshot(again) == committed
        # Another process first, so a lock that stayed taken fails the test instead of hanging it.
        assert finish(start(children, commit_one_node, path, "n3")) == 0
        store.commit("r", Batch(nodes=[node("n4")], events=[event("node.started")]), token=None)
        assert snapshot(store) == {
            "runs": [("r", "running")],
            "events": [
                (1, "run.started", "r"),
                (2, "node.started", "r"),
                (3, "node.started", "r"),
                (4, "node.started", "r"),
            ],
            "nodes": ["n1", "n3", "n4"],
        }


# -- map growth --------------------------------------------------------------------------------


def test_the_map_grows_on_demand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writing several MB into a tiny map succeeds, reads back whole, and keeps seqs gap-free."""
    monkeypatch.setattr(lmdb_kv, "_MAP_FLOOR", 256 << 10)
    path = str(tmp_path / "store")
    expected: dict[tuple[str, tuple[int, ...]], bytes] = {}
    with open_store(path) as store:
        env = store._kv._env  # type: ignore[attr-defined]
        initial = env.info()["map_size"]
        store.create_run(run_record("big"), Batch(events=[event("run.started")]))
        for i in range(30):  # one output per commit
            data = os.urandom(100_000)
            expected[(f"o{i}", ())] = data
            result = store.commit(
                "big",
                Batch(outputs=[(f"o{i}", (), data)], events=[event("node.finished", f"o{i}")]),
                token=None,
            )
            assert result.seqs == (i + 2,)
        batch = Batch(frames=[("frame", os.urandom(500_000))])
        for i in range(20):  # 3 MB in one transaction, retried whole as the map doubles
            data = os.urandom(150_000)
            expected[(f"p{i}", (1,))] = data
            batch.outputs.append((f"p{i}", (1,), data))
            batch.events.append(event("node.finished", f"p{i}", (1,)))
        assert store.commit("big", batch, token=None).seqs == tuple(range(32, 52))
        assert env.info()["map_size"] >= 8 * initial
        loaded = store.load("big")
        assert loaded is not None
        assert loaded.outputs == expected
        assert [e.seq for e in store.events()] == list(range(1, 52))
    with open_store(path, create=False) as store:
        loaded = store.load("big")
        assert loaded is not None
        assert loaded.outputs == expected
        assert store.frame("frame") == batch.frames[0][1]


def test_a_map_grown_by_another_process_is_adopted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, children: list[BaseProcess]
) -> None:
    """After another process grew the map, this open store reads the new data and writes more."""
    monkeypatch.setattr(lmdb_kv, "_MAP_FLOOR", 256 << 10)
    path = str(tmp_path / "store")
    with open_store(path) as store:
        store.create_run(run_record("small"), Batch(events=[event("run.started")]))
        assert finish(start(children, grow_map, path, 256 << 10, 40, 100_000)) == 0
        loaded = store.load("big")
        assert loaded is not None
        assert loaded.outputs == {(f"o{i}", ()): bytes([i]) * 100_000 for i in range(40)}
        store.commit("big", Batch(outputs=[("more", (), b"m" * 2_000_000)]), token=None)
        assert store.output("big", "more", ()) == b"m" * 2_000_000
        assert [r.run_id for r in store.runs()] == ["small", "big"]


# -- bad paths ---------------------------------------------------------------------------------


def test_a_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    """Opening a store on a regular file raises StoreError saying it is a file."""
    target = tmp_path / "notes.txt"
    target.write_text("hello")
    with pytest.raises(StoreError, match=re.escape(f"The store path {target} is a file;")):
        open_store(str(target))
    assert target.read_text() == "hello"


def test_a_path_under_a_file_is_refused(tmp_path: Path) -> None:
    """A store path whose parent is a regular file raises StoreError, not a bare OSError."""
    (tmp_path / "f").write_text("")
    with pytest.raises(StoreError, match=r"Cannot open the store at .*Not a directory"):
        open_store(str(tmp_path / "f" / "store"))


@pytest.mark.parametrize("exists", [False, True], ids=["missing", "empty-directory"])
def test_open_without_create_refuses_a_missing_store_and_creates_nothing(
    tmp_path: Path, exists: bool
) -> None:
    """``create=False`` on a path holding no store raises StoreError and makes no files."""
    path = tmp_path / "store"
    if exists:
        path.mkdir()
    with pytest.raises(StoreError, match=re.escape(f"No smithers store at {path};")):
        open_store(str(path), create=False)
    assert path.exists() == exists
    assert list(tmp_path.rglob("*")) == ([path] if exists else [])


def test_open_without_create_opens_an_existing_store(tmp_path: Path) -> None:
    """``create=False`` opens a store that exists, with its data."""
    path = str(tmp_path / "store")
    with open_store(path) as store:
        store.create_run(run_record("r"), Batch())
    with open_store(path, create=False) as store:
        assert [r.run_id for r in store.runs()] == ["r"]


def test_the_environment_is_opened_durable_and_never_with_writemap(lmdb_store: KVStore) -> None:
    """Commits fsync data and meta, writemap and map_async stay off, and the map has its floor."""
    env: Any = lmdb_store._kv._env  # type: ignore[attr-defined]
    flags = env.flags()
    assert {name: flags[name] for name in ("sync", "metasync", "writemap", "map_async")} == {
        "sync": True,
        "metasync": True,
        "writemap": False,
        "map_async": False,
    }
    assert (flags["subdir"], flags["lock"], flags["readonly"]) == (True, True, False)
    assert env.max_readers() == 512
    assert env.info()["map_size"] >= 64 << 30


def test_a_new_store_carries_the_format_marker(lmdb_store: KVStore) -> None:
    """A freshly made store records format ``smithers/1`` in its meta table."""
    kv: Any = lmdb_store._kv
    assert kv.read(lambda txn: txn.get("meta", b"format")) == b"smithers/1"


def test_a_store_of_another_format_is_refused(tmp_path: Path) -> None:
    """A store whose meta holds a different format raises StoreError naming that format."""
    path = str(tmp_path / "store")
    with open_store(path) as store:
        kv: Any = store._kv
        kv.write(lambda txn: txn.put("meta", b"format", b"smithers/9"))
    with pytest.raises(
        StoreError,
        match=re.escape(f"The store at {path} has format b'smithers/9'; this smithers reads"),
    ):
        open_store(path)


# -- racing deciders ---------------------------------------------------------------------------


def test_racing_deciders_in_several_processes_have_exactly_one_winner(
    lmdb_store: KVStore, children: list[BaseProcess]
) -> None:
    """Four processes decide each of 30 gates at once: one wins, the others get AlreadyDecided."""
    assert lmdb_store.location is not None
    gates = [f"g{i:02d}" for i in range(30)]
    lmdb_store.create_run(run_record("race"), Batch(approvals=[requested(g) for g in gates]))
    deciders = {"w0": True, "w1": False, "w2": True, "w3": False}
    barrier = SPAWN.Barrier(len(deciders))
    results = SPAWN.Queue()
    procs = [
        start(children, decider_main, lmdb_store.location, name, approve, gates, barrier, results)
        for name, approve in deciders.items()
    ]
    outcomes: dict[str, dict[str, tuple[str, str]]] = {}
    for _ in procs:
        name, _pid, got = results.get(timeout=PATIENCE * 4)
        outcomes[name] = {gate: (outcome, message) for gate, outcome, message in got}
    assert [finish(p) for p in procs] == [0, 0, 0, 0]

    approvals = {a.node_id: a for a in lmdb_store.approvals("race")}
    decided_events = [e for e in lmdb_store.events(run_id="race") if e.type == "approval.decided"]
    assert sorted(e.node_id or "" for e in decided_events) == gates
    for gate in gates:
        winners = [name for name in deciders if outcomes[name][gate][0] == "won"]
        assert len(winners) == 1, (gate, outcomes)
        winner = winners[0]
        record = approvals[gate]
        assert (record.decided_by, record.status) == (
            winner,
            "approved" if deciders[winner] else "denied",
        )
        said = f"Gate `{gate}` of run `race` was already {record.status} by {winner} at"
        for name in deciders:
            if name != winner:
                outcome, message = outcomes[name][gate]
                assert outcome == "lost", (gate, name, outcome, message)
                assert message.startswith(said), message
    run = lmdb_store.get_run("race")
    assert run is not None
    assert run.inbox == len(gates)
    assert lmdb_store.requested_gates() == []


# -- one environment per path per process ------------------------------------------------------


def test_stores_on_one_path_share_one_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two stores on one path (however spelled) share the environment; closing one keeps the
    other working, and closing twice does not release it early."""
    monkeypatch.chdir(tmp_path)
    first = open_store(str(tmp_path / "store"))
    second = open_store("store")
    third = open_store(str(tmp_path / "x" / ".." / "store"))
    kvs: list[Any] = [first._kv, second._kv, third._kv]
    assert kvs[0]._env is kvs[1]._env
    assert kvs[0]._env is kvs[2]._env
    first.create_run(run_record("r"), Batch(events=[event("run.started")]))
    assert second.get_run("r") == first.get_run("r")
    first.close()
    first.close()
    second.commit("r", Batch(nodes=[node("t")]), token=None)
    assert [e.seq for e in third.events()] == [1]
    second.close()
    loaded = third.load("r")
    assert loaded is not None
    assert list(loaded.nodes) == [("t", ())]
    third.close()
    with open_store("store", create=False) as reopened:
        assert [r.run_id for r in reopened.runs()] == ["r"]
