"""Many workers on one PostgreSQL store (DESIGN §15): four ``smithers worker`` processes posing
as two hosts finish 300 runs with gates and parallel tasks while approvals arrive and one
worker is killed -9 with its resumes; and an owner stalled past its lease has its late commit
refused after a worker on another host took the run over; a failed resume's backoff hides
the run from every worker's claims; a decision on another connection wakes a worker at once
(LISTEN/NOTIFY), not at its next poll."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
import pytest

from smithers import approve, run
from smithers.runtime.clock import ManualClock, use_clock
from smithers.runtime.lease import HOST_ENV
from smithers.runtime.loader import load_definition
from smithers.service.children import Child
from smithers.service.worker import Worker
from smithers.store import Store, open_store
from tests.integration.helpers import TASK_KIT, child_env, hold, inflight, processes, write
from tests.postgres_cluster import Cluster
from tests.service.test_worker_outcomes import _children

pytestmark = pytest.mark.slow

RUNS = 300
GUARD = 240.0  # seconds: a hang guard for the whole batch, never reached when all is well

# A gate, then three tasks at once, then two more at once. Each task body logs its start and
# end with the machine-wide monotonic clock and its pid (the owner process).
FLOW = (
    TASK_KIT
    + """
from smithers import Approval, ApprovalRequest, Parallel, Sequence, Task, Workflow, smithers


def body(name):
    def run(task):
        with open(os.path.join(HERE, "spans.log"), "a") as log:
            log.write(f"{task.run_id} {name} start {os.getpid()} {time.monotonic()}\\n")
        hold_here(name, task)
        time.sleep(0.005)
        with open(os.path.join(HERE, "spans.log"), "a") as log:
            log.write(f"{task.run_id} {name} end {os.getpid()} {time.monotonic()}\\n")
        return os.getpid()

    return run


@smithers
def flow(ctx):
    return Workflow(
        Sequence(
            Approval(id="gate", request=ApprovalRequest(title="Go?")),
            Parallel(*[Task(id=n, output=int, run=body(n)) for n in ("a", "b", "c")]),
            Parallel(*[Task(id=n, output=int, run=body(n)) for n in ("d", "e")]),
        ),
        name="flow",
    )
"""
)
TASKS = ("a", "b", "c", "d", "e")


@pytest.fixture
def pg_url(postgres_cluster: Cluster) -> str:
    """A fresh database of its own (the workers' children open it from other processes)."""
    url = postgres_cluster.create_database(f"workers_{uuid.uuid4().hex[:8]}")
    open_store(url).close()
    return url


def _cli(url: str, *args: str) -> list[str]:
    """The argv of ``python -m smithers --store URL ARGS``."""
    return [sys.executable, "-m", "smithers", "--store", url, *args]


def _worker(url: str, host: str, folder: Path, *extra: str, **env: str) -> subprocess.Popen[str]:
    """``smithers worker --workers 2`` posing as ``host``; its output goes to a file."""
    log = open(folder / f"worker-{host}-{uuid.uuid4().hex[:4]}.log", "w")  # noqa: SIM115
    with log:
        return subprocess.Popen(
            _cli(url, "worker", "--workers", "2", *extra),
            cwd=folder,
            env=child_env(**{HOST_ENV: host}, **env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )


@contextmanager
def _workers(*procs: subprocess.Popen[str]) -> Iterator[list[subprocess.Popen[str]]]:
    """Stop the workers with SIGTERM at the end (each exits 0); kill what a failure leaves."""
    alive = list(procs)
    try:
        yield alive
        for proc in alive:
            proc.send_signal(signal.SIGTERM)
        for proc in alive:
            assert proc.wait(timeout=60) == 0, f"worker {proc.pid} exited {proc.returncode}"
    finally:
        for proc in alive:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _resumes_of(pid: int) -> list[int]:
    """The resume children of the worker ``pid``: its descendants that lead their own session
    (forked by its fork server, or started by it directly)."""
    table = processes()

    def descends(child: int) -> bool:
        seen = set()
        while child in table and child not in seen:
            seen.add(child)
            child = table[child][1]
            if child == pid:
                return True
        return False

    return [
        p
        for p, (state, _, session) in table.items()
        if state != "Z" and session == p and descends(p)
    ]


def _until(check: object, what: str) -> None:
    """Poll ``check()`` until true (a hang guard, not a timing assertion)."""
    assert callable(check)
    deadline = time.monotonic() + GUARD
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def _finished(store: Store) -> int:
    return len(store.runs("finished"))


def _spans(folder: Path, killed_at: float) -> dict[str, list[tuple[int, float, float]]]:
    """Per run, each owner process's span of task execution (first start, last end); a task
    whose process was killed mid-body ends at the kill."""
    starts: dict[tuple[str, int], list[float]] = defaultdict(list)
    ends: dict[tuple[str, int], list[float]] = defaultdict(list)
    for line in (folder / "spans.log").read_text().splitlines():
        run_id, _, kind, pid, at = line.split()
        (starts if kind == "start" else ends)[(run_id, int(pid))].append(float(at))
    spans: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for (run_id, pid), begun in starts.items():
        ended = ends.get((run_id, pid), [])
        last = max(ended) if len(ended) == len(begun) else max([*ended, killed_at])
        spans[run_id].append((pid, min(begun), last))
    return spans


def test_four_workers_on_two_hosts_finish_300_runs_once_with_one_killed(
    pg_url: str, tmp_path: Path
) -> None:
    """4 workers posing as 2 hosts, 300 runs (a gate, then parallel tasks), approvals arriving
    while they run, one worker killed -9 with its resumes midway: every run finishes, every
    node is finished exactly once (one node.finished event, one output), and no run's tasks
    ran in two owner processes at overlapping times."""
    write(tmp_path / "flow.py", FLOW)
    definition = load_definition(str(tmp_path / "flow.py:flow")).definition
    ids = [f"m{i:03d}" for i in range(RUNS)]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    store = open_store(pg_url)
    try:
        for run_id in ids:
            assert run(definition, store=store, run_id=run_id).status == "waiting-approval"
    finally:
        os.chdir(cwd)
    hosts = ["host-a", "host-a", "host-b", "host-b"]
    with _workers(*[_worker(pg_url, host, tmp_path) for host in hosts]) as alive:
        for run_id in ids[:100]:
            approve(run_id, "gate", store=store, by="ann")
        _until(lambda: _finished(store) >= 30, "the first runs finish")
        victim = alive.pop(0)
        resumes: list[int] = []
        _until(lambda: resumes.extend(_resumes_of(victim.pid)) or resumes, "a victim's resume")
        victim.send_signal(signal.SIGKILL)
        for pid in resumes:
            # A forked resume takes ~30 ms: it may have ended since it was found.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        assert victim.wait() == -signal.SIGKILL
        for start in range(100, RUNS, 50):
            for run_id in ids[start : start + 50]:
                approve(run_id, "gate", store=store, by="ann")
        _until(lambda: _finished(store) == RUNS, "every run finishes")
    try:
        finished_nodes = Counter(
            (e.run_id, e.node_id) for e in store.events() if e.type == "node.finished"
        )
        assert finished_nodes == {(r, n): 1 for r in ids for n in ("gate", *TASKS)}
        for run_id in ids:
            assert all(store.output(run_id, n, ()) is not None for n in TASKS)
        spans = _spans(tmp_path, killed_at)
        for run_id in ids:
            ordered = sorted(spans[run_id], key=lambda span: span[1])
            for (pid, _, end), (later, begin, _) in itertools.pairwise(ordered):
                assert end <= begin, f"{run_id}: pid {pid} and pid {later} overlap"
        owners = Counter(e.data["host"] for e in store.events() if e.type == "run.resumed")
        assert set(owners) == {"host-a", "host-b"}
    finally:
        store.close()


STALL = (
    TASK_KIT
    + """
from smithers import Sequence, Task, Workflow, smithers


def slow_body(task):
    hold_here("slow", task)
    ran("slow", task)
    return os.getpid()


@smithers
def stall(ctx):
    return Workflow(
        Sequence(Task(id="slow", output=int, run=slow_body), Task(id="after", output=int, value=1)),
        name="stall",
    )
"""
)


def test_an_owner_stalled_past_its_lease_has_its_late_commit_refused(
    pg_url: str, tmp_path: Path
) -> None:
    """An owner on host-a frozen (SIGSTOP) mid-task while time passes its lease: a worker on
    host-b takes the run over and finishes it; thawed, the old owner's commit is refused
    (it exits naming the lost lease) and the node's output stays the new owner's."""
    write(tmp_path / "stall.py", STALL)
    clock_file = tmp_path / "clock"
    clock_file.write_text("1000000.0")
    env = {"SMITHERS_TEST_CLOCK_FILE": str(clock_file)}
    hold(tmp_path, "s1", "slow")
    owner = subprocess.Popen(
        _cli(pg_url, "run", "stall.py:stall", "--run-id", "s1"),
        cwd=tmp_path,
        env=child_env(**{HOST_ENV: "host-a"}, **env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _until(inflight(tmp_path, "s1", "slow"), "the owner runs slow")
        owner.send_signal(signal.SIGSTOP)
        (tmp_path / "HOLD-s1").unlink()
        clock_file.write_text("1000060.0")  # a minute of silence: past any lease
        with (
            open_store(pg_url) as store,
            _workers(_worker(pg_url, "host-b", tmp_path, **env)),
        ):
            _until(lambda: _finished(store) == 1, "host-b's worker finishes s1")
            owner.send_signal(signal.SIGCONT)
            (tmp_path / "RELEASE-s1").write_text("")
            _, err = owner.communicate(timeout=60)
            assert owner.returncode != 0
            # Its heartbeat or its commit meets the lease first: both are refused.
            assert re.search(r"Error: Run `s1` (was taken over|is no longer owned by this)", err)
            finished = [e for e in store.events(run_id="s1") if e.type == "node.finished"]
            assert [e.node_id for e in finished] == ["slow", "after"]
            output = store.output("s1", "slow", ())
            resumed = [e for e in store.events(run_id="s1") if e.type == "run.resumed"]
            assert [e.data["host"] for e in resumed] == ["host-b"]
            assert output is not None
            assert msgspec.msgpack.decode(output) == resumed[0].data["pid"]
    finally:
        if owner.poll() is None:
            owner.send_signal(signal.SIGCONT)
            owner.kill()
            owner.communicate()


def test_a_failed_resumes_backoff_hides_the_run_from_every_workers_claim(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a crashed resume is counted on the claim and the run is skipped by every
    worker's SKIP LOCKED claim until its retry time (5 s, then 10 s); a success clears it."""
    write(tmp_path / "flow.py", FLOW)
    definition = load_definition(str(tmp_path / "flow.py:flow")).definition
    crash = Child(1, None, "ZeroDivisionError: division by zero")
    ok = Child(3, {"run_id": "r", "status": "finished"}, "")
    started = _children(monkeypatch, [crash, crash, ok])
    clock = ManualClock()
    with open_store(pg_url) as store, use_clock(clock):
        run(definition, store=store, run_id="r")
        approve("r", "gate", store=store, by="ann")
        first, second = Worker(store, backoff=5.0), Worker(store, backoff=5.0)
        assert asyncio.run(first.tick()) == 1
        assert asyncio.run(second.tick()) == 0
        claim = store.worker_claim("r")
        assert claim is not None
        assert (claim.owner, claim.failures) == (None, 1)
        clock.advance(5.0)
        assert asyncio.run(second.tick()) == 1
        clock.advance(9.0)
        assert asyncio.run(first.tick()) == 0
        clock.advance(1.0)
        assert asyncio.run(first.tick()) == 1
        assert store.worker_claim("r") is None
    assert started == ["r", "r", "r"]


def test_a_decision_from_another_connection_wakes_a_worker_without_polling(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker polling only every 10 minutes resumes a run as soon as another connection
    (another machine, as the server sees it) approves its gate: LISTEN/NOTIFY woke it."""
    import psycopg

    write(tmp_path / "flow.py", FLOW)
    definition = load_definition(str(tmp_path / "flow.py:flow")).definition
    # Stand-in children leave the news in place, so the run is found again after each one.
    started = _children(monkeypatch, [Child(0, {"run_id": "r", "status": "finished"}, "")] * 999)

    def listening() -> bool:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN smithers_wake'"
            ).fetchone()
        return bool(row and row[0])

    async def scenario(store: Store, approver: Store) -> None:
        worker = Worker(store, poll=600.0)
        loop = asyncio.create_task(worker.run_forever())
        deadline = time.monotonic() + 30.0  # a hang guard, far below the poll interval
        try:
            while not await asyncio.to_thread(listening):
                assert time.monotonic() < deadline, "the worker never listened"
                await asyncio.sleep(0.01)
            await asyncio.to_thread(approve, "r", "gate", store=approver, by="ann")
            while not started:
                assert time.monotonic() < deadline, "the worker was not woken"
                await asyncio.sleep(0.01)
        finally:
            worker.stop()
            await loop

    with open_store(pg_url) as store, open_store(pg_url) as approver:
        run(definition, store=store, run_id="r")
        asyncio.run(scenario(store, approver))
    assert set(started) == {"r"}
