"""`Committer`: group commit for the runs one event loop drives over one store.

When several engines share a loop and a store (``asyncio.gather`` of `arun` calls, a worker
resuming many runs), each engine's step commit is queued and flushed one loop iteration
later together with every other engine's, in ONE durable write transaction: one fsync for
many runs' steps. Each run's commit is still checked and applied on its own (its lease token,
its ``expect_inbox``) in a nested transaction, so one run's lost lease or failing record never
fails another's. An engine awaits its own result before it launches anything its commit
started, so an output is durable before anything that depends on it starts. A lone engine
commits at once, as before: no added latency for a single run.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from smithers.store.base import Batch, CommitResult, Store
from smithers.store.records import RunRecord

__all__ = ["Committer", "GroupStore", "committer_for"]


@runtime_checkable
class GroupStore(Protocol):
    """A store that can commit several runs' batches in one durable transaction."""

    def commit_many(
        self, items: Sequence[tuple[str | RunRecord, Batch, str | None]]
    ) -> list[CommitResult | RunRecord | Exception]:
        """One result (or the exception it raised) per item, in order; an item whose first
        element is a run record creates that run."""


_Pending = tuple[str | RunRecord, Batch, str | None, "asyncio.Future[Any]"]


class Committer:
    """Queues the step commits of the engines on one loop and store; flushes them together."""

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.loop = loop
        self.engines = 0  # engines driving runs through this committer right now
        self._grouping = isinstance(store, GroupStore)
        self._pending: list[_Pending] = []

    def enter(self) -> None:
        """An engine starts driving a run through this committer."""
        self.engines += 1

    def leave(self) -> None:
        """An engine is done; the last one out drops the committer."""
        self.engines -= 1
        if self.engines <= 0 and not self._pending:
            by_store = _COMMITTERS.get(self.loop)
            if by_store is not None and by_store.get(id(self.store)) is self:
                del by_store[id(self.store)]

    async def commit(self, run_id: str, batch: Batch, token: str | None) -> CommitResult:
        """Commit ``batch`` for ``run_id`` (with several engines, in the next group).

        Raises:
            LeaseLostError: When ``token`` no longer owns the run (this run only).
            StoreError: When the store fails the group's transaction.
        """
        if self.engines <= 1 or not self._grouping:
            return self.store.commit(run_id, batch, token=token)
        result: CommitResult = await self._queue(run_id, batch, token)
        return result

    async def create(self, run: RunRecord, batch: Batch) -> RunRecord:
        """`Store.create_run`, in the next group when engines are driving other runs.

        Raises:
            InputError: When the run id is taken or invalid (this run only).
        """
        if self.engines <= 0 or not self._grouping:
            return self.store.create_run(run, batch)
        created: RunRecord = await self._queue(run, batch, None)
        return created

    def _queue(self, what: str | RunRecord, batch: Batch, token: str | None) -> Any:
        future: asyncio.Future[Any] = self.loop.create_future()
        if not self._pending:
            # One iteration later: every engine made ready in this iteration joins the group.
            self.loop.call_soon(self._flush)
        self._pending.append((what, batch, token, future))
        return future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        assert isinstance(self.store, GroupStore)
        try:
            results = self.store.commit_many([(w, b, t) for w, b, t, _ in pending])
        except Exception as exc:  # one run alone, or a store fault that failed the group
            for *_, future in pending:
                if not future.done():
                    future.set_exception(exc)
            return
        for (*_, future), result in zip(pending, results, strict=True):
            if future.done():  # its engine was cancelled meanwhile
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


_COMMITTERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, Committer]] = (
    weakref.WeakKeyDictionary()
)


def committer_for(store: Store) -> Committer:
    """The running loop's committer for ``store`` (made on first use)."""
    loop = asyncio.get_running_loop()
    by_store = _COMMITTERS.setdefault(loop, {})
    found = by_store.get(id(store))
    if found is None or found.store is not store:
        found = by_store[id(store)] = Committer(store, loop)
    return found
