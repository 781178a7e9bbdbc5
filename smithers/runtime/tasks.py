"""Task steps of the engine: start an attempt (within concurrency caps), launch it, and
record its result, retry or failure."""

from __future__ import annotations

import asyncio
from typing import Any

from smithers.compiler.codec import validate_value
from smithers.compiler.graph import Node
from smithers.compiler.iterations import iteration_text
from smithers.components.nodes import Task, TaskInfo
from smithers.errors import SmithersError, ValidationError
from smithers.runtime.artifacts import artifact_putter
from smithers.runtime.executor import Attempt, Done, error_text, launch, trace_of
from smithers.runtime.lease import now_iso
from smithers.runtime.links import task_link_maker
from smithers.runtime.scheduler import Scheduler
from smithers.store.base import NodeKey
from smithers.store.records import AttemptRecord, ErrorInfo

__all__ = ["TaskSteps"]


class TaskSteps(Scheduler):
    """Starting, launching and settling task attempts."""

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
                its = iteration_text(attempt.iteration)
                kwargs["task"] = TaskInfo(
                    run_id=self.run_id,
                    node_id=attempt.node_id,
                    iteration=attempt.iteration,
                    attempt=attempt.number,
                    idempotency_key=f"{self.run_id}/{attempt.node_id}" + (f"@{its}" if its else ""),
                    link_maker=task_link_maker(self.store, self.run_id),
                    artifact_putter=artifact_putter(self.store, self.run_id),
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
