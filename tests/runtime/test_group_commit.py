"""Group commit in the runtime: runs driven together on one loop and store share durable
transactions, and each keeps its own fencing and its own failures."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import smithers
from smithers import Context, Sequence, Task, Workflow
from smithers.errors import LeaseLostError, StoreError
from smithers.runtime.committer import Committer
from smithers.runtime.lease import new_lease, now_iso
from smithers.store import Batch, CommitResult, KVStore, RunRecord
from smithers.store.records import NewEvent


def chain(n: int, name: str = "chain") -> smithers.WorkflowDefinition:
    """A chain of ``n`` value tasks."""

    @smithers.smithers
    def build(ctx: Context) -> Workflow:
        return Workflow(
            Sequence(*[Task(id=f"t{i}", output=int, value=i) for i in range(n)]), name=name
        )

    return build


def count_groups(store: KVStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the size of every `commit_many` call the store receives."""
    sizes: list[int] = []
    inner = store.commit_many

    def commit_many(items: Any) -> Any:
        sizes.append(len(items))
        return inner(items)

    monkeypatch.setattr(store, "commit_many", commit_many)
    return sizes


def owned_run(store: KVStore, run_id: str) -> str:
    """Create a running run owned by a fresh lease; return its token."""
    lease = new_lease()
    now = now_iso()
    store.create_run(
        RunRecord(
            run_id=run_id,
            workflow="wf",
            status="running",
            created_at=now,
            updated_at=now,
            lease=lease,
        ),
        Batch(),
    )
    return lease.token


def started(node_id: str) -> Batch:
    """A step batch: one event."""
    return Batch(events=[NewEvent(type="node.started", node_id=node_id, at=now_iso())])


def test_runs_gathered_on_one_store_share_transactions_and_all_finish(
    store: KVStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 runs of a 10-node chain under gather finish with every output, in shared commits."""
    sizes = count_groups(store, monkeypatch)
    flow = chain(10)

    async def main() -> list[Any]:
        return await asyncio.gather(
            *[smithers.arun(flow, store=store, run_id=f"r{i}") for i in range(20)]
        )

    results = asyncio.run(main())
    assert [r.status for r in results] == ["finished"] * 20
    assert all(r.outputs == {f"t{i}": i for i in range(10)} for r in results)
    assert max(sizes) > 1  # several runs' steps went into one transaction
    events = store.events()
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    for i in range(20):
        kinds = [e.type for e in store.events(run_id=f"r{i}")]
        assert kinds.count("node.finished") == 10
        assert kinds[-1] == "run.finished"


def test_a_lone_run_commits_at_once_without_grouping(
    store: KVStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one engine on the loop, no step waits for a group."""
    sizes = count_groups(store, monkeypatch)
    assert smithers.run(chain(5), store=store).status == "finished"
    assert sizes == []


def test_a_lost_lease_inside_a_group_fails_that_run_and_the_other_commits(
    store: KVStore,
) -> None:
    """Fencing per run: the stale owner gets LeaseLostError, the other run's step commits."""
    good = owned_run(store, "good")
    owned_run(store, "stolen")

    async def main() -> list[Any]:
        committer = Committer(store, asyncio.get_running_loop())
        committer.enter()
        committer.enter()
        return await asyncio.gather(
            committer.commit("stolen", started("a"), "not-the-token"),
            committer.commit("good", started("b"), good),
            return_exceptions=True,
        )

    stolen, applied = asyncio.run(main())
    assert isinstance(stolen, LeaseLostError)
    assert isinstance(applied, CommitResult)
    assert applied.applied
    assert [(e.run_id, e.node_id) for e in store.events(run_id="good")] == [("good", "b")]
    assert store.events(run_id="stolen") == []


def test_a_run_taken_over_mid_run_stops_while_a_gathered_run_finishes(store: KVStore) -> None:
    """A run whose lease is taken while it runs stops with LeaseLostError; the run gathered
    beside it on the same loop and store still finishes."""

    def steal() -> int:
        store.acquire("victim", new_lease(), is_dead=lambda lease: True, batch=Batch())
        return 1

    @smithers.smithers
    def victim(ctx: Context) -> Workflow:
        return Workflow(
            Sequence(
                Task(id="steal", output=int, run=steal), Task(id="after", output=int, value=2)
            ),
            name="victim",
        )

    async def main() -> list[Any]:
        return await asyncio.gather(
            smithers.arun(victim, store=store, run_id="victim"),
            smithers.arun(chain(30), store=store, run_id="bystander"),
            return_exceptions=True,
        )

    lost, finished = asyncio.run(main())
    assert isinstance(lost, LeaseLostError)
    assert not isinstance(finished, BaseException)
    assert finished.status == "finished"
    assert store.output("victim", "steal", ()) is None  # the stale owner committed nothing


def test_a_store_fault_fails_every_run_in_the_group(store: KVStore) -> None:
    """When the group's transaction fails, every engine waiting on it gets the error."""
    tokens = {r: owned_run(store, r) for r in ("a", "b")}

    def broken(items: Any) -> Any:
        raise StoreError("The store at x could not commit (disk full).")

    async def main() -> list[Any]:
        committer = Committer(store, asyncio.get_running_loop())
        committer.enter()
        committer.enter()
        store.commit_many = broken  # type: ignore[method-assign]
        return await asyncio.gather(
            *[committer.commit(r, started(r), t) for r, t in tokens.items()],
            return_exceptions=True,
        )

    assert [type(r) for r in asyncio.run(main())] == [StoreError, StoreError]
    assert store.events() == []
