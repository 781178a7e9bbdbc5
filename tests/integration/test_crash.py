"""Crashes and interrupts of a real ``smithers run`` process, and resume from a new one."""

from __future__ import annotations

import json
import signal
import socket
from collections import Counter
from pathlib import Path

import attrs
import msgspec
import pytest

from tests.integration.helpers import (
    TASK_KIT,
    bodies,
    executions,
    finish,
    hold,
    inflight,
    kill9,
    opened,
    reaping,
    release,
    smithers_cli,
    spawn,
    wait_for,
    write,
)

CHAIN = (
    TASK_KIT
    + """
from smithers import Parallel, Sequence, Task, Workflow, smithers


def step(name, prev, task):
    ran(name, task)
    hold_here(name, task)
    return [*prev, f"{name}@{task.iteration}"]


@smithers
def chain(ctx):
    return Workflow(
        Sequence(
            Task(id="t0", output=list[str], run=lambda task: step("t0", [], task)),
            Parallel(
                Task(id="t1", output=list[str], needs={"p": "t0"},
                     run=lambda p, task: step("t1", p, task)),
                Task(id="t2", output=list[str], needs={"p": "t0"},
                     run=lambda p, task: step("t2", p, task)),
            ),
            Task(id="t3", output=list[str], needs={"a": "t1", "b": "t2"},
                 run=lambda a, b, task: step("t3", a + b, task)),
        ),
        name="chain",
    )
"""
)
NODES = ("t0", "t1", "t2", "t3")


@attrs.frozen
class Bench:
    """A folder with the chain workflow, a store (an LMDB directory or a PostgreSQL URL), and
    one uninterrupted run `base` in it."""

    folder: Path
    store: Path | str
    base_outputs: dict[str, bytes | None]


def outputs_of(store: Path | str, run_id: str) -> dict[str, bytes | None]:
    """Every node's committed output bytes."""
    with opened(store) as s:
        return {n: s.output(run_id, n, ()) for n in NODES}


@pytest.fixture(scope="module", params=["lmdb", "postgres"])
def bench(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Bench:
    """The workflow, its store, and the outputs of an uninterrupted run to compare against:
    once on LMDB, once on PostgreSQL (a database of the session's server)."""
    folder = tmp_path_factory.mktemp("crash")
    write(folder / "chain.py", CHAIN)
    store: Path | str = folder / "store"
    if request.param == "postgres":
        store = request.getfixturevalue("postgres_cluster").create_database("crash")
    done = smithers_cli(store, "run", "chain.py", "--run-id", "base", cwd=folder)
    assert done.code == 0, done.err
    base = outputs_of(store, "base")
    assert all(v is not None for v in base.values())
    return Bench(folder, store, base)


def runs_of(log: list[str], run_id: str) -> Counter[str]:
    """How many times each task body ran for a run."""
    return Counter(line.split()[1] for line in log if line.split()[0] == run_id)


# A sweep over kill points: which task is in flight when the owner dies. Every task is a kill
# point here (t1 and t2 run side by side, so killing in t1 may also cut off t2).
@pytest.mark.parametrize("victim", NODES)
def test_kill9_mid_task_then_resume_matches_an_uninterrupted_run(bench: Bench, victim: str) -> None:
    """kill -9 during a task; resume from a new process reruns only the cut-off work."""
    run_id = f"kill-{victim}"
    hold(bench.folder, run_id, victim)
    proc = spawn(bench.store, "run", "chain.py", "--run-id", run_id, cwd=bench.folder)
    with reaping(proc):
        wait_for(inflight(bench.folder, run_id, victim), f"{victim} in flight", proc=proc)
        kill9(proc)

    with opened(bench.store) as s:
        snapshot = s.load(run_id)
        assert snapshot is not None
        assert snapshot.run.status == "running"
        assert snapshot.run.lease is not None
        assert snapshot.run.lease.pid == proc.pid
        at_kill = {n: r.state for (n, _), r in snapshot.nodes.items()}
    assert at_kill[victim] == "in-progress"
    cut_off = {n for n, state in at_kill.items() if state == "in-progress"}
    finished_before = {n for n, state in at_kill.items() if state == "finished"}
    before_victim = {"t0": set(), "t1": {"t0"}, "t2": {"t0"}, "t3": {"t0", "t1", "t2"}}
    assert before_victim[victim] <= finished_before
    assert "t3" not in finished_before

    release(bench.folder, run_id)
    resumed = smithers_cli(bench.store, "resume", run_id, cwd=bench.folder)
    assert resumed.code == 0, resumed.err
    assert f"Run {run_id} finished." in resumed.out
    assert f"  interrupted {victim} (attempt 1); it will run again" in resumed.err.splitlines()

    assert outputs_of(bench.store, run_id) == bench.base_outputs
    # Nodes finished before the kill ran once; the victim ran again as attempt 2. A node cut
    # off with it may have been killed before its body began, so it ran as attempt 2 only.
    ran = bodies(bench.folder, run_id)
    for n in NODES:
        if n == victim:
            assert ran[n] == [1, 2]
        elif n in cut_off:
            assert ran[n] in ([1, 2], [2])
        else:
            assert ran[n] == [1]
    with opened(bench.store) as s:
        run = s.get_run(run_id)
        assert run is not None
        assert (run.status, run.lease) == ("finished", None)
        attempts = {(a.node_id, a.number): (a.outcome, a.error) for a in s.attempts(run_id)}
        events = s.events(run_id=run_id)
    expected_attempts = {}
    for n in NODES:
        if n in cut_off:
            expected_attempts[(n, 1)] = ("interrupted", "the process running it died")
            expected_attempts[(n, 2)] = ("ok", None)
        else:
            expected_attempts[(n, 1)] = ("ok", None)
    assert attempts == expected_attempts
    assert Counter(e.node_id for e in events if e.type == "node.finished") == dict.fromkeys(
        NODES, 1
    )
    assert sorted(e.node_id for e in events if e.type == "node.interrupted") == sorted(cut_off)
    assert [e.type for e in events].count("run.resumed") == 1


def test_a_task_cut_off_three_times_fails_the_run(tmp_path: Path) -> None:
    """Interrupted attempts do not count as retries, but the third crash fails the node."""
    write(tmp_path / "chain.py", CHAIN)
    store = tmp_path / "store"
    hold(tmp_path, "r", "t0")
    first = spawn(store, "run", "chain.py", "--run-id", "r", cwd=tmp_path)
    with reaping(first):
        wait_for(inflight(tmp_path, "r", "t0", 1), "t0 attempt 1", proc=first)
        kill9(first)
    for attempt in (2, 3):
        again = spawn(store, "resume", "r", cwd=tmp_path)
        with reaping(again):
            wait_for(inflight(tmp_path, "r", "t0", attempt), f"t0 attempt {attempt}", proc=again)
            kill9(again)
    final = smithers_cli(store, "resume", "r", cwd=tmp_path)
    assert final.code == 1, final.err
    assert "the process died 3 times running `t0`" in final.out
    with opened(store) as s:
        attempts = [(a.number, a.outcome) for a in s.attempts("r")]
        run = s.get_run("r")
    assert attempts == [(1, "interrupted"), (2, "interrupted"), (3, "interrupted")]
    assert run is not None
    assert run.status == "failed"
    assert run.error is not None
    assert (run.error.type, run.error.node_id) == ("ProcessDied", "t0")
    assert runs_of(executions(tmp_path / "executions.log"), "r") == {"t0": 3}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_records_the_attempt_interrupted_releases_the_lease_and_resume_finishes(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """SIGINT/SIGTERM mid-task: exit 130, attempt recorded interrupted, run freed at once."""
    write(tmp_path / "chain.py", CHAIN)
    store = tmp_path / "store"
    hold(tmp_path, "r", "t1")
    proc = spawn(store, "run", "chain.py", "--run-id", "r", cwd=tmp_path)
    with reaping(proc):
        wait_for(inflight(tmp_path, "r", "t1"), "t1 in flight", proc=proc)
        proc.send_signal(sig)
        stopped = finish(proc)
    assert stopped.code == 130, stopped.err
    with opened(store) as s:
        run = s.get_run("r")
        attempts = {(a.node_id, a.number): (a.outcome, a.error) for a in s.attempts("r")}
        snapshot = s.load("r")
        kinds = [(e.type, e.node_id) for e in s.events(run_id="r")]
    assert run is not None
    assert run.lease is None  # released on the way out: nobody has to wait for it to expire
    assert run.status == "running"
    assert attempts[("t1", 1)] == ("interrupted", "interrupted by a signal")
    assert snapshot is not None
    assert snapshot.nodes[("t1", ())].state == "pending"
    assert ("node.interrupted", "t1") in kinds
    assert ("run.interrupted", None) in kinds

    release(tmp_path, "r")
    resumed = smithers_cli(store, "resume", "r", cwd=tmp_path)
    assert resumed.code == 0, resumed.err
    assert "Run r finished." in resumed.out
    ran = runs_of(executions(tmp_path / "executions.log"), "r")
    assert ran["t1"] == 2
    assert (ran["t0"], ran["t3"]) == (1, 1)
    with opened(store) as s:
        t1 = [(a.number, a.outcome) for a in s.attempts("r") if a.node_id == "t1"]
    assert t1 == [(1, "interrupted"), (2, "ok")]
    # The one Error line of the interrupted process says how to go on.
    assert stopped.errors == ["Error: interrupted; run r stays resumable with `smithers resume r`."]


def test_resume_of_a_live_run_is_refused_naming_the_owner(tmp_path: Path) -> None:
    """A second executor gets exit 4 and an Error line naming the owner's pid and host."""
    write(tmp_path / "chain.py", CHAIN)
    store = tmp_path / "store"
    hold(tmp_path, "r", "t0")
    owner = spawn(store, "run", "chain.py", "--run-id", "r", cwd=tmp_path)
    with reaping(owner):
        wait_for(inflight(tmp_path, "r", "t0"), "t0 in flight", proc=owner)
        refused = smithers_cli(store, "resume", "r", cwd=tmp_path)
        assert refused.code == 4
        assert len(refused.errors) == 1
        assert refused.errors[0].startswith(
            f"Error: Run `r` is being executed by pid {owner.pid} on {socket.gethostname()} "
        )
        assert refused.errors[0].endswith("wait for it, or stop that process first.")
        assert owner.poll() is None
        release(tmp_path, "r")
        done = finish(owner)
    assert done.code == 0, done.err
    ran = runs_of(executions(tmp_path / "executions.log"), "r")
    assert ran == dict.fromkeys(NODES, 1)


DEPLOY = (
    TASK_KIT
    + """
import functools

import msgspec

from smithers import Approval, ApprovalRequest, Sequence, Task, Workflow, smithers


class Published(msgspec.Struct):
    status: str


def build(task):
    ran("build", task)
    return "1.4.2"


def record(status, task):
    ran("record", task)
    hold_here("record", task)
    return Published(status=status)


@smithers
def deploy(ctx):
    decision = ctx.output_maybe("approve-deploy")
    return Workflow(
        Sequence(
            Task(id="build", output=str, run=build),
            Approval(
                id="approve-deploy",
                needs={"version": "build"},
                request=lambda version: ApprovalRequest(title=f"Deploy {version}?"),
                on_deny="continue",
            ),
            decision and Task(
                id="record",
                output=Published,
                run=functools.partial(record, "approved" if decision.approved else "rejected"),
            ),
        ),
        name="deploy",
    )
"""
)


def test_kill9_after_the_gate_finished_resumes_with_the_decision_as_data(tmp_path: Path) -> None:
    """Seed deploy killed while `record` runs: resume reads the decision typed and finishes."""
    write(tmp_path / "deploy.py", DEPLOY)
    store = tmp_path / "store"
    parked = smithers_cli(store, "run", "deploy.py", "--run-id", "d", cwd=tmp_path)
    assert parked.code == 3, parked.err
    hold(tmp_path, "d", "record")
    approver = spawn(store, "approve", "d", "--node", "approve-deploy", "--by", "ann", cwd=tmp_path)
    with reaping(approver):
        wait_for(inflight(tmp_path, "d", "record"), "record in flight", proc=approver)
        kill9(approver)
    release(tmp_path, "d")
    resumed = smithers_cli(store, "resume", "d", cwd=tmp_path)
    assert resumed.errors == []
    assert resumed.code == 0
    assert "Run d finished." in resumed.out
    with opened(store) as s:
        raw = s.output("d", "record", ())
        gate_finished = [
            e
            for e in s.events(run_id="d")
            if e.type == "node.finished" and e.node_id == "approve-deploy"
        ]
    assert raw is not None
    assert msgspec.msgpack.decode(raw) == {"status": "approved"}
    assert len(gate_finished) == 1
    assert runs_of(executions(tmp_path / "executions.log"), "d") == {"build": 1, "record": 2}


def test_a_killed_run_says_its_owner_is_gone_and_how_to_go_on(tmp_path: Path) -> None:
    """After kill -9 mid-task, `status` and `runs` say nothing runs the run (its owner is
    gone) and print the exact resume command; that command finishes it."""
    write(tmp_path / "chain.py", CHAIN)
    store = tmp_path / "store"
    hold(tmp_path, "r", "t1")
    proc = spawn(store, "run", "chain.py", "--run-id", "r", cwd=tmp_path)
    with reaping(proc):
        wait_for(inflight(tmp_path, "r", "t1"), "t1 in flight", proc=proc)
        kill9(proc)
    release(tmp_path, "r")
    status = smithers_cli(store, "status", "r", cwd=tmp_path)
    owner = f"pid {proc.pid} on {socket.gethostname()}, which is gone"
    assert f"  owner:    {owner}: nothing is running this run (it was interrupted)" in (
        status.out.splitlines()
    )
    assert f"  go on:    smithers resume r --store {store}" in status.out.splitlines()
    runs = smithers_cli(store, "runs", "--json", cwd=tmp_path)
    assert json.loads(runs.out)[0]["resume_command"] == f"smithers resume r --store {store}"
    resumed = smithers_cli(store, "resume", "r", cwd=tmp_path)
    assert resumed.code == 0, resumed.err
