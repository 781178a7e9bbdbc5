"""Shared helpers for the runtime tests: thread-safe recorders, a concurrency gauge, a hang
guard, and short views of what a run stored (node states, outputs, attempts, events)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

import smithers
from smithers.compiler.codec import decode_frame
from smithers.compiler.graph import Graph
from smithers.runtime.api import RunResult
from smithers.store import KVStore

T = TypeVar("T")

# Long enough never to fire on a healthy run; only a hung or deadlocked run reaches it.
GUARD_SECONDS = 30.0


class Recorder:
    """A list that worker threads append to safely."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Any] = []

    def add(self, item: Any) -> None:
        with self._lock:
            self._items.append(item)

    @property
    def items(self) -> list[Any]:
        with self._lock:
            return list(self._items)


class Gauge:
    """Counts how many callers are inside at once and remembers the most it saw."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current = 0
        self.most = 0

    def __enter__(self) -> Gauge:
        with self._lock:
            self.current += 1
            self.most = max(self.most, self.current)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.current -= 1


def guarded(fn: Callable[[], T], *, seconds: float = GUARD_SECONDS) -> T:
    """Call ``fn`` in a thread and fail the test if it does not return: a hang guard only."""
    box: dict[str, Any] = {}

    def call() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the run hung: it neither finished nor failed"
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def run(definition: smithers.WorkflowDefinition, store: KVStore, **kwargs: Any) -> RunResult:
    """`smithers.run` behind the hang guard (run id ``r`` unless given)."""
    kwargs.setdefault("run_id", "r")
    return guarded(lambda: smithers.run(definition, store=store, **kwargs))


def states(store: KVStore, run_id: str = "r") -> dict[tuple[str, tuple[int, ...]], str]:
    """(node id, iteration) -> node state, for every node the run recorded."""
    snapshot = store.load(run_id)
    assert snapshot is not None
    return {key: record.state for key, record in snapshot.nodes.items()}


def reasons(store: KVStore, run_id: str = "r") -> dict[tuple[str, tuple[int, ...]], str | None]:
    """(node id, iteration) -> the reason recorded with the node's state."""
    snapshot = store.load(run_id)
    assert snapshot is not None
    return {key: record.reason for key, record in snapshot.nodes.items()}


def outputs(store: KVStore, run_id: str = "r") -> dict[tuple[str, tuple[int, ...]], Any]:
    """(node id, iteration) -> committed output, decoded into builtins."""
    snapshot = store.load(run_id)
    assert snapshot is not None
    return {key: msgspec.msgpack.decode(raw) for key, raw in snapshot.outputs.items()}


def attempts(store: KVStore, node_id: str, run_id: str = "r") -> list[tuple[int, str]]:
    """(number, outcome) of every attempt of a node, in order."""
    return [(a.number, a.outcome) for a in store.attempts(run_id) if a.node_id == node_id]


def events(store: KVStore, run_id: str = "r") -> list[tuple[str, str | None]]:
    """(type, node id) of every event of the run, in order."""
    return [(e.type, e.node_id) for e in store.events(run_id=run_id)]


def index_of(store: KVStore, kind: str, node_id: str, run_id: str = "r") -> int:
    """The position of the first event of ``kind`` about ``node_id`` in the run's log."""
    return events(store, run_id).index((kind, node_id))


def most_running(store: KVStore, node_ids: set[str] | None = None, run_id: str = "r") -> int:
    """The most attempts the run's event log shows in flight at once (optionally among some
    nodes): a ``node.started`` opens one; the node's next finished, failed, retrying or
    cancelled event closes it."""
    running: set[tuple[str | None, tuple[int, ...] | None]] = set()
    most = 0
    for event in store.events(run_id=run_id):
        if node_ids is not None and event.node_id not in node_ids:
            continue
        key = (event.node_id, event.iteration)
        if event.type == "node.started":
            running.add(key)
            most = max(most, len(running))
        elif event.type in ("node.finished", "node.failed", "node.retrying", "node.cancelled"):
            running.discard(key)
    return most


def final_graph(store: KVStore, run_id: str = "r") -> Graph:
    """The run's latest graph frame (without callables)."""
    run = store.get_run(run_id)
    assert run is not None
    assert run.frame is not None
    raw = store.frame(run.frame)
    assert raw is not None
    return decode_frame(raw)
