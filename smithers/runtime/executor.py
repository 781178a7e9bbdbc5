"""Running task attempts: sync callables in worker threads, async ones on the event loop.

A sync attempt that exceeds its timeout is abandoned: Python cannot stop a thread, so it runs
on in its (daemon) thread and its late result is discarded; a retry may overlap it. Async
attempts are cancelled at their timeout.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import inspect
import queue
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import attrs

from smithers.components.nodes import Task

__all__ = ["Attempt", "Done", "WorkerPool", "error_text", "launch", "trace_of"]


@attrs.define(eq=False)
class Attempt:
    """One attempt of a task in flight."""

    node_id: str
    iteration: tuple[int, ...]
    number: int
    element: Task
    started_at: str
    started: float = attrs.field(factory=time.perf_counter)
    unmounted: bool = False
    settled: bool = False  # a result (or the timeout) was taken; later news is dropped
    timer: asyncio.TimerHandle | None = None

    @property
    def key(self) -> tuple[str, tuple[int, ...]]:
        return (self.node_id, self.iteration)


@attrs.frozen
class Done:
    """An attempt's outcome, posted to the engine's queue."""

    attempt: Attempt
    ok: bool
    value: Any
    seconds: float
    timed_out: bool = False


class WorkerPool:
    """Daemon worker threads, started on demand and reused; an abandoned thread keeps running
    its job, so a new one is started when no thread is idle."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads = 0

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
            else:
                self._threads += 1
                # Not threading.Thread: its start() blocks until the thread runs (~1 ms here),
                # and these threads must never keep the interpreter alive anyway.
                _thread.start_new_thread(self._work, ())
        self._jobs.put(job)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job()
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        """Let idle threads exit; busy (abandoned) ones exit after their job."""
        with self._lock:
            count, self._threads = self._threads, 0
        for _ in range(count):
            self._jobs.put(None)


def error_text(exc: BaseException) -> str:
    """The one-line form of an exception for records and events."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_TASKS: set[asyncio.Future[None]] = set()


def launch(
    attempt: Attempt,
    kwargs: dict[str, Any],
    *,
    loop: asyncio.AbstractEventLoop,
    post: Callable[[Done], None],
    pool: WorkerPool,
) -> None:
    """Start an attempt; its `Done` is posted (on the loop's thread) when it ends."""
    element = attempt.element
    run = element.run
    if run is None:
        post(Done(attempt, True, element.value, 0.0))
        return
    timeout = element.timeout
    if element.is_async:
        # The loop keeps only weak references to tasks: hold this one until it is done.
        task = asyncio.ensure_future(_run_async(attempt, run, kwargs, timeout, post))
        _TASKS.add(task)
        task.add_done_callback(_TASKS.discard)
        return

    def deliver(done: Done) -> None:
        # The loop may be gone: the run ended while this (abandoned) thread was busy.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(post, done)

    def job() -> None:
        start = time.perf_counter()
        try:
            value = run(**kwargs)
        except BaseException as exc:  # a task's failure is data, not a crash of the runtime
            deliver(Done(attempt, False, exc, time.perf_counter() - start))
            return
        if inspect.isawaitable(value):
            # A sync callable that returned an awaitable (e.g. a partial of an async function).
            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(
                    _await_then_post(attempt, value, start, post), loop
                )
            return
        deliver(Done(attempt, True, value, time.perf_counter() - start))

    pool.submit(job)
    if timeout is not None:

        def expire() -> None:
            post(
                Done(
                    attempt,
                    False,
                    TimeoutError(f"timed out after {timeout:g}s"),
                    timeout,
                    timed_out=True,
                )
            )

        attempt.timer = loop.call_later(timeout, expire)


async def _await_then_post(
    attempt: Attempt, value: Any, start: float, post: Callable[[Done], None]
) -> None:
    try:
        result = await value
    except Exception as exc:
        post(Done(attempt, False, exc, time.perf_counter() - start))
        return
    post(Done(attempt, True, result, time.perf_counter() - start))


async def _run_async(
    attempt: Attempt,
    run: Callable[..., Any],
    kwargs: dict[str, Any],
    timeout: float | None,
    post: Callable[[Done], None],
) -> None:
    start = time.perf_counter()
    try:
        coro = run(**kwargs)
        value = await (asyncio.wait_for(coro, timeout) if timeout is not None else coro)
    except TimeoutError:
        post(
            Done(
                attempt,
                False,
                TimeoutError(f"timed out after {timeout:g}s"),
                time.perf_counter() - start,
                timed_out=True,
            )
        )
        return
    except Exception as exc:
        post(Done(attempt, False, exc, time.perf_counter() - start))
        return
    post(Done(attempt, True, value, time.perf_counter() - start))


def trace_of(exc: BaseException) -> str:
    """The last frames of an exception's traceback (kept in the attempt record)."""
    lines = traceback.format_exception(exc)
    return "".join(lines[-12:])[-4000:]
