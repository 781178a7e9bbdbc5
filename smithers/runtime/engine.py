"""`Engine`: the render -> schedule -> execute -> commit loop of one executing run.

Each step: absorb what finished, re-render only if the build function read something that
changed, examine only the units that depend on what changed, then commit everything that
happened (results, starts, events) in one write transaction, and only then launch the tasks
it started. A commit that finishes a node therefore also records the start of the nodes it
made runnable.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from typing import Any

import msgspec

from smithers.compiler.codec import encode_frame
from smithers.compiler.graph import Graph
from smithers.errors import LeaseLostError, SmithersError, StoreError
from smithers.runtime import clock
from smithers.runtime.committer import committer_for
from smithers.runtime.executor import Done
from smithers.runtime.gates import GateSteps
from smithers.runtime.lease import HEARTBEAT_EVERY, now_iso
from smithers.runtime.loops import LoopSteps
from smithers.runtime.plan import Plan
from smithers.runtime.recovery import RecoverySteps
from smithers.runtime.scheduler import _WATCH_EVERY, EventSink, _Stop
from smithers.runtime.state import RunState
from smithers.runtime.tasks import TaskSteps
from smithers.runtime.timers import TimeSteps
from smithers.runtime.view import render_run
from smithers.store.base import Batch
from smithers.store.records import ErrorInfo

__all__ = ["Engine", "EventSink"]

_YIELD_EVERY = 32  # steps at most between trips through the event loop


class Engine(TaskSteps, GateSteps, LoopSteps, RecoverySteps, TimeSteps):
    """Executes one run while holding its lease; `drive` returns when it finishes, fails, is
    cancelled or parks waiting for a person or a signal."""

    async def drive(self) -> RunState:
        """Run until the run finishes, fails, is cancelled or parks; return the final state.

        Raises:
            KeyboardInterrupt: After SIGINT/SIGTERM, once in-flight attempts are recorded as
                interrupted and the lease is released (the run stays resumable).
            LeaseLostError: When another process took the run over.
        """
        loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        # The watcher's first look is due after _WATCH_EVERY anyway: a run that ends sooner
        # never pays for starting (and joining) a thread.
        watch_timer = loop.call_later(_WATCH_EVERY, self._start_watcher, loop, clock.monotonic())
        installed = self._install_signal_handlers(loop)
        committer = self.committer = committer_for(self.store)
        committer.enter()
        # The first step goes through the loop: runs gathered beside this one get to start,
        # and from then on their steps share commits.
        self._unyielded = _YIELD_EVERY
        try:
            old_graph = self.graph
            self._render()
            if self.verify_resume:
                self._verify(old_graph)
                self.state.update_run(status="running", updated_at=now_iso())
                self.state.event("run.resumed", pid=self.lease.pid, host=self.lease.host)
            self._recover()
            self._apply_arrivals()
            self._apply_time()
            while True:
                await self._settle()
                if not self.inflight and not self.timers and not self.retry_ready:
                    if await self._conclude():
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
            committer.leave()
            watch_timer.cancel()
            self._watch_stop.set()
            if self._watcher is not None:
                self._watcher.join()
            for sig in installed:
                loop.remove_signal_handler(sig)
            for timer in self.timers.values():
                timer.cancel()
            self.pool.shutdown()

    async def _settle(self) -> None:
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
            await self._acommit()
            self._launch()
            if self.plan is None or not (
                self.dirty or self.need_render or self.state.has_changes()
            ):
                return

    async def _next(self) -> list[Any]:
        queue = self._queue
        assert queue is not None
        if queue.empty() or self._unyielded >= _YIELD_EVERY:
            items = [await queue.get()]
            await asyncio.sleep(0)  # let results already handed over by threads join this step
            self._unyielded = 0
        else:
            # Something is already here (a value task's result): take it without a trip
            # through the loop, but still yield now and then for signals, timers and threads.
            items = [queue.get_nowait()]
            self._unyielded += 1
        while not queue.empty():
            items.append(queue.get_nowait())
        return items

    def _absorb(self, item: Any) -> None:
        if isinstance(item, Done):
            self._finish_attempt(item)
        elif item == "inbox":
            self._reload_inbox()
        elif item == "time":
            self._apply_time()
        elif item == "stop":
            raise _Stop
        elif isinstance(item, tuple) and item[0] == "retry":
            self.timers.pop(item[1], None)
            self.retry_ready.add(item[1])
            self.dirty.add(item[1][0])
        elif isinstance(item, tuple) and item[0] == "lease-lost":
            raise LeaseLostError(item[1])
        elif isinstance(item, tuple) and item[0] == "store-fault":
            raise item[1]

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
                "waiting-timer",
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

    async def _conclude(self) -> bool:
        """Nothing runs: finish, fail, cancel or park. False when there is more to do."""
        assert self.plan is not None or self.failure is not None
        if self.failure is None and not self.cancelling and self.plan is not None:
            self._apply_time()
            if not all(self._is_terminal(u) for u in self.plan.units):
                self.dirty = set(self.plan.units)  # one full look before giving up on anything
                await self._settle()
                if self.inflight or self.timers or self.retry_ready:
                    return False
        if self.cancelling:
            await self._close("cancelled", reason="cancelled")
            return True
        if self.failure is not None:
            await self._close("failed", reason="run-failed")
            return True
        assert self.plan is not None and self.graph is not None
        waiting = [
            n
            for n in self.graph.nodes
            if (rec := self.state.nodes.get((n.id, n.iteration))) is not None
            and rec.state in ("waiting-approval", "waiting-signal", "waiting-timer")
        ]
        if waiting:
            kinds = {n.kind for n in waiting}
            status = (
                "waiting-approval"
                if "approval" in kinds
                else "waiting-signal"
                if "signal" in kinds
                else "waiting-timer"
            )
            # The worker finds a parked run through its next wake-up (timer, deadline...).
            self.state.update_run(status=status, updated_at=now_iso(), wake_at=self.next_wake)
            self.state.event("run.waiting", status=status, pending=[n.id for n in waiting])
            return await self._park()
        stuck = [u for u in self.plan.units if not self._is_terminal(u)]
        if not stuck:
            self.state.update_run(status="finished", updated_at=now_iso(), error=None)
            self.state.event("run.finished")
            self._stop_watch()
            await self._acommit(release=True)
            return True
        self.failure = _unsatisfied(self, stuck)
        await self._close("failed", reason="run-failed")
        return True

    async def _park(self) -> bool:
        self._stop_watch()
        parked = await self._acommit(release=True, expect_inbox=self.seen_inbox)
        if not parked:
            self.state.update_run(status="running")
            self._resume_watch()
        return parked

    async def _close(self, status: Any, *, reason: str) -> None:
        """End the run as failed or cancelled: waiting nodes are cancelled, gates withdrawn."""
        for key, record in list(self.state.nodes.items()):
            if record.state in (
                "waiting-approval",
                "waiting-signal",
                "in-progress",
                "waiting-timer",
            ):
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
        await self._acommit(release=True)

    def _start_watcher(self, loop: asyncio.AbstractEventLoop, last_beat: float) -> None:
        self._watcher = threading.Thread(
            target=self._watch, args=(loop, last_beat), name="smithers-watch", daemon=True
        )
        self._watcher.start()

    def _watch(self, loop: asyncio.AbstractEventLoop, last_beat: float) -> None:
        """Heartbeat the lease and notice decisions/signals/cancels from other processes."""
        posted_wake: float | None = None
        wait = 0.0  # started _WATCH_EVERY after the drive began: look at once
        while not self._watch_stop.wait(wait):
            wait = _WATCH_EVERY
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
                wake = self.next_wake
                if wake is not None and wake != posted_wake and clock.now() >= wake:
                    posted_wake = wake  # once per wake-up: _apply_time sets the next one
                    loop.call_soon_threadsafe(self._post, "time")
                if clock.monotonic() - last_beat >= HEARTBEAT_EVERY:
                    beat = msgspec.structs.replace(run.lease, heartbeat=clock.now())
                    self.store.commit(self.run_id, Batch(run={"lease": beat}), token=self.token)
                    last_beat = clock.monotonic()
            except LeaseLostError as exc:
                if not self._watch_paused:
                    loop.call_soon_threadsafe(self._post, ("lease-lost", str(exc)))
                return
            except StoreError as exc:  # a damaged store or a full disk: stop the run with it
                if not self._watch_paused:
                    loop.call_soon_threadsafe(self._post, ("store-fault", exc))
                return
            except RuntimeError:  # the loop closed
                return

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
