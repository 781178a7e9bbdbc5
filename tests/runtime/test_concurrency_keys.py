"""Concurrency keys: a second run on a busy key is queued (or refused, writing nothing), queued
runs start in order when the key frees, and runs on different keys go on at once."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

import smithers
from smithers import Approval, ApprovalRequest, Context, Sequence, Task, Workflow
from smithers.errors import ConcurrencyLimitError, DefinitionError
from smithers.runtime.concurrency import promote_queued, queued_behind
from smithers.store import Store
from tests.runtime.helpers import run


class Change(msgspec.Struct):
    repo: str


def _flow(on_limit: Any = "queue", limit: int = 1) -> smithers.WorkflowDefinition:
    @smithers.smithers(
        input=Change,
        concurrency_key=lambda change: change.repo,
        concurrency_limit=limit,
        on_limit=on_limit,
    )
    def change(ctx: Context) -> Workflow:
        return Workflow(
            Sequence(
                Approval(id="gate", request=ApprovalRequest(title="Apply?")),
                Task(id="apply", output=str, value="done"),
            ),
            name="change",
        )

    return change


QUEUE = _flow()
REJECT = _flow("reject")
TWO = _flow(limit=2)


def _approve(store: Store, run_id: str) -> None:
    smithers.approve(run_id, "gate", store=store, by="ann")
    smithers.resume(run_id, store=store)


def test_a_second_run_on_a_busy_key_queues_and_starts_when_it_frees(store: Store) -> None:
    """b and c queue behind a in order; ending a starts b (not c); ending b starts c."""
    flow = QUEUE
    assert run(flow, store, run_id="a", input={"repo": "x"}).status == "waiting-approval"
    assert run(flow, store, run_id="b", input={"repo": "x"}).status == "queued"
    assert run(flow, store, run_id="c", input={"repo": "x"}).status == "queued"
    assert (queued_behind(store, "b"), queued_behind(store, "c")) == ("a", "b")
    assert smithers.resume("b", store=store).status == "queued"  # no jumping the queue
    _approve(store, "a")
    statuses = {r: store.get_run(r).status for r in "abc"}  # type: ignore[union-attr]
    assert statuses == {"a": "finished", "b": "waiting-approval", "c": "queued"}
    _approve(store, "b")
    assert store.get_run("c").status == "waiting-approval"  # type: ignore[union-attr]
    types = [e.type for e in store.events(run_id="c")]
    assert types[:2] == ["run.queued", "run.started"]


def test_reject_refuses_a_second_run_and_writes_nothing(store: Store) -> None:
    """on_limit="reject" raises ConcurrencyLimitError naming the run ahead; no run is made."""
    flow = REJECT
    run(flow, store, run_id="a", input={"repo": "x"})
    seq = store.last_seq()
    with pytest.raises(ConcurrencyLimitError, match="concurrency key 'x' already has 1 active"):
        run(flow, store, run_id="b", input={"repo": "x"})
    assert store.get_run("b") is None
    assert store.last_seq() == seq


def test_different_keys_and_a_higher_limit_run_at_once(store: Store) -> None:
    """Runs on other keys are never held back; a limit of 2 admits two runs per key."""
    flow = TWO
    for run_id, repo in [("a", "x"), ("b", "y"), ("c", "x")]:
        assert run(flow, store, run_id=run_id, input={"repo": repo}).status == "waiting-approval"
    assert run(flow, store, run_id="d", input={"repo": "x"}).status == "queued"
    assert promote_queued(store) == []  # x is still full


def test_invalid_concurrency_options_are_definition_errors() -> None:
    """A non-callable key, a limit below one or an unknown on_limit is refused at decoration."""
    with pytest.raises(DefinitionError, match="concurrency_limit=0"):
        smithers.smithers(concurrency_limit=0)
    with pytest.raises(DefinitionError, match="on_limit='wait'"):
        smithers.smithers(on_limit="wait")  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="concurrency_key='repo'"):
        smithers.smithers(concurrency_key="repo")  # type: ignore[arg-type]


def test_cancelling_the_run_ahead_promotes_the_next_for_the_worker(store: Store) -> None:
    """Cancel frees the key: the queued run turns running with no owner, and a resume (what
    the worker starts) drives it to its gate."""
    run(QUEUE, store, run_id="a", input={"repo": "x"})
    run(QUEUE, store, run_id="b", input={"repo": "x"})
    smithers.cancel("a", store=store)
    promoted = store.get_run("b")
    assert promoted is not None
    assert (promoted.status, promoted.lease) == ("running", None)
    assert smithers.resume("b", store=store).status == "waiting-approval"


def test_the_worker_pass_promotes_runs_whose_ender_never_did(store: Store) -> None:
    """promote_queued() (each worker pass) starts a queued run whose run ahead ended without
    promoting it (its process died after the final commit)."""
    from smithers.store.base import Batch

    run(QUEUE, store, run_id="a", input={"repo": "x"})
    run(QUEUE, store, run_id="b", input={"repo": "x"})
    store.commit("a", Batch(run={"status": "failed", "lease": None}), token=None)
    assert promote_queued(store) == ["b"]
    assert promote_queued(store) == []


def test_two_starts_that_both_pass_the_early_check_still_share_one_slot(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If both starts read a free key at once, the store's check inside the creating
    transaction queues the second (or refuses it with reject)."""
    import smithers.runtime.api as api

    monkeypatch.setattr(api, "admit", lambda *args: None)  # as if both looked at once
    assert run(QUEUE, store, run_id="a", input={"repo": "x"}).status == "waiting-approval"
    assert run(QUEUE, store, run_id="b", input={"repo": "x"}).status == "queued"
    assert queued_behind(store, "b") == "a"
    with pytest.raises(ConcurrencyLimitError, match="when run b ends"):
        run(REJECT, store, run_id="c", input={"repo": "x"})
