"""`Scheduler`: an executing run's state and the one question it keeps asking: which units
can start now?

The engine is split by concern into mixins over this base: tasks, gates (approvals and
signals), loops and recovery each add their steps; `Engine` drives the loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, Literal, assert_never

import msgspec

from smithers.compiler.codec import decode_value
from smithers.compiler.context import Context
from smithers.compiler.graph import Graph, Node
from smithers.components.definition import WorkflowDefinition
from smithers.runtime.committer import Committer
from smithers.runtime.executor import Attempt, WorkerPool
from smithers.runtime.lease import now_iso
from smithers.runtime.plan import Plan
from smithers.runtime.state import RunState
from smithers.runtime.view import RunView
from smithers.store.base import Batch, CommitResult, NodeKey, Store
from smithers.store.records import (
    AttemptRecord,
    ErrorInfo,
    EventRecord,
    GroupRecord,
    Lease,
    NodeRecord,
)

__all__ = ["EventSink", "Scheduler"]

EventSink = Callable[[EventRecord], None]
_WATCH_EVERY = 0.5  # seconds between looks at the run record (decisions, signals, lease)


class _Stop(Exception):
    """SIGINT/SIGTERM arrived: record in-flight attempts as interrupted and leave."""


class Scheduler:
    """The state of one executing run and the scheduling core shared by every step."""

    def __init__(
        self,
        *,
        store: Store,
        definition: WorkflowDefinition,
        state: RunState,
        lease: Lease,
        last_graph: Graph | None = None,
        attempts: list[AttemptRecord] | None = None,
        check_render: bool = False,
        on_event: EventSink | None = None,
        handle_signals: bool = False,
        verify_resume: bool = False,
        accept_change: bool = False,
    ) -> None:
        self.store = store
        self.definition = definition
        self.state = state
        self.run_id = state.run.run_id
        self.lease = lease
        self.token = lease.token
        self.view = RunView(state, last_graph)
        self.input_raw = state.run.input
        self.check_render = check_render
        self.on_event = on_event
        self.handle_signals = handle_signals
        self.verify_resume = verify_resume
        self.accept_change = accept_change
        self.max_concurrency = state.run.max_concurrency
        self._recover_attempts = attempts or []
        self.graph: Graph | None = last_graph
        self.plan: Plan | None = None
        self.reads: frozenset[str] = frozenset()
        self.need_render = True
        self.dirty: set[str] = set()
        self.capped: set[str] = set()
        self.inflight: dict[NodeKey, Attempt] = {}
        self.to_launch: list[tuple[Attempt, Node]] = []
        self.timers: dict[NodeKey, asyncio.TimerHandle] = {}
        self.retry_ready: set[NodeKey] = set()
        self.running_total = 0
        self.running_in: dict[str, int] = {}
        self.frozen: set[tuple[str, tuple[int, ...]]] = set()
        self.failure: ErrorInfo | None = None
        self.cancelling = False
        self.seen_inbox = state.run.inbox
        self.pool = WorkerPool()
        self.committer: Committer | None = None  # set while `drive` runs
        self.last_ctx: Context | None = None
        self._queue: asyncio.Queue[Any] | None = None
        self._unyielded = 0  # steps taken without a trip through the event loop
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._watch_paused = False
        self.released = False
        # The earliest time something waiting here is due (timer, deadline, reminder).
        self.next_wake: float | None = None

    def _post(self, item: Any) -> None:
        assert self._queue is not None
        self._queue.put_nowait(item)

    def _take(self, release: bool, expect_inbox: int | None) -> Batch | None:
        batch = self.state.take_batch()
        batch.release_lease = release
        batch.expect_inbox = expect_inbox
        return batch if batch else None

    def _commit(self, *, release: bool = False, expect_inbox: int | None = None) -> bool:
        batch = self._take(release, expect_inbox)
        if batch is None:
            return True
        return self._committed(batch, self.store.commit(self.run_id, batch, token=self.token))

    async def _acommit(self, *, release: bool = False, expect_inbox: int | None = None) -> bool:
        """`_commit` through the loop's group committer (one fsync for many runs' steps)."""
        batch = self._take(release, expect_inbox)
        if batch is None:
            return True
        assert self.committer is not None
        return self._committed(batch, await self.committer.commit(self.run_id, batch, self.token))

    def _committed(self, batch: Batch, result: CommitResult) -> bool:
        if not result.applied:  # a park that found news: keep the records, read the news
            self.state.restage(batch)
            self._reload_inbox()
            return False
        self.released = batch.release_lease
        self.state.adopt_run(result.run)
        if self.on_event is not None:
            for seq, event in zip(result.seqs, batch.events, strict=True):
                self.on_event(
                    EventRecord(
                        seq=seq,
                        type=event.type,
                        run_id=self.run_id,
                        node_id=event.node_id,
                        iteration=event.iteration,
                        at=event.at,
                        data=event.data,
                    )
                )
        if result.run.inbox != self.seen_inbox:
            self._reload_inbox()
        return True

    def _examine_dirty(self) -> None:
        assert self.plan is not None
        while self.dirty and not self.need_render:
            order = self.plan.order
            if len(self.dirty) == 1:  # the usual step: one dependent became ready
                batch = list(self.dirty)
            else:
                batch = sorted(self.dirty, key=lambda u: order.get(u, -1))
            self.dirty = set()
            for unit in batch:
                if unit in order and not self.need_render:
                    self._examine(unit)

    def _examine(self, unit: str) -> None:
        if self.failure is not None or self.cancelling:
            return
        assert self.plan is not None and self.graph is not None
        node = self.plan.node(unit)
        if node is None:
            self._examine_loop(unit)
            return
        key = (node.id, node.iteration)
        record = self.state.nodes.get(key)
        if record is not None and record.state != "pending":
            if record.state == "in-progress" and key in self.retry_ready:
                self._start_task(node, key)
            if record.state != "cancelled":
                return
            if key in self.state.outputs:  # mounted again, and its output was kept
                self._set(key, "finished", reason=None)
                self._terminal(unit)
                return
        if node.skipped:
            self._skip(node, "skip_if")
            return
        mark = self._skip_mark(unit)
        if mark is not None:
            self._skip(node, f"denied: {mark.gate}")
            return
        if not self._enclosing_loops_running(node.loops):
            return
        if not all(self._is_terminal(src) for src in self.plan.after.get(unit, ())):
            return
        if not all(self._is_terminal(lp) for lp in self.plan.foreign.get(unit, ())):
            return
        for dep in node.needs.values():
            status = self._dep_status(dep)
            if status == "skipped":
                self._skip(node, "upstream-skipped", dep=dep)
                return
            if status == "wait":
                return
        match node.kind:
            case "task":
                self._start_task(node, key)
            case "approval":
                self._request(node, key)
            case "signal":
                self._await_signal(node, key)
            case "timer":
                self._start_timer(node, key)
            case unknown:
                assert_never(unknown)

    def _is_terminal(self, unit: str) -> bool:
        assert self.plan is not None
        node = self.plan.node(unit)
        if node is not None:
            if node.skipped:
                return True
            record = self.state.nodes.get((node.id, node.iteration))
            if record is None:
                return False
            if record.state in ("finished", "skipped"):
                return True
            return record.state == "failed" and bool(node.props.get("continue_on_fail"))
        group = self.plan.loops.get(unit)
        if group is None or group.skipped or self._skip_mark(unit) is not None:
            return True
        loop = self.state.loop(unit, group.iteration[:-1])
        return loop is not None and loop.loop_state == "done"

    def _dep_status(self, dep: str) -> str:
        assert self.graph is not None
        node = self.graph.by_id.get(dep)
        if node is None:  # not mounted: an output it left behind still counts
            return "ready" if self.state.latest_output(dep) else "wait"
        key = (dep, node.iteration)
        if key in self.state.outputs:
            return "ready"
        record = self.state.nodes.get(key)
        if node.skipped or (record is not None and record.state in ("skipped", "failed")):
            return "skipped"
        return "wait"

    def _dep_value(self, dep: str) -> Any:
        assert self.graph is not None
        node = self.graph.by_id.get(dep)
        if node is not None and (dep, node.iteration) in self.state.outputs:
            raw = self.state.outputs[(dep, node.iteration)]
        else:
            found = self.state.latest_output(dep)
            assert found is not None
            raw = found[1]
        return decode_value(raw, self.view.types.get(dep))

    def _terminal(self, unit: str) -> None:
        """A unit became terminal (or gained an output): look at what depends on it."""
        assert self.plan is not None
        self.dirty.update(self.plan.dependents.get(unit, ()))

    def _set(self, key: NodeKey, state: Any, **fields: Any) -> NodeRecord:
        record = self.state.nodes.get(key)
        if record is None:
            assert self.graph is not None
            node = self.graph.by_id[key[0]]
            record = NodeRecord(
                node_id=key[0], iteration=key[1], kind=node.kind, state=state, loops=node.loops
            )
        if state in ("finished", "failed", "skipped", "cancelled"):
            fields.setdefault("finished_at", now_iso())
        if state != "in-progress":
            fields.setdefault("attempt_started_at", None)
        return self.state.set_node(msgspec.structs.replace(record, state=state, **fields))

    def _skip(self, node: Node, reason: str, **data: Any) -> None:
        key = (node.id, node.iteration)
        self._set(key, "skipped", reason=reason if not data else f"{reason}: {data['dep']}")
        self.state.event("node.skipped", node.id, node.iteration, reason=reason, **data)
        self._terminal(node.id)

    def _output(self, key: NodeKey, raw: bytes) -> None:
        self.state.add_output(key, raw)
        if key[0] in self.reads:
            self.need_render = True

    def _fail(self, error: ErrorInfo) -> None:
        """An unhandled failure: nothing new starts; in-flight attempts finish and are kept."""
        if self.failure is None:
            self.failure = error
            for key, timer in list(self.timers.items()):
                timer.cancel()
                self._set(key, "cancelled", reason="run-failed")
            self.timers.clear()
            self.retry_ready.clear()

    def _freeze(self, unit: str) -> None:
        """A node under a branch started: that branch keeps its side from now on."""
        assert self.plan is not None
        if not self.plan.has_branches:
            return
        for group in self.plan.branches(unit):
            mark = (group.path, group.iteration)
            if mark in self.frozen or group.taken is None:
                continue
            self.frozen.add(mark)
            if ("branch", group.path, group.iteration) not in self.state.groups:
                self.state.set_group(
                    GroupRecord(
                        kind="branch",
                        key=group.path,
                        iteration=group.iteration,
                        side=group.taken == "then",
                    )
                )

    def _skip_mark(self, unit: str) -> GroupRecord | None:
        """The deny-skip mark covering a unit, if any."""
        if not self.state.skip_marks:
            return None
        assert self.plan is not None
        for group, index in self.plan.chain(unit):
            mark = self.state.groups.get(("skip", group.path, group.iteration))
            if mark is not None and mark.skip_after is not None and index > mark.skip_after:
                return mark
        return None

    def _enclosing_loops_running(self, loops: tuple[str, ...]) -> bool:
        assert self.plan is not None
        for loop_id in loops:
            record = self.state.loop(loop_id, self.plan.loops[loop_id].iteration[:-1])
            if record is None or record.loop_state != "running":
                return False
        return True

    def _stop_watch(self) -> None:
        """Pause the watcher before the lease is released (it must not see that as theft)."""
        self._watch_paused = True

    def _resume_watch(self) -> None:
        self._watch_paused = False

    # -- steps the mixins provide --------------------------------------------------------------

    def _start_task(self, node: Node, key: NodeKey) -> None:
        raise NotImplementedError  # provided by a mixin

    def _request(self, node: Node, key: NodeKey) -> None:
        raise NotImplementedError  # provided by a mixin

    def _await_signal(self, node: Node, key: NodeKey) -> None:
        raise NotImplementedError  # provided by a mixin

    def _examine_loop(self, loop_id: str) -> None:
        raise NotImplementedError  # provided by a mixin

    def _start_timer(self, node: Node, key: NodeKey) -> None:
        raise NotImplementedError  # provided by a mixin

    def _apply_time(self) -> None:
        raise NotImplementedError  # provided by a mixin

    def _resolve(self, key: NodeKey, record: Any) -> None:
        raise NotImplementedError  # provided by a mixin

    def _wake_soon(self, at: float | None) -> None:
        raise NotImplementedError  # provided by a mixin

    def _withdraw(self, key: NodeKey, because: str) -> None:
        raise NotImplementedError  # provided by a mixin

    def _abandon(
        self, outcome: Literal["interrupted", "cancelled"], error: str, *, state: Any
    ) -> None:
        raise NotImplementedError  # provided by a mixin

    def _reload_inbox(self) -> None:
        raise NotImplementedError  # provided by a mixin

    def _end_attempt(self, attempt: Attempt, outcome: Any, ms: float, error: str | None) -> None:
        raise NotImplementedError  # provided by a mixin

    def _release(self, *, quietly: bool = False) -> None:
        raise NotImplementedError  # provided by a mixin
