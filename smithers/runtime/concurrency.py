"""Concurrency keys (DESIGN §14): at most ``concurrency_limit`` active runs per key; a run
over the limit is ``queued`` (or refused), and queued runs start in creation order when the
key frees, started by the worker or by the process that ends the run ahead.

`admit` is the early check (for its message); the store's creating transaction checks the
slots again (`store.base.check_slot`), so two starts at the same instant cannot both run.
"""

from __future__ import annotations

from typing import Any

from smithers.components.definition import WorkflowDefinition
from smithers.errors import ConcurrencyLimitError, InputError
from smithers.runtime.lease import now_iso
from smithers.store.base import Batch, Store
from smithers.store.records import TERMINAL_RUN_STATUSES, NewEvent, RunRecord

__all__ = ["admit", "key_of", "promote_queued", "queued_behind", "runs_with_key"]

_OPEN = ("queued", "running", "waiting-approval", "waiting-signal", "waiting-timer")


def key_of(definition: WorkflowDefinition, input_value: Any) -> str | None:
    """The run's concurrency key (``str`` of what ``concurrency_key(input)`` returns).

    Raises:
        InputError: When the key function raises.
    """
    if definition.concurrency_key is None:
        return None
    try:
        return str(definition.concurrency_key(input_value))
    except Exception as exc:
        raise InputError(
            f"concurrency_key of `{definition.name}` raised {type(exc).__name__}: {exc}; make "
            "it a function of the run's input that always returns a key."
        ) from None


def runs_with_key(store: Store, key: str) -> list[RunRecord]:
    """The unfinished runs with concurrency key ``key``, in creation order."""
    found = [r for status in _OPEN for r in store.runs(status) if r.concurrency_key == key]
    return sorted(found, key=lambda r: r.key)


def admit(store: Store, definition: WorkflowDefinition, key: str, run_id: str) -> str | None:
    """None when a new run on ``key`` may start now, else the run it queues behind.

    Raises:
        ConcurrencyLimitError: When the limit is reached and ``on_limit`` is ``"reject"``.
    """
    open_runs = runs_with_key(store, key)
    active = [r for r in open_runs if r.status != "queued"]
    if len(active) < definition.concurrency_limit and len(active) == len(open_runs):
        return None
    ahead = open_runs[-1].run_id
    if definition.on_limit == "reject":
        raise ConcurrencyLimitError(
            f"Run {run_id} of `{definition.name}` was refused: concurrency key {key!r} already "
            f"has {len(active)} active run(s) (limit {definition.concurrency_limit}, run "
            f"{active[0].run_id if active else ahead} first); start it again when that ends."
        )
    return ahead


def queued_behind(store: Store, run_id: str) -> str | None:
    """The run a queued run waits behind, from its ``run.queued`` event."""
    for event in store.events(run_id=run_id):
        if event.type == "run.queued":
            return str(event.data.get("behind"))
    return None


def promote_queued(store: Store, key: str | None = None) -> list[str]:
    """Start queued runs whose key has a free slot, oldest first: each becomes ``running``
    with no owner (a worker or `resume` takes it from there).

    Args:
        store: The store.
        key: Only this key, or every key with queued runs.

    Returns:
        The promoted run ids, in order.
    """
    keys = [key] if key is not None else _queued_keys(store)
    promoted: list[str] = []
    for each in keys:
        open_runs = runs_with_key(store, each)
        free = max((r.concurrency_limit for r in open_runs), default=1) - sum(
            1 for r in open_runs if r.status != "queued"
        )
        for run in [r for r in open_runs if r.status == "queued"][: max(free, 0)]:
            now = now_iso()
            event = NewEvent(type="run.started", at=now, data={"workflow": run.workflow})
            batch = Batch(
                run={"status": "running", "updated_at": now},
                events=[event],
                expect_inbox=run.inbox,  # a cancel request since we looked: leave it be
            )
            result = store.commit(run.run_id, batch, token=None)
            if result.applied and result.run.status not in TERMINAL_RUN_STATUSES:
                promoted.append(run.run_id)
    return promoted


def _queued_keys(store: Store) -> list[str]:
    keys = {r.concurrency_key for r in store.runs("queued") if r.concurrency_key is not None}
    return sorted(keys)
