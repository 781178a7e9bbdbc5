"""Scale figures: many runs at once in one process, and read commands as the store grows.

Imported by `run.py`; not a separate command.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import time
from collections.abc import Callable

import smithers
from smithers.store import open_store
from smithers.store.base import Batch
from smithers.store.records import (
    ApprovalRecord,
    AttemptRecord,
    NewEvent,
    NodeRecord,
    RunRecord,
)

PARKED = 100  # runs waiting at a gate, the same in every store size: the answer stays the same
_STORE_FORMAT = "v1"  # bump when the records below change: cached stores are rebuilt


def many_runs(definition: smithers.WorkflowDefinition, store_path: str, runs: int) -> float:
    """Seconds for ``runs`` runs of ``definition`` started together with `arun` under
    ``asyncio.gather`` in this process, on one store."""
    store = open_store(store_path)

    async def main() -> list[smithers.RunResult]:
        return await asyncio.gather(
            *[smithers.arun(definition, store=store, run_id=f"m{i}") for i in range(runs)]
        )

    try:
        start = time.perf_counter()
        results = asyncio.run(main())
        elapsed = time.perf_counter() - start
    finally:
        store.close()
    bad = [r for r in results if r.status != "finished"]
    if bad:
        raise SystemExit(f"benchmark run ended {bad[0].status}: {bad[0].error}")
    return elapsed


def _finished(i: int, now: str) -> tuple[RunRecord, Batch]:
    nodes = [f"t{n}" for n in range(3)]
    record = RunRecord(
        run_id=f"run-{i}", workflow="deploy", status="finished", created_at=now, updated_at=now
    )
    batch = Batch(
        nodes=[
            NodeRecord(node_id=n, kind="task", state="finished", started_at=now, finished_at=now)
            for n in nodes
        ],
        outputs=[(n, (), b"\x01") for n in nodes],
        attempts=[
            AttemptRecord(
                node_id=n, number=1, started_at=now, ended_at=now, outcome="ok", duration_ms=0.1
            )
            for n in nodes
        ],
        events=[
            NewEvent(type="run.started", at=now),
            *[NewEvent(type="node.finished", node_id=n, at=now) for n in nodes],
            NewEvent(type="run.finished", at=now),
        ],
    )
    return record, batch


def _parked(i: int, now: str) -> tuple[RunRecord, Batch]:
    record = RunRecord(
        run_id=f"run-{i}",
        workflow="deploy",
        status="waiting-approval",
        created_at=now,
        updated_at=now,
    )
    batch = Batch(
        nodes=[
            NodeRecord(
                node_id="approve-deploy", kind="approval", state="waiting-approval", started_at=now
            )
        ],
        approvals=[
            ApprovalRecord(
                node_id="approve-deploy",
                status="requested",
                requested_at=now,
                request={"title": f"Deploy 1.{i}?", "summary": "Roll out."},
            )
        ],
        events=[
            NewEvent(type="run.started", at=now),
            NewEvent(type="approval.requested", node_id="approve-deploy", at=now),
            NewEvent(type="run.waiting", at=now),
        ],
    )
    return record, batch


def grown_store(base: str, runs: int) -> tuple[str, str]:
    """A store with ``runs`` runs (``PARKED`` of them waiting at a gate, the rest finished with
    three nodes each), written straight through the store API in big transactions and cached
    under ``base``; return its path and the id of a parked run in its middle."""
    path = os.path.join(base, f"grown-{_STORE_FORMAT}-{runs}")
    every = runs // PARKED
    middle = f"run-{(runs // 2) // every * every}"
    if os.path.exists(os.path.join(path, "complete")):
        return path, middle
    shutil.rmtree(path, ignore_errors=True)
    store = open_store(path)
    try:
        from smithers.runtime.lease import now_iso

        now = now_iso()
        for start in range(0, runs, 5000):
            items = [
                (_parked if i % every == 0 else _finished)(i, now)
                for i in range(start, min(start + 5000, runs))
            ]
            results = store.commit_many([(record, batch, None) for record, batch in items])
            failed = [r for r in results if isinstance(r, Exception)]
            if failed:
                raise SystemExit(f"building the {runs:,}-run store failed: {failed[0]}")
    finally:
        store.close()
    open(os.path.join(path, "complete"), "w").close()
    return path, middle


def growth_rows(
    base: str, sizes: tuple[int, int], repeats: int, timed: Callable[[list[str]], float]
) -> list[tuple[str, str, str, str]]:
    """Whole-process time of the read commands over the two store sizes, side by side."""
    rows = []
    stores = {n: grown_store(base, n) for n in sizes}
    small, large = sizes
    for name, args in (
        ("runs --status waiting-approval", lambda run: ["runs", "--status", "waiting-approval"]),
        ("approvals", lambda run: ["approvals"]),
        ("status RUN", lambda run: ["status", run]),
    ):
        samples: dict[int, list[float]] = {n: [] for n in sizes}
        for i in range(repeats + 1):
            for n in sizes:  # interleaved, so drift hits both sizes alike
                path, run = stores[n]
                took = timed(["--store", path, *args(run)])
                if i:
                    samples[n].append(took)
        med = {n: statistics.median(s) for n, s in samples.items()}
        ratio = statistics.median(
            b / a for a, b in zip(samples[small], samples[large], strict=True)
        )
        rows.append(
            (
                f"smithers {name}, {small:,} vs {large:,} runs, whole process",
                f"{med[small] * 1000:.1f} ms vs {med[large] * 1000:.1f} ms",
                "<= 2x",
                f"{ratio:.2f}x (max {max(samples[large]) * 1000:.1f} ms)",
            )
        )
    return rows
