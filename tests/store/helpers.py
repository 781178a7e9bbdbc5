"""Record builders and child-process entry points shared by the store tests.

The entry points are module-level so that ``multiprocessing``'s "spawn" context can import
them in a fresh interpreter; each opens its own store on the path it is given.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from smithers.errors import AlreadyDecidedError
from smithers.store import (
    ApprovalRecord,
    Batch,
    Decision,
    KVStore,
    NodeRecord,
    RunRecord,
    SignalRecord,
    open_store,
)
from smithers.store.records import Iteration, Lease, NewEvent

T = TypeVar("T")

T0 = "2026-01-01T00:00:00.000000Z"
T1 = "2026-01-01T00:00:01.000000Z"
T2 = "2026-01-01T00:00:02.000000Z"


def run_record(run_id: str, status: str = "running", **fields: Any) -> RunRecord:
    """A run record as the runtime would create it (key 0: the store assigns it)."""
    return RunRecord(
        run_id=run_id,
        workflow=fields.pop("workflow", "wf"),
        status=status,  # type: ignore[arg-type]
        created_at=fields.pop("created_at", T0),
        updated_at=fields.pop("updated_at", T0),
        **fields,
    )


def node(
    node_id: str, iteration: Iteration = (), state: str = "pending", **fields: Any
) -> NodeRecord:
    """A task node's record."""
    return NodeRecord(
        node_id=node_id,
        iteration=iteration,
        kind=fields.pop("kind", "task"),
        state=state,  # type: ignore[arg-type]
        **fields,
    )


def requested(node_id: str, iteration: Iteration = (), **fields: Any) -> ApprovalRecord:
    """An approval record in status ``requested``."""
    return ApprovalRecord(
        node_id=node_id,
        iteration=iteration,
        status=fields.pop("status", "requested"),
        request=fields.pop("request", {"title": f"{node_id}?"}),
        requested_at=fields.pop("requested_at", T0),
        **fields,
    )


def event(
    type_: str,
    node_id: str | None = None,
    iteration: Iteration | None = None,
    data: dict[str, Any] | None = None,
    at: str = T0,
) -> NewEvent:
    """An event to append."""
    return NewEvent(type=type_, node_id=node_id, iteration=iteration, at=at, data=data or {})


def lease(token: str = "tok-a", *, pid: int = 4242, host: str = "box-a", epoch: int = 0) -> Lease:
    """A lease held by ``pid`` on ``host``."""
    return Lease(
        token=token,
        epoch=epoch,
        pid=pid,
        host=host,
        heartbeat=1.0,
        acquired_at=T0,
    )


def decision(
    node_id: str,
    iteration: Iteration = (),
    *,
    approved: bool = True,
    by: str | None = "alice",
    note: str | None = None,
    at: str = T1,
) -> Decision:
    """A decision recorded by ``ops`` on ``box-a``."""
    return Decision(
        node_id=node_id,
        iteration=iteration,
        approved=approved,
        note=note,
        decided_by=by,
        decided_at=at,
        recorded_by="ops",
        recorded_on="box-a",
    )


def signal(node_id: str, iteration: Iteration = (), data: bytes = b"\x81\xa1k\x01") -> SignalRecord:
    """A signal delivery."""
    return SignalRecord(
        node_id=node_id, iteration=iteration, data=data, received_at=T1, recorded_by="ops"
    )


def hold_writes(store: KVStore, inside: Callable[[], None]) -> None:
    """Make every write of ``store`` call ``inside()`` after its work, before it commits."""
    kv = store._kv

    def write(fn: Callable[[Any], T]) -> T:
        def held(txn: Any) -> T:
            result = fn(txn)
            inside()
            return result

        return kv.write(held)

    store._write = write  # type: ignore[method-assign]


# -- child processes ---------------------------------------------------------------------------


def snapshot(store: KVStore) -> dict[str, Any]:
    """What a reader sees: runs, the whole event log and one run's nodes, as plain data."""
    loaded = store.load("r")
    return {
        "runs": [(run.run_id, run.status) for run in store.runs()],
        "events": [(e.seq, e.type, e.run_id) for e in store.events()],
        "nodes": sorted(node_id for node_id, _ in loaded.nodes) if loaded else None,
    }


def reader_main(path: str, conn: Connection) -> None:
    """Serve commands from ``conn``; the store is opened at the first one that is not "ping".

    "ping" answers "pong", "open" answers "opened", "read" answers a `snapshot`, "watch"
    (followed by a commit number) answers the inconsistencies `watch` saw, "stop" exits.
    """
    store: KVStore | None = None
    try:
        while True:
            command = conn.recv()
            if command == "stop":
                return
            if command == "ping":
                conn.send("pong")
                continue
            if store is None:
                # A reader opens read-only, as the CLI's read commands do.
                store = open_store(path, readonly=True)
            if command == "open":
                conn.send("opened")
            elif command == "read":
                conn.send(snapshot(store))
            elif command == "watch":
                conn.send(watch(store, final=conn.recv()))
    finally:
        if store is not None:
            store.close()


def watch(store: KVStore, *, final: int) -> list[str]:
    """Read run ``r`` until commit ``final`` is visible; return every inconsistency seen.

    Commit ``i`` sets ``updated_at`` to ``i``, adds node ``n{i}`` and one event, so one
    snapshot holding commit ``i`` must hold exactly nodes ``n1..ni``.
    """
    problems: list[str] = []
    seen = 0
    while seen < final:
        loaded = store.load("r")
        assert loaded is not None
        i = int(loaded.run.updated_at)
        nodes = {node_id for node_id, _ in loaded.nodes}
        if nodes != {f"n{k}" for k in range(1, i + 1)}:
            problems.append(f"commit {i} with nodes {sorted(nodes)}")
        if i < seen:
            problems.append(f"went back from commit {seen} to {i}")
        seqs = [e.seq for e in store.events(run_id="r")]
        if seqs != list(range(1, len(seqs) + 1)) or len(seqs) < i + 1:
            problems.append(f"events {seqs} at commit {i}")
        seen = max(seen, i)
    return problems


def commit_and_exit(path: str) -> None:
    """Create run ``r`` with a node, a gate and two events, then exit normally."""
    with open_store(path) as store:
        store.create_run(run_record("r"), Batch(events=[event("run.started")]))
        store.commit(
            "r",
            Batch(
                run={"status": "waiting-approval"},
                nodes=[node("gate", kind="approval", state="waiting-approval")],
                approvals=[requested("gate")],
                events=[event("approval.requested", "gate", ())],
            ),
            token=None,
        )


def commit_then_die_holding(path: str, conn: Connection) -> None:
    """Commit run ``r`` with node ``n1``, then hold a write transaction open until killed."""
    store = open_store(path)
    store.create_run(run_record("r"), Batch(events=[event("run.started")]))
    store.commit("r", Batch(nodes=[node("n1")], events=[event("node.started", "n1")]), token=None)

    def wait_forever() -> None:
        conn.send("holding")
        conn.recv()  # never sent: the parent kills us here

    hold_writes(store, wait_forever)
    store.commit(
        "r",
        Batch(
            run={"status": "finished"},
            nodes=[node("n2", state="finished")],
            events=[event("node.finished", "n2"), event("run.finished")],
        ),
        token=None,
    )


def commit_one_node(path: str, node_id: str) -> None:
    """Commit node ``node_id`` with a ``node.started`` event to run ``r``."""
    with open_store(path, create=False) as store:
        store.commit(
            "r", Batch(nodes=[node(node_id)], events=[event("node.started", node_id)]), token=None
        )


def grow_map(path: str, floor: int, outputs: int, size: int) -> None:
    """With map floor ``floor``, commit ``outputs`` outputs of ``size`` bytes to run ``big``."""
    import smithers.store.kv.lmdb_kv as lmdb_kv

    lmdb_kv._MAP_FLOOR = floor
    with open_store(path) as store:
        store.create_run(run_record("big"), Batch())
        for i in range(outputs):
            store.commit("big", Batch(outputs=[(f"o{i}", (), bytes([i % 251]) * size)]), token=None)


def decider_main(
    path: str,
    name: str,
    approve: bool,
    gates: list[str],
    barrier: Any,
    results: Any,
) -> None:
    """For each gate, wait at ``barrier`` with the other deciders, then decide it."""
    outcomes: list[tuple[str, str, str]] = []
    with open_store(path, create=False) as store:
        for gate in gates:
            barrier.wait(timeout=120)
            try:
                store.decide("race", decision(gate, approved=approve, by=name))
            except AlreadyDecidedError as exc:
                outcomes.append((gate, "lost", str(exc)))
            except Exception as exc:  # reported to the parent, which fails the test
                outcomes.append((gate, type(exc).__name__, str(exc)))
            else:
                outcomes.append((gate, "won", ""))
    results.put((name, os.getpid(), outcomes))


STATUSES = ("running", "waiting-approval", "waiting-signal", "finished", "failed", "cancelled")


def dump(store: KVStore, run_ids: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Everything a reader can see of ``run_ids`` and the whole store, for equality checks."""
    return {
        "runs": store.runs(),
        "by_status": {status: store.runs(status) for status in STATUSES},
        "events": store.events(),
        "last_seq": store.last_seq(),
        "gates": store.requested_gates(),
        "runs_by_id": {r: store.get_run(r) for r in run_ids},
        "loads": {r: store.load(r) for r in run_ids},
        "run_events": {r: store.events(run_id=r) for r in run_ids},
        "attempts": {r: store.attempts(r) for r in run_ids},
        "approvals": {r: store.approvals(r) for r in run_ids},
        "signals": {r: store.signals(r) for r in run_ids},
    }
