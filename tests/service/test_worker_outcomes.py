"""How the worker judges a child's end, in process with stand-in children and a manual
clock: a crash or a load failure backs off exponentially (no hot loop), a run document or an
interrupt is a success, and another worker's claim keeps a run from starting twice."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from smithers import approve
from smithers.runtime.clock import ManualClock, use_clock
from smithers.service import worker as worker_module
from smithers.service.children import Child
from smithers.service.worker import Worker
from tests.service.helpers import opened_store, park, workflows


@pytest.fixture
def parked(tmp_path: Path) -> Path:
    """A store with one parked run whose gate was decided (news for the worker)."""
    store = tmp_path / ".smithers"
    workflows(tmp_path)
    park(tmp_path, store, "gate.py:gated", ["r"])
    approve("r", "gate", store=str(store), by="ann")
    return store


def _children(monkeypatch: pytest.MonkeyPatch, ends: list[Child]) -> list[str]:
    """Replace child processes with ``ends`` (in order); return the run ids started."""
    started: list[str] = []

    async def start(location: str, args: list[str], **_: Any) -> object:
        started.append(args[-1])
        return object()

    async def finish(_: object, data: bytes | None = None) -> Child:
        return ends.pop(0)

    monkeypatch.setattr(worker_module, "start_child", start)
    monkeypatch.setattr(worker_module, "finish_child", finish)
    return started


async def _tick(worker: Worker) -> int:
    return await worker.tick()


def test_crashes_back_off_exponentially(parked: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A child that exits without a run document (a traceback) is a failure: the run is not
    started again before 5 s, then 10 s after the second failure; a success clears it."""
    crash = Child(1, None, "ZeroDivisionError: division by zero")
    ok = Child(3, {"run_id": "r", "status": "waiting-approval"}, "")
    started = _children(monkeypatch, [crash, crash, ok])
    clock = ManualClock()
    with opened_store(parked) as store, use_clock(clock):
        worker = Worker(store, backoff=5.0)
        assert asyncio.run(_tick(worker)) == 1
        assert asyncio.run(_tick(worker)) == 0
        claim = store.worker_claim("r")
        assert claim is not None
        assert (claim.failures, claim.error) == (1, "ZeroDivisionError: division by zero")
        clock.advance(5.0)
        assert asyncio.run(_tick(worker)) == 1
        clock.advance(9.0)
        assert asyncio.run(_tick(worker)) == 0
        clock.advance(1.0)
        assert asyncio.run(_tick(worker)) == 1
        assert store.worker_claim("r") is None
    assert started == ["r", "r", "r"]


def test_a_locked_run_is_not_a_failure(parked: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A child refused with RunLockedError (another process got there first) records no
    failure, and one tick never starts a run twice even when it is still due."""
    locked = Child(4, {"error": {"type": "RunLockedError", "message": "owned"}}, "")
    started = _children(monkeypatch, [locked])
    with opened_store(parked) as store:
        assert asyncio.run(_tick(Worker(store))) == 1
        assert store.worker_claim("r") is None
    assert started == ["r"]


def test_another_workers_claim_keeps_the_run(parked: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run claimed by another worker is not started by this one."""
    started = _children(monkeypatch, [])
    clock = ManualClock()
    with opened_store(parked) as store, use_clock(clock):
        assert store.claim_run("r", "someone-else", now=clock.time(), until=clock.time() + 30)
        assert asyncio.run(_tick(Worker(store))) == 0
    assert started == []
