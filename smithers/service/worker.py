"""The worker: finds runs to go on with through the store's indexes (a decision or signal
arrived while parked, a wake-up came due, the owner died or was interrupted) and resumes
each in a ``smithers resume`` child process, at most ``workers`` at once.

A short claim in the store keeps two workers from starting the same run at once; the run's
lease keeps them from executing it twice. A resume that fails to load is retried with an
exponential backoff recorded on the claim (``smithers status`` shows it), never in a loop.

A store that can claim due runs itself (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so workers on
many machines take different runs in one transaction each) is asked for exactly as many runs
as there are free slots; a store that can wait for news (PostgreSQL: LISTEN/NOTIFY) wakes the
worker as soon as another process commits one, with polling every ``poll`` seconds as the
fallback. Other stores are asked `Store.due_runs` and each run is claimed with
`Store.claim_run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import threading
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from smithers.runtime import clock
from smithers.runtime.concurrency import promote_queued
from smithers.runtime.lease import hostname, is_dead
from smithers.service.children import ChildProcess, finish_child, run_dir, start_child
from smithers.store.base import DEAD_AFTER, Batch, DueRun, Store
from smithers.store.records import Lease, RunRecord

__all__ = ["CLAIM_FOR", "ClaimingStore", "WakingStore", "Worker"]

# Seconds a claim covers the gap between finding a run and its child taking the lease: as
# long as an owner's silence before it counts as dead, so a worker killed with its claims
# delays their runs no longer than one killed with its leases. A child slower than this to
# start only meets the lease of a second one (RunLockedError: no failure).
CLAIM_FOR = 10.0
# Exit codes of `smithers resume` that mean the resume itself went as it should.
_DONE = {0: "finished", 1: "failed", 2: "cancelled", 3: "waiting", 130: "interrupted"}
# Errors that mean another process got there first: no failure, no backoff.
_NOT_FAILURES = {"RunLockedError": "locked", "RunNotFoundError": "gone"}


@runtime_checkable
class ClaimingStore(Protocol):
    """A store that finds and claims due runs in one step (PostgreSQL)."""

    def claim_due_runs(
        self,
        now: float,
        limit: int,
        *,
        hold_for: float = CLAIM_FOR,
        is_dead: Callable[[Lease], bool] | None = None,
        dead_after: float = DEAD_AFTER,
        owner: str | None = None,
    ) -> list[DueRun]:
        """Claim up to ``limit`` due runs for ``owner``, skipping runs others claimed."""


@runtime_checkable
class WakingStore(Protocol):
    """A store that can tell a waiting worker another process committed news (PostgreSQL)."""

    def wait_for_news(self, timeout: float) -> bool:
        """Block until news may have arrived or ``timeout`` passes; True on a notification."""


class Worker:
    """Resumes runs with news in child processes.

    Args:
        store: The store (this process's handle; children open their own).
        workers: The most resumes running at once.
        poll: Seconds between looks for news other processes wrote (a `poke` wakes it
            at once).
        backoff: Seconds before the first retry of a resume that failed; doubled after
            each further failure, up to ``max_backoff``.
        base_url: The service's public URL, for the signed links tasks ask for.
        on_outcome: Called with each resume's outcome (for metrics).
    """

    def __init__(
        self,
        store: Store,
        *,
        workers: int = 4,
        poll: float = 1.0,
        backoff: float = 5.0,
        max_backoff: float = 300.0,
        base_url: str | None = None,
        on_outcome: Callable[[str], None] | None = None,
    ) -> None:
        location = store.location
        if location is None:
            raise ValueError("The worker needs a store on disk; an in-memory store has no child.")
        self.store = store
        self.location = location
        self.workers = workers
        self.poll = poll
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.base_url = base_url
        self.on_outcome = on_outcome
        self.name = f"worker:{hostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.stopping = False
        self._wake: asyncio.Event | None = None
        self._running: dict[str, ChildProcess | None] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._done: set[str] = set()  # resumed during this tick: a tick resumes a run once

    # -- finding runs ---------------------------------------------------------------------------

    def due(self) -> list[RunRecord]:
        """Runs to resume now, not already resumed by this worker: parked runs with news, due
        wake-ups and dead owners (from `Store.due_runs`), then running runs nobody holds (an
        owner interrupted by a signal released its lease)."""
        promote_queued(self.store)  # queued runs whose concurrency key freed (DESIGN §14)
        limit = self.workers * 8 + 64
        found = [d.run for d in self.store.due_runs(clock.now(), limit, is_dead=is_dead)]
        seen = {r.run_id for r in found}
        found += [r for r in self.store.runs("running") if r.lease is None and r.run_id not in seen]
        return [r for r in found if r.run_id not in self._running and r.run_id not in self._done]

    def _claim(self, run: RunRecord) -> bool:
        now = clock.now()
        return self.store.claim_run(run.run_id, self.name, now=now, until=now + CLAIM_FOR)

    def _claim_due(self, store: ClaimingStore, free: int) -> list[RunRecord]:
        """Claim up to ``free`` due runs in one transaction; give back those this worker
        resumes already or (a tick) resumed once."""
        claimed = store.claim_due_runs(
            clock.now(), free, hold_for=CLAIM_FOR, is_dead=is_dead, owner=self.name
        )
        runs = []
        for due in claimed:
            run_id = due.run.run_id
            if run_id in self._running:
                continue  # its resume ends soon and releases the claim then
            if run_id in self._done:
                self.store.release_claim(run_id, self.name)
                continue
            runs.append(due.run)
        return runs

    # -- resuming -------------------------------------------------------------------------------

    async def _resume(self, run: RunRecord) -> None:
        run_id = run.run_id
        failure = None
        try:
            proc = await start_child(
                self.location, ["resume", run_id], cwd=run_dir(run), base_url=self.base_url
            )
            self._running[run_id] = proc
            if self.stopping:
                _interrupt(proc)
            child = await finish_child(proc)
            outcome = _DONE.get(child.code)
            if outcome is not None and child.code != 130 and not child.reported:
                outcome = None  # an exit code with no run document: it crashed (a traceback)
            if outcome is None and self.stopping and child.code < 0:
                outcome = "interrupted"  # stopped by our signal before it could say so
            if outcome is None:
                kind = child.error_type
                outcome = _NOT_FAILURES.get(kind or "")
                if outcome is None:
                    failure = f"{kind}: {child.error_message}" if kind else child.error_message
                    outcome = "load-failed" if child.code == 4 else "crashed"
            if outcome == "interrupted":
                # Found again by any worker at once, on this start or the next.
                self.store.commit(run_id, Batch(run={"wake_at": clock.now()}), token=None)
        except OSError as exc:  # no such working directory, no interpreter
            failure, outcome = f"cannot start `smithers resume` ({exc})", "crashed"
        finally:
            self._running.pop(run_id, None)
        self._release(run_id, failure)
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        self.poke()

    def _release(self, run_id: str, failure: str | None) -> None:
        if failure is None:
            self.store.release_claim(run_id, self.name)
            return
        claim = self.store.worker_claim(run_id)
        failures = claim.failures if claim is not None else 0
        delay = min(self.backoff * 2**failures, self.max_backoff)
        self.store.release_claim(
            run_id,
            self.name,
            failure=failure,
            failed_at=clock.now_iso(),
            retry_at=clock.now() + delay,
        )

    def _start(self, run: RunRecord, *, once: bool = False) -> None:
        self._running[run.run_id] = None
        if once:
            self._done.add(run.run_id)
        task = asyncio.get_running_loop().create_task(self._resume(run))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def start_due(self, *, once: bool = False) -> int:
        """Claim and start as many due runs as free slots allow; return how many started.

        With ``once`` (a tick) a run started is not started again in the same tick.
        """
        store = self.store
        if isinstance(store, ClaimingStore):
            free = self.workers - len(self._running)
            if self.stopping or free <= 0:
                return 0
            claimed = self._claim_due(store, free)
            for run in claimed:
                self._start(run, once=once)
            return len(claimed)
        started = 0
        for run in self.due():
            if self.stopping or len(self._running) >= self.workers:
                break
            if self._claim(run):
                self._start(run, once=once)
                started += 1
        return started

    # -- the loops ------------------------------------------------------------------------------

    def poke(self) -> None:
        """Look for news now (a decision recorded in this process)."""
        if self._wake is not None:
            self._wake.set()

    async def run_forever(self) -> None:
        """Resume runs as news arrives until `stop` is called."""
        self._wake = asyncio.Event()
        listener = self._listen(asyncio.get_running_loop())
        try:
            while not self.stopping:
                self._wake.clear()
                self.start_due()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll)
            await self.drain()
        finally:
            if listener is not None:
                await asyncio.to_thread(listener.join)

    def _listen(self, loop: asyncio.AbstractEventLoop) -> threading.Thread | None:
        """Start a thread that pokes the loop whenever the store says news may have come
        (LISTEN/NOTIFY on PostgreSQL); None when the store cannot tell."""
        store = self.store
        if not isinstance(store, WakingStore):
            return None

        def listen() -> None:
            while not self.stopping:
                # Short waits: the thread notices `stop` within a second.
                if store.wait_for_news(min(self.poll, 1.0)) and not self.stopping:
                    loop.call_soon_threadsafe(self.poke)

        thread = threading.Thread(target=listen, name="smithers-worker-listen", daemon=True)
        thread.start()
        return thread

    async def tick(self) -> int:
        """One pass: resume every run due now (``workers`` at a time) and wait for them.

        Returns:
            How many resumes were started.
        """
        self._wake = asyncio.Event()
        self._done.clear()
        total = 0
        while not self.stopping:
            total += self.start_due(once=True)
            if not self._tasks:
                break
            await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)
        await self.drain()
        return total

    def stop(self) -> None:
        """Stop starting resumes and interrupt those in flight (each records its attempts as
        interrupted and releases its run, which stays resumable)."""
        if self.stopping:
            return  # children were told once; a second SIGTERM would cut their cleanup short
        self.stopping = True
        for proc in self._running.values():
            if proc is not None:
                _interrupt(proc)
        self.poke()

    async def drain(self) -> None:
        """Wait for every resume in flight to end."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))


def _interrupt(proc: ChildProcess) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
