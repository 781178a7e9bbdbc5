"""`Engine`: the render -> schedule -> execute -> commit loop of one executing run.

Each step: absorb what finished, re-render only if the build function read something that
changed, examine only the units that depend on what changed, then commit everything that
happened (results, starts, events) in one write transaction, and only then launch the tasks
it started. A commit that finishes a node therefore also records the start of the nodes it
made runnable.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec

from smithers.compiler.codec import check_value, decode_value, encode_frame, validate_value
from smithers.compiler.context import Context
from smithers.compiler.graph import Graph, Node
from smithers.compiler.render import input_decoder
from smithers.components.definition import WorkflowDefinition
from smithers.components.nodes import Approval, ApprovalDecision, ApprovalRequest, Task, TaskInfo
from smithers.errors import (
    LeaseLostError,
    OutputTypeChangedError,
    SmithersError,
    ValidationError,
    WorkflowChangedError,
)
from smithers.runtime.executor import Attempt, Done, WorkerPool, error_text, launch, trace_of
from smithers.runtime.lease import HEARTBEAT_EVERY, now_iso
from smithers.runtime.loader import source_hash
from smithers.runtime.plan import Plan
from smithers.runtime.state import RunState
from smithers.runtime.view import RunView, render_run
from smithers.store.base import Batch, NodeKey, Store
from smithers.store.records import (
    ApprovalRecord,
    AttemptRecord,
    ErrorInfo,
    EventRecord,
    GroupRecord,
    Lease,
    NodeRecord,
    SignalRecord,
)

__all__ = ["Engine", "EventSink"]

EventSink = Callable[[EventRecord], None]
_WATCH_EVERY = 0.5  # seconds between looks at the run record (decisions, signals, lease)


class _Stop(Exception):
    """SIGINT/SIGTERM arrived: record in-flight attempts as interrupted and leave."""


class Engine:
    """Executes one run while holding its lease; `drive` returns when it finishes, fails, is
    cancelled or parks waiting for a person or a signal."""

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
        self.last_ctx: Context | None = None
        self._queue: asyncio.Queue[Any] | None = None
        self._watch_stop = threading.Event()
        self._watch_paused = False
        self.released = False

    # -- the loop -----------------------------------------------------------------------------

    async def drive(self) -> RunState:
        """Run until the run finishes, fails, is cancelled or parks; return the final state.

        Raises:
            KeyboardInterrupt: After SIGINT/SIGTERM, once in-flight attempts are recorded as
                interrupted and the lease is released (the run stays resumable).
            LeaseLostError: When another process took the run over.
        """
        loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        watcher = threading.Thread(
            target=self._watch, args=(loop,), name="smithers-watch", daemon=True
        )
        watcher.start()
        installed = self._install_signal_handlers(loop)
        try:
            old_graph = self.graph
            self._render()
            if self.verify_resume:
                self._verify(old_graph)
                self.state.update_run(status="running", updated_at=now_iso())
                self.state.event("run.resumed", pid=self.lease.pid, host=self.lease.host)
            self._recover()
            self._apply_arrivals()
            while True:
                self._settle()
                if not self.inflight and not self.timers and not self.retry_ready:
                    if self._conclude():
                        return self.state
                    continue
                for item in await self._next():
                    self._absorb(item)
        except _Stop:
            self._interrupt()
            raise KeyboardInterrupt from None
        except BaseException:
            # Anything unexpected (a failing on_event callback, a bug): leave the run
            # resumable at once instead of locked until the heartbeat goes stale.
            self._release(quietly=True)
            raise
        finally:
            self._watch_stop.set()
            watcher.join()
            for sig in installed:
                loop.remove_signal_handler(sig)
            for timer in self.timers.values():
                timer.cancel()
            self.pool.shutdown()

    def _settle(self) -> None:
        """Render if needed, examine dirty units, commit, then launch what was started.

        Repeats while a commit brought news (a decision, a signal) that changed something.
        """
        while True:
            while True:
                if self.need_render:
                    self._render()
                elif self.check_render and self.graph is not None:
                    self._check_render()
                if self.plan is None:  # the first render failed
                    break
                self._examine_dirty()
                if not self.need_render:
                    break
            self._commit()
            self._launch()
            if self.plan is None or not (
                self.dirty or self.need_render or self.state.has_changes()
            ):
                return

    async def _next(self) -> list[Any]:
        assert self._queue is not None
        items = [await self._queue.get()]
        await asyncio.sleep(0)  # let results already handed over by threads join this step
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items

    def _post(self, item: Any) -> None:
        assert self._queue is not None
        self._queue.put_nowait(item)

    def _absorb(self, item: Any) -> None:
        if isinstance(item, Done):
            self._finish_attempt(item)
        elif item == "inbox":
            self._reload_inbox()
        elif item == "stop":
            raise _Stop
        elif isinstance(item, tuple) and item[0] == "retry":
            self.timers.pop(item[1], None)
            self.retry_ready.add(item[1])
            self.dirty.add(item[1][0])
        elif isinstance(item, tuple) and item[0] == "lease-lost":
            raise LeaseLostError(item[1])

    # -- commits ------------------------------------------------------------------------------

    def _commit(self, *, release: bool = False, expect_inbox: int | None = None) -> bool:
        batch = self.state.take_batch()
        batch.release_lease = release
        batch.expect_inbox = expect_inbox
        if not batch:
            return True
        result = self.store.commit(self.run_id, batch, token=self.token)
        if not result.applied:  # a park that found news: keep the records, read the news
            self.state.restage(batch)
            self._reload_inbox()
            return False
        self.released = release
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

    # -- rendering ----------------------------------------------------------------------------

    def _render_graph(self) -> Graph:
        graph, self.last_ctx = render_run(self.definition, self.view, self.run_id, self.input_raw)
        return graph

    def _render(self) -> None:
        self.need_render = False
        try:
            graph = self._render_graph()
        except SmithersError as exc:
            if self.plan is None and self.verify_resume:
                # Resuming with a build that no longer renders: refuse, change nothing.
                self._release()
                raise
            self._fail(ErrorInfo(type=type(exc).__name__, message=str(exc)))
            return
        old, self.graph = self.graph, graph
        self.plan = Plan(graph)
        assert self.last_ctx is not None
        self.reads = self.last_ctx.reads
        if graph.hash != self.state.run.frame:
            self.state.add_frame(graph.hash, encode_frame(graph))
            self.state.update_run(frame=graph.hash, workflow=graph.workflow)
        if old is not None and old is not graph:
            self._unmount(old, graph)
        self._recount()
        self.dirty = set(self.plan.units)

    def _check_render(self) -> None:
        """SMITHERS_CHECK_RENDER=1: render anyway and insist nothing changed."""
        assert self.graph is not None
        graph = self._render_graph()
        if graph != self.graph:
            raise AssertionError(
                f"SMITHERS_CHECK_RENDER: the build function of `{self.definition.name}` "
                "rendered a different graph although nothing it read had changed; build "
                "functions must be pure functions of ctx."
            )

    def _unmount(self, old: Graph, new: Graph) -> None:
        """Nodes that left the graph: in-flight work is cancelled, requested gates withdrawn."""
        for node in old.nodes:
            fresh = new.by_id.get(node.id)
            if fresh is not None and fresh.iteration == node.iteration:
                continue
            key = (node.id, node.iteration)
            record = self.state.nodes.get(key)
            if record is None or record.state not in (
                "in-progress",
                "waiting-approval",
                "waiting-signal",
            ):
                continue
            if key in self.inflight:
                self.inflight[key].unmounted = True  # cancelled when its result arrives
                continue
            timer = self.timers.pop(key, None)
            if timer is not None:
                timer.cancel()
            self.retry_ready.discard(key)
            if record.state == "waiting-approval":
                self._withdraw(key, "unmounted")
            self._set(key, "cancelled", reason="unmounted")
            self.state.event("node.cancelled", key[0], key[1], reason="unmounted")

    def _recount(self) -> None:
        assert self.plan is not None
        self.running_total = 0
        self.running_in = {}
        caps = self.plan.caps
        for attempt in self.inflight.values():
            if attempt.settled:
                continue
            self.running_total += 1
            if not attempt.unmounted:
                for path, _ in caps.get(attempt.node_id, ()):
                    self.running_in[path] = self.running_in.get(path, 0) + 1

    # -- examining units ----------------------------------------------------------------------

    def _examine_dirty(self) -> None:
        assert self.plan is not None
        while self.dirty and not self.need_render:
            order = self.plan.order
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
        if node.kind == "task":
            self._start_task(node, key)
        elif node.kind == "approval":
            self._request(node, key)
        else:
            self._await_signal(node, key)

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

    # -- node state changes -------------------------------------------------------------------

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

    # -- tasks --------------------------------------------------------------------------------

    def _start_task(self, node: Node, key: NodeKey) -> None:
        assert self.plan is not None and self.graph is not None
        caps = self.plan.caps.get(node.id, ())
        if self.running_total >= self.max_concurrency or any(
            self.running_in.get(path, 0) >= cap for path, cap in caps
        ):
            self.capped.add(node.id)
            return
        self.capped.discard(node.id)
        self.retry_ready.discard(key)
        record = self.state.nodes.get(key)
        number = (record.attempts if record else 0) + 1
        started = now_iso()
        self._set(
            key,
            "in-progress",
            attempts=number,
            attempt_started_at=started,
            started_at=(record.started_at if record and record.started_at else started),
        )
        self.state.event("node.started", key[0], key[1], attempt=number)
        self._freeze(node.id)
        element = self.graph.elements[node.id]
        assert isinstance(element, Task)
        attempt = Attempt(
            node_id=key[0], iteration=key[1], number=number, element=element, started_at=started
        )
        self.inflight[key] = attempt
        self.to_launch.append((attempt, node))
        self.running_total += 1
        for path, _ in caps:
            self.running_in[path] = self.running_in.get(path, 0) + 1

    def _launch(self) -> None:
        if not self.to_launch:
            return
        loop = asyncio.get_running_loop()
        launching, self.to_launch = self.to_launch, []
        for attempt, node in launching:
            element = attempt.element
            try:
                kwargs = {param: self._dep_value(dep) for param, dep in node.needs.items()}
            except Exception as exc:  # a needed output no longer decodes
                self._post(Done(attempt, False, exc, 0.0))
                continue
            if element.wants_task:
                its = ".".join(map(str, attempt.iteration))
                kwargs["task"] = TaskInfo(
                    run_id=self.run_id,
                    node_id=attempt.node_id,
                    iteration=attempt.iteration,
                    attempt=attempt.number,
                    idempotency_key=f"{self.run_id}/{attempt.node_id}" + (f"@{its}" if its else ""),
                )
            launch(attempt, kwargs, loop=loop, post=self._post, pool=self.pool)

    def _finish_attempt(self, done: Done) -> None:
        attempt = done.attempt
        if attempt.settled:
            return  # a timed-out attempt's late result: discarded
        attempt.settled = True
        if attempt.timer is not None:
            attempt.timer.cancel()
        key = attempt.key
        if self.inflight.get(key) is attempt:
            del self.inflight[key]
        self._release_slot(attempt)
        ms = round(done.seconds * 1000, 3)
        if done.ok:
            try:
                _, raw = validate_value(
                    done.value,
                    attempt.element.output,
                    what=f"Task `{attempt.node_id}` returned a value that",
                )
            except ValidationError as exc:
                self._attempt_failed(attempt, exc, ms, timed_out=False)
                return
            self._end_attempt(attempt, "ok", ms, None)
            self._output(key, raw)
            if attempt.unmounted:
                self._set(key, "cancelled", reason="unmounted")
                self.state.event("node.cancelled", key[0], key[1], reason="unmounted")
                return
            self._set(key, "finished", reason=None, error=None)
            self.state.event(
                "node.finished", key[0], key[1], attempt=attempt.number, duration_ms=ms
            )
            self._terminal(attempt.node_id)
        else:
            self._attempt_failed(attempt, done.value, ms, timed_out=done.timed_out)

    def _release_slot(self, attempt: Attempt) -> None:
        assert self.plan is not None
        self.running_total -= 1
        if not attempt.unmounted:
            for path, _ in self.plan.caps.get(attempt.node_id, ()):
                self.running_in[path] = self.running_in.get(path, 1) - 1
        if self.capped and self.plan is not None:
            # Wake capped tasks in tree order, no more than the free run-level slots; a task
            # held by a group cap stays parked until that group frees a slot.
            free = self.max_concurrency - self.running_total
            order, caps = self.plan.order, self.plan.caps
            for unit in sorted(self.capped, key=lambda u: order.get(u, -1)):
                if free <= 0:
                    break
                if all(self.running_in.get(path, 0) < cap for path, cap in caps.get(unit, ())):
                    self.dirty.add(unit)
                    free -= 1

    def _end_attempt(self, attempt: Attempt, outcome: Any, ms: float, error: str | None) -> None:
        self.state.set_attempt(
            attempt.key,
            AttemptRecord(
                node_id=attempt.node_id,
                iteration=attempt.iteration,
                number=attempt.number,
                started_at=attempt.started_at,
                ended_at=now_iso(),
                outcome=outcome,
                error=error,
                duration_ms=ms,
            ),
        )

    def _attempt_failed(
        self, attempt: Attempt, exc: BaseException, ms: float, *, timed_out: bool
    ) -> None:
        key = attempt.key
        text = error_text(exc)
        self._end_attempt(
            attempt,
            "timed-out" if timed_out else "failed",
            ms,
            text if isinstance(exc, SmithersError) else trace_of(exc),
        )
        record = self.state.nodes[key]
        failures = record.failures + 1
        if attempt.unmounted:
            self._set(key, "cancelled", reason="unmounted", failures=failures)
            self.state.event("node.cancelled", key[0], key[1], reason="unmounted")
            return
        element = attempt.element
        if failures <= element.retries and self.failure is None and not self.cancelling:
            delay = _backoff(element.backoff, failures)
            self.state.update_node(key, failures=failures, error=text)
            self.state.event(
                "node.retrying", key[0], key[1], attempt=attempt.number, error=text, delay=delay
            )
            loop = asyncio.get_running_loop()
            self.timers[key] = loop.call_later(delay, self._post, ("retry", key))
            return
        self._set(key, "failed", failures=failures, error=text)
        self.state.event(
            "node.failed", key[0], key[1], attempt=attempt.number, error=text, duration_ms=ms
        )
        if element.continue_on_fail:
            self._terminal(attempt.node_id)
        else:
            self._fail(ErrorInfo(type=type(exc).__name__, message=_message(exc), node_id=key[0]))

    # -- approvals and signals ----------------------------------------------------------------

    def _request(self, node: Node, key: NodeKey) -> None:
        assert self.graph is not None
        element = self.graph.elements[node.id]
        assert isinstance(element, Approval)
        try:
            if isinstance(element.request, ApprovalRequest):
                request = element.request
            else:
                kwargs = {param: self._dep_value(dep) for param, dep in element.needs.items()}
                request = validate_value(
                    element.request(**kwargs),
                    ApprovalRequest,
                    what=f"The request function of gate `{node.id}` returned a value that",
                )[0]
        except Exception as exc:
            message = (
                str(exc)
                if isinstance(exc, ValidationError)
                else f"The request function of gate `{node.id}` raised {error_text(exc)}"
            )
            self._set(key, "failed", error=message)
            self.state.event("node.failed", key[0], key[1], error=message)
            self._fail(ErrorInfo(type=type(exc).__name__, message=message, node_id=node.id))
            return
        payload = msgspec.to_builtins(request)
        earlier = self.state.approvals.get(key)
        previous = (*earlier.previous, msgspec.to_builtins(earlier)) if earlier else ()
        self.state.set_approval(
            ApprovalRecord(
                node_id=key[0],
                iteration=key[1],
                status="requested",
                request=payload,
                requested_at=now_iso(),
                on_deny=element.on_deny,
                previous=previous,
            )
        )
        self._set(key, "waiting-approval", started_at=now_iso())
        self.state.event(
            "approval.requested", key[0], key[1], request=payload, on_deny=element.on_deny
        )
        self._freeze(node.id)

    def _withdraw(self, key: NodeKey, because: str) -> None:
        record = self.state.approvals.get(key)
        if record is None or record.status != "requested":
            return
        self.state.set_approval(
            msgspec.structs.replace(
                record, status="withdrawn", withdrawn_at=now_iso(), withdrawn_because=because
            )
        )
        self.state.event("approval.withdrawn", key[0], key[1], reason=because)

    def _resolve(self, key: NodeKey, record: ApprovalRecord) -> None:
        """Apply a recorded decision to a waiting gate, per its ``on_deny``."""
        assert self.graph is not None and self.plan is not None
        node = self.graph.by_id.get(key[0])
        current = self.state.nodes.get(key)
        if (
            node is None
            or node.iteration != key[1]
            or current is None
            or (current.state != "waiting-approval")
        ):
            return
        decision = ApprovalDecision(**(record.decision or {"approved": False}))
        on_deny = node.props.get("on_deny", record.on_deny)
        who = decision.decided_by or "unknown"
        if decision.approved or on_deny == "continue":
            self._output(key, msgspec.msgpack.encode(decision))
            self._set(key, "finished")
            self.state.event("node.finished", key[0], key[1], approved=decision.approved)
            self._terminal(node.id)
        elif on_deny == "skip":
            self._set(key, "skipped", reason=f"denied by {who}")
            self.state.event("node.skipped", key[0], key[1], reason="denied", decided_by=who)
            self._mark_skip(node)
            self._terminal(node.id)
        else:
            note = f": {decision.note}" if decision.note else ""
            message = f"Gate `{node.id}` was denied by {who}{note}"
            self._set(key, "failed", error=message)
            self.state.event("node.failed", key[0], key[1], error=message)
            self._fail(ErrorInfo(type="ApprovalDenied", message=message, node_id=node.id))

    def _mark_skip(self, gate: Node) -> None:
        """on_deny="skip": the gate's later siblings and all under them are skipped."""
        assert self.plan is not None and self.graph is not None
        chain = self.plan.chain(gate.id)
        if not chain:
            return
        parent, index = chain[-1]
        self.state.set_group(
            GroupRecord(
                kind="skip",
                key=parent.path,
                iteration=parent.iteration,
                skip_after=index,
                gate=gate.id,
            )
        )
        for unit in self.plan.units:
            node = self.plan.node(unit)
            if node is None:
                if self._skip_mark(unit) is not None:
                    self._terminal(unit)
                continue
            key = (node.id, node.iteration)
            record = self.state.nodes.get(key)
            if (record is None or record.state == "pending") and self._skip_mark(unit):
                self._skip(node, f"denied: {gate.id}")

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

    def _await_signal(self, node: Node, key: NodeKey) -> None:
        self._freeze(node.id)
        delivered = self.state.signals.get(key)
        if delivered is not None:
            self._apply_signal(node, key, delivered)
            return
        self._set(key, "waiting-signal", started_at=now_iso())
        self.state.event("signal.waiting", key[0], key[1])

    def _apply_signal(self, node: Node, key: NodeKey, delivered: SignalRecord) -> None:
        assert self.graph is not None
        if delivered.rejected is not None:
            return  # already refused; the node waits for a corrected delivery
        tp = self.view.types.get(node.id)
        try:
            _, raw = check_value(decode_value(delivered.data), tp)
        except ValueError as exc:
            # Bad data must not poison the run: refuse this delivery, keep waiting.
            reason = (
                f"Data for signal `{node.id}` does not match `{node.output_type}`: {exc}; "
                f"deliver it again with `smithers signal {self.run_id} --node {node.id}`."
            )
            self.state.set_signal(msgspec.structs.replace(delivered, rejected=reason))
            if self.state.nodes.get(key) is None or self.state.nodes[key].state == "pending":
                self._set(key, "waiting-signal", started_at=now_iso())
                self.state.event("signal.waiting", key[0], key[1])
            self.state.event("signal.rejected", key[0], key[1], error=reason)
            return
        self._output(key, raw)
        self._set(key, "finished")
        self.state.event("node.finished", key[0], key[1])
        self._terminal(node.id)

    def _reload_inbox(self) -> None:
        """Read decisions, signals and cancel requests that arrived from other processes."""
        run = self.store.get_run(self.run_id)
        if run is None:
            return
        self.seen_inbox = run.inbox
        if run.cancel_requested and not self.cancelling:
            self.cancelling = True
            self._abandon("cancelled", "the run was cancelled", state="cancelled")
            for timer in self.timers.values():
                timer.cancel()
            self.timers.clear()
            self.retry_ready.clear()
        for record in self.store.approvals(self.run_id):
            self.state.approvals[(record.node_id, record.iteration)] = record
        for delivered in self.store.signals(self.run_id):
            key = (delivered.node_id, delivered.iteration)
            if self.state.signals.get(key) != delivered:  # new, or a corrected delivery
                self.state.signals[key] = delivered
        self._apply_arrivals()

    def _apply_arrivals(self) -> None:
        """Apply decisions and signal data to the gates and signals waiting for them."""
        if self.graph is None:
            return
        for key, record in list(self.state.approvals.items()):
            if record.status in ("approved", "denied"):
                self._resolve(key, record)
        for key, delivered in list(self.state.signals.items()):
            current = self.state.nodes.get(key)
            node = self.graph.by_id.get(key[0])
            if node is not None and current is not None and current.state == "waiting-signal":
                self._apply_signal(node, key, delivered)

    # -- loops --------------------------------------------------------------------------------

    def _examine_loop(self, loop_id: str) -> None:
        assert self.plan is not None and self.graph is not None
        group = self.plan.loops[loop_id]
        if group.skipped or self._skip_mark(loop_id) is not None:
            return
        outer, at = group.iteration[:-1], group.iteration[-1]
        record = self.state.loop(loop_id, outer)
        phase = "pending" if record is None else record.loop_state
        if phase == "done":
            return
        if phase == "pending":
            if not self._enclosing_loops_running(group.loops[:-1]):
                return  # a nested loop starts only inside a running iteration of its parent
            if not all(self._is_terminal(src) for src in self.plan.after.get(loop_id, ())):
                return
            until = self._until(loop_id)
            if until is None:
                return
            if until:
                self._loop_done(loop_id, outer, at, ended_early=True)
                return
            self.state.set_group(
                GroupRecord(
                    kind="loop",
                    key=loop_id,
                    iteration=outer,
                    loop_iteration=at,
                    loop_state="running",
                    loops=group.loops[:-1],
                )
            )
            self.dirty.update(self.plan.loop_entries.get(loop_id, ()))
            if group.exits:
                return
        if not group.exits:
            # Nothing in the body can run (all skipped): record this iteration's nodes before
            # the loop moves on, or the next render would drop them unrecorded.
            for unit in self.plan.loop_entries.get(loop_id, ()):
                self._examine(unit)
        if not all(self._is_terminal(unit) for unit in group.exits):
            return
        until = self._until(loop_id)
        if until is None:
            return
        if until:
            self._loop_done(loop_id, outer, at)
        elif at + 1 >= (group.max_iterations or 1):
            if group.on_max_reached == "fail":
                self._fail(
                    ErrorInfo(
                        type="LoopError",
                        message=f"Loop `{loop_id}` reached max_iterations={group.max_iterations} "
                        "with `until` still false; raise max_iterations or use "
                        "on_max_reached='return-last'.",
                    )
                )
            else:
                self._loop_done(loop_id, outer, at)
        else:
            self.state.set_group(
                GroupRecord(
                    kind="loop",
                    key=loop_id,
                    iteration=outer,
                    loop_iteration=at + 1,
                    loop_state="running",
                    loops=group.loops[:-1],
                )
            )
            self.need_render = True

    def _until(self, loop_id: str) -> bool | None:
        assert self.plan is not None and self.graph is not None
        group = self.plan.loops[loop_id]
        if group.until is not None:
            return group.until
        until = self.graph.loop_elements[loop_id].until
        assert callable(until)
        ctx = Context(
            run_id=self.run_id,
            source=self.view,
            input_decode=input_decoder(self.definition, self.input_raw),
        )
        ctx.seal()
        try:
            return bool(until(ctx))
        except Exception as exc:
            self._fail(
                ErrorInfo(
                    type=type(exc).__name__,
                    message=f"The until of loop `{loop_id}` raised {error_text(exc)}",
                )
            )
            return None

    def _loop_done(
        self, loop_id: str, outer: tuple[int, ...], at: int, *, ended_early: bool = False
    ) -> None:
        assert self.plan is not None
        group = self.plan.loops[loop_id]
        self.state.set_group(
            GroupRecord(
                kind="loop",
                key=loop_id,
                iteration=outer,
                loop_iteration=at,
                loop_state="done",
                loops=group.loops[:-1],
            )
        )
        if ended_early:  # `until` held before the first iteration: the body never runs
            for node in self.plan.graph.nodes:
                if loop_id in node.loops and (node.id, node.iteration) not in self.state.nodes:
                    self._skip(node, "loop-ended")
            for inner_id, inner in self.plan.loops.items():
                if loop_id in inner.loops[:-1]:  # nested loops end with it, never started
                    self.state.set_group(
                        GroupRecord(
                            kind="loop",
                            key=inner_id,
                            iteration=inner.iteration[:-1],
                            loop_iteration=inner.iteration[-1],
                            loop_state="done",
                            loops=inner.loops[:-1],
                        )
                    )
        self._terminal(loop_id)

    def _enclosing_loops_running(self, loops: tuple[str, ...]) -> bool:
        assert self.plan is not None
        for loop_id in loops:
            record = self.state.loop(loop_id, self.plan.loops[loop_id].iteration[:-1])
            if record is None or record.loop_state != "running":
                return False
        return True

    # -- resume checks ------------------------------------------------------------------------

    def _verify(self, old: Graph | None) -> None:
        """On resume: refuse outputs that no longer decode and incompatible source changes."""
        graph = self.graph
        if graph is None or self.failure is not None:
            return
        for node in graph.nodes:
            raw = self.state.outputs.get((node.id, node.iteration))
            if raw is None:
                continue
            try:
                decode_value(raw, self.view.types.get(node.id))
            except msgspec.ValidationError as exc:
                self._release()
                raise OutputTypeChangedError(
                    f"The committed output of `{node.id}` no longer decodes into "
                    f"`{node.output_type}` ({exc}); restore the old type or start a new run."
                ) from None
        ref = self.state.run.definition
        current = source_hash(ref.path) if ref is not None else None
        if ref is None or old is None or current is None or current == ref.source_hash:
            return
        changed = []
        for node in old.nodes:
            record = self.state.nodes.get((node.id, node.iteration))
            if record is None or record.state != "finished":
                continue
            new = graph.by_id.get(node.id)
            if new is None:
                changed.append(f"`{node.id}` is no longer mounted")
            elif (new.kind, new.output_type) != (node.kind, node.output_type):
                changed.append(
                    f"`{node.id}` was {node.kind} -> {node.output_type}, now "
                    f"{new.kind} -> {new.output_type}"
                )
        if changed and not self.accept_change:
            self._release()
            raise WorkflowChangedError(
                f"The workflow source of run `{self.run_id}` changed and finished nodes no "
                f"longer match: {'; '.join(changed)}; restore the source, or pass "
                "--accept-workflow-change."
            )
        self.state.update_run(definition=msgspec.structs.replace(ref, source_hash=current))
        self.state.event(
            "workflow.changed",
            old_hash=ref.source_hash,
            new_hash=current,
            changed=changed or None,
            accepted=bool(changed) or None,
        )

    def _release(self, *, quietly: bool = False) -> None:
        """Give the lease back without changing anything else (once)."""
        if self.released:
            return
        self.state.take_batch()
        self._stop_watch()
        try:
            self.store.commit(self.run_id, Batch(release_lease=True), token=self.token)
        except Exception:
            if not quietly:
                raise
        self.released = True

    # -- crash recovery -----------------------------------------------------------------------

    def _recover(self) -> None:
        """Attempts cut off by a dead owner: recorded `interrupted`; the node runs again."""
        ended = {(a.node_id, a.iteration, a.number) for a in self._recover_attempts}
        for key, record in list(self.state.nodes.items()):
            if record.state != "in-progress":
                continue
            if record.attempts and (*key, record.attempts) not in ended:
                # Its attempt never got an end record: the owner died while it ran.
                self.state.set_attempt(
                    key,
                    AttemptRecord(
                        node_id=key[0],
                        iteration=key[1],
                        number=record.attempts,
                        started_at=record.attempt_started_at or record.started_at or now_iso(),
                        ended_at=now_iso(),
                        outcome="interrupted",
                        error="the process running it died",
                    ),
                )
                self.state.event("node.interrupted", key[0], key[1], attempt=record.attempts)
                record = self.state.update_node(key, interrupted=record.interrupted + 1)
            if record.interrupted >= 3:
                message = f"the process died {record.interrupted} times running `{key[0]}`"
                self._set(key, "failed", error=message)
                self.state.event("node.failed", key[0], key[1], error=message)
                node = self.graph.by_id.get(key[0]) if self.graph else None
                if node is not None and node.props.get("continue_on_fail"):
                    self._terminal(key[0])
                else:
                    self._fail(ErrorInfo(type="ProcessDied", message=message, node_id=key[0]))
            else:
                self._set(key, "pending")
                self.dirty.add(key[0])

    def _interrupt(self) -> None:
        """SIGINT/SIGTERM: in-flight attempts become `interrupted`, the lease is released."""
        self._abandon("interrupted", "interrupted by a signal", state="pending")
        for key in list(self.timers) + list(self.retry_ready):
            self._set(key, "pending")
        self.state.event("run.interrupted", pid=os.getpid())
        self._stop_watch()
        self._commit(release=True)

    def _abandon(self, outcome: Any, error: str, *, state: Any) -> None:
        """Give up on in-flight attempts: recorded with ``outcome``; late results dropped."""
        for key, attempt in list(self.inflight.items()):
            attempt.settled = True
            if attempt.timer is not None:
                attempt.timer.cancel()
            ms = round((time.perf_counter() - attempt.started) * 1000, 3)
            self._end_attempt(attempt, outcome, ms, error)
            self._set(key, state, reason=None if state == "pending" else outcome)
            self.state.event(f"node.{outcome}", key[0], key[1], attempt=attempt.number)
        self.inflight.clear()
        self.running_total = 0
        self.running_in = {}

    # -- the end ------------------------------------------------------------------------------

    def _conclude(self) -> bool:
        """Nothing runs: finish, fail, cancel or park. False when there is more to do."""
        assert self.plan is not None or self.failure is not None
        if self.failure is None and not self.cancelling and self.plan is not None:
            self.dirty = set(self.plan.units)  # one full look before giving up on anything
            self._settle()
            if self.inflight or self.timers or self.retry_ready:
                return False
        if self.cancelling:
            self._close("cancelled", reason="cancelled")
            return True
        if self.failure is not None:
            self._close("failed", reason="run-failed")
            return True
        assert self.plan is not None and self.graph is not None
        waiting = [
            n
            for n in self.graph.nodes
            if (rec := self.state.nodes.get((n.id, n.iteration))) is not None
            and rec.state in ("waiting-approval", "waiting-signal")
        ]
        if waiting:
            kinds = {n.kind for n in waiting}
            status = "waiting-approval" if "approval" in kinds else "waiting-signal"
            self.state.update_run(status=status, updated_at=now_iso())
            self.state.event("run.waiting", status=status, pending=[n.id for n in waiting])
            return self._park()
        stuck = [u for u in self.plan.units if not self._is_terminal(u)]
        if not stuck:
            self.state.update_run(status="finished", updated_at=now_iso(), error=None)
            self.state.event("run.finished")
            self._stop_watch()
            self._commit(release=True)
            return True
        self.failure = _unsatisfied(self, stuck)
        self._close("failed", reason="run-failed")
        return True

    def _park(self) -> bool:
        self._stop_watch()
        parked = self._commit(release=True, expect_inbox=self.seen_inbox)
        if not parked:
            self.state.update_run(status="running")
            self._resume_watch()
        return parked

    def _close(self, status: Any, *, reason: str) -> None:
        """End the run as failed or cancelled: waiting nodes are cancelled, gates withdrawn."""
        for key, record in list(self.state.nodes.items()):
            if record.state in ("waiting-approval", "waiting-signal", "in-progress"):
                if record.state == "waiting-approval":
                    self._withdraw(key, reason)
                self._set(key, "cancelled", reason=reason)
                self.state.event("node.cancelled", key[0], key[1], reason=reason)
        for key, approval in list(self.state.approvals.items()):
            if approval.status == "requested":
                self._withdraw(key, reason)
        error = self.failure if status == "failed" else None
        self.state.update_run(status=status, updated_at=now_iso(), error=error)
        if status == "failed":
            assert error is not None
            self.state.event("run.failed", error=msgspec.to_builtins(error))
        else:
            self.state.event("run.cancelled")
        self._stop_watch()
        self._commit(release=True)

    # -- watching the run record from a thread ------------------------------------------------

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Heartbeat the lease and notice decisions/signals/cancels from other processes."""
        last_beat = time.monotonic()
        while not self._watch_stop.wait(_WATCH_EVERY):
            if self._watch_paused:
                continue
            try:
                run = self.store.get_run(self.run_id)
                if run is None:
                    continue
                if run.lease is None or run.lease.token != self.token:
                    if not self._watch_paused:
                        loop.call_soon_threadsafe(
                            self._post, ("lease-lost", f"Run `{self.run_id}` was taken over.")
                        )
                    return
                if run.inbox != self.seen_inbox:
                    loop.call_soon_threadsafe(self._post, "inbox")
                if time.monotonic() - last_beat >= HEARTBEAT_EVERY:
                    beat = msgspec.structs.replace(run.lease, heartbeat=time.time())
                    self.store.commit(self.run_id, Batch(run={"lease": beat}), token=self.token)
                    last_beat = time.monotonic()
            except LeaseLostError as exc:
                if not self._watch_paused:
                    loop.call_soon_threadsafe(self._post, ("lease-lost", str(exc)))
                return
            except RuntimeError:  # the loop closed
                return

    def _stop_watch(self) -> None:
        """Pause the watcher before the lease is released (it must not see that as theft)."""
        self._watch_paused = True

    def _resume_watch(self) -> None:
        self._watch_paused = False

    def _install_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return []
        installed: list[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._post, "stop")
                installed.append(sig)
            except (NotImplementedError, RuntimeError):
                pass
        return installed


def _message(exc: BaseException) -> str:
    """An exception's first line, without its type (the run error carries the type)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _backoff(backoff: float | tuple[float, ...] | None, failures: int) -> float:
    """Seconds before retry number ``failures``: doubling from a number, or from a list."""
    if backoff is None:
        return 0.0
    if isinstance(backoff, tuple):
        return backoff[min(failures, len(backoff)) - 1]
    return float(backoff * (2 ** (failures - 1)))


def _unsatisfied(engine: Engine, stuck: list[str]) -> ErrorInfo:
    """Name the node whose ``needs`` can never be met, and what it needs."""
    assert engine.plan is not None and engine.graph is not None
    for unit in stuck:
        node = engine.plan.node(unit)
        if node is None:
            continue
        for dep in node.needs.values():
            if engine._dep_status(dep) == "wait":
                where = "is not mounted" if dep not in engine.graph.by_id else "cannot finish"
                return ErrorInfo(
                    type="UnsatisfiedNeedsError",
                    message=f"Node `{node.id}` needs `{dep}`, which {where} and has no output, "
                    "and nothing else can run; mount it or remove it from needs.",
                    node_id=node.id,
                )
    return ErrorInfo(
        type="UnsatisfiedNeedsError",
        message=f"Nothing can run but {', '.join(f'`{u}`' for u in stuck[:5])} never became "
        "runnable; check their needs and order.",
        node_id=stuck[0],
    )
