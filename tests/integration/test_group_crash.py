"""kill -9 of a real process driving many runs whose steps share durable transactions (group
commit), then resume of all of them from a new process: nothing committed is lost or redone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from tests.integration.helpers import (
    HANG_GUARD,
    ROOT,
    TASK_KIT,
    bodies,
    child_env,
    kill9,
    opened,
    reaping,
    wait_for,
    write,
)

RUNS = 16
NODES = 12

FLOW = (
    TASK_KIT
    + f"""
from smithers import Sequence, Task, Workflow, smithers


def step(i, task):
    ran(f"t{{i}}", task)
    time.sleep(0.015)
    return i


@smithers
def flow(ctx):
    return Workflow(
        Sequence(*[
            Task(id=f"t{{i}}", output=int, run=lambda task, i=i: step(i, task))
            for i in range({NODES})
        ]),
        name="flow",
    )
"""
)

DRIVER = f"""
import asyncio
import sys

import smithers
from flow import flow
from smithers.store import open_store

GROUPS = []


def counted(store):
    inner = store.commit_many

    def commit_many(items):
        GROUPS.append(len(items))
        return inner(items)

    store.commit_many = commit_many
    return store


async def main(path, mode):
    store = counted(open_store(path))
    if mode == "start":
        calls = [smithers.arun(flow, store=store, run_id=f"g{{i}}") for i in range({RUNS})]
    else:
        calls = [smithers.aresume(f"g{{i}}", store=store, definition=flow) for i in range({RUNS})]
    results = await asyncio.gather(*calls)
    print(" ".join(r.status for r in results))
    print(max(GROUPS, default=0))


asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def finished_nodes(store: Path) -> int:
    """How many node.finished events the store holds (0 before it exists)."""
    if not (store / "data.mdb").exists():
        return 0
    with opened(store) as s:
        return sum(1 for e in s.events() if e.type == "node.finished")


def committed(store: Path) -> dict[tuple[str, str], bytes]:
    """(run, node) -> the output bytes committed so far."""
    found = {}
    with opened(store) as s:
        for i in range(RUNS):
            for n in range(NODES):
                raw = s.output(f"g{i}", f"t{n}", ())
                if raw is not None:
                    found[(f"g{i}", f"t{n}")] = raw
    return found


# A seeded sweep of kill points: after the first node, a quarter of the way, over half way.
@pytest.mark.parametrize("kill_after", [1, RUNS * NODES // 4, RUNS * NODES * 5 // 8])
def test_kill9_mid_group_then_resume_all_loses_and_redoes_nothing_committed(
    tmp_path: Path, kill_after: int
) -> None:
    """kill -9 while many runs commit together; resuming them all in a new process keeps every
    committed output as it was, never reruns its task, and finishes every run."""
    write(tmp_path / "flow.py", FLOW)
    write(tmp_path / "driver.py", DRIVER)
    store = tmp_path / "store"
    argv = [sys.executable, "driver.py", str(store)]
    env = child_env(PYTHONPATH=str(ROOT))  # the smithers under test, not an installed one
    proc = subprocess.Popen(
        [*argv, "start"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with reaping(proc):
        wait_for(lambda: finished_nodes(store) >= kill_after, f"{kill_after} nodes", proc=proc)
        kill9(proc)

    before = committed(store)
    assert len(before) >= kill_after
    assert len(before) < RUNS * NODES  # killed mid-way, not after the end

    resumed = subprocess.run(
        [*argv, "resume"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    statuses, largest_group = resumed.stdout.splitlines()
    assert statuses.split() == ["finished"] * RUNS
    assert int(largest_group) > 1  # the resumed runs' steps shared transactions

    after = committed(store)
    assert len(after) == RUNS * NODES
    assert {k: v for k, v in after.items() if k in before} == before
    assert all(msgspec.msgpack.decode(v) == int(n[1:]) for (_, n), v in after.items())
    for i in range(RUNS):
        ran = bodies(tmp_path, f"g{i}")
        for n in range(NODES):
            if (f"g{i}", f"t{n}") in before:
                assert ran[f"t{n}"] == [1]  # committed before the kill: never run again
    with opened(store) as s:
        events = s.events()
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        for i in range(RUNS):
            kinds = [e.type for e in s.events(run_id=f"g{i}")]
            assert kinds.count("node.finished") == NODES
            run = s.get_run(f"g{i}")
            assert run is not None
            assert (run.status, run.lease) == ("finished", None)
