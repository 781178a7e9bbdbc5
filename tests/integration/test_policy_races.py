"""Approval policies and time across real processes: quorum voters racing, a person racing
the deadline, and a Timer and a Signal timeout surviving a process exit.

Time in the children comes from a file (``SMITHERS_TEST_CLOCK_FILE``, test-only) that this
test rewrites: deadlines pass without sleeping. The `resume` calls here stand in for
`smithers tick` until the worker lands (issue 9).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

from smithers.runtime.clock import FileClock
from tests.integration.helpers import (
    HANG_GUARD,
    child_env,
    finish,
    opened,
    smithers_cli,
    spawn,
    wait_for,
    write,
)

pytestmark = pytest.mark.slow

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
HOUR = 3600.0

FLOWS = """
from smithers import Approval, ApprovalRequest, Signal, Task, Timer, Workflow, smithers

@smithers
def quorum(ctx):
    return Workflow(
        Approval(id="gate", request=ApprovalRequest(title="Ship?"),
                 approvers=["p0", "p1", "p2", "p3"], quorum=3),
        name="quorum",
    )

@smithers
def deadline(ctx):
    decision = ctx.output_maybe("gate")
    return Workflow(
        Approval(id="gate", request=ApprovalRequest(title="Ship?"), timeout="1h",
                 on_deny="continue"),
        decision is not None and Task(id="after", output=bool, value=decision.approved),
        name="deadline",
    )

@smithers
def later(ctx):
    return Workflow(
        Timer(id="nap", duration="1h"),
        Signal(id="callback", output=int, timeout="30m", on_timeout="skip"),
        Task(id="use", output=int, needs={"n": "callback"}, run=lambda n: n),
        Task(id="last", output=str, value="done"),
        name="later",
    )
"""

# Waits for the GO file, then runs one CLI command (a fresh interpreter per racer).
ONCE = """
import os
import sys

from smithers.cli import main

folder = sys.argv[1]
open(os.path.join(folder, f"READY-{os.getpid()}"), "w").close()
while not os.path.exists(os.path.join(folder, "GO")):
    pass
main(sys.argv[2:])
"""


def setup(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The workflow file, the racer script, a clock file at START, and the child env."""
    write(tmp_path / "flows.py", FLOWS)
    write(tmp_path / "once.py", ONCE)
    clock_file = tmp_path / "clock"
    FileClock.write(str(clock_file), START)
    return tmp_path / "store", child_env(SMITHERS_TEST_CLOCK_FILE=str(clock_file))


def race(tmp_path: Path, env: dict[str, str], argvs: list[list[str]]) -> list[tuple[int, str]]:
    """Start one racer per argv, release them together, return (exit code, stderr) each."""
    import subprocess

    for ready in tmp_path.glob("READY-*"):
        ready.unlink()
    (tmp_path / "GO").unlink(missing_ok=True)
    procs = [
        subprocess.Popen(
            [sys.executable, str(tmp_path / "once.py"), str(tmp_path), *argv],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]
    try:
        wait_for(lambda: all((tmp_path / f"READY-{p.pid}").exists() for p in procs), "racers")
        (tmp_path / "GO").touch()
        return [(p.wait(timeout=HANG_GUARD), p.communicate()[1]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


def test_racing_voters_count_once_each_and_resolve_the_gate_once(tmp_path: Path) -> None:
    """Five voters (p0 twice) race on a quorum-3 gate: three votes count, one decision."""
    store, env = setup(tmp_path)
    parked = smithers_cli(store, "run", "flows.py:quorum", "--run-id", "q", cwd=tmp_path, env=env)
    assert parked.code == 3, parked.err
    voters = ["p0", "p0", "p1", "p2", "p3"]
    outcomes = race(
        tmp_path,
        env,
        [
            ["--store", str(store), "approve", "q", "--node", "gate", "--by", v, "--no-resume"]
            for v in voters
        ],
    )
    codes = [code for code, _ in outcomes]
    assert sorted(codes) == [0, 0, 0, 4, 4], outcomes
    for code, err in outcomes:
        if code == 4:
            assert "already approved" in err, err
    with opened(store) as s:
        [record] = s.approvals("q")
        types = Counter(e.type for e in s.events(run_id="q"))
    assert record.status == "approved"
    assert len({v["by"] for v in record.votes}) == len(record.votes) == 3
    assert types["approval.decided"] == 1
    assert types["approval.voted"] == 2


def test_a_person_racing_the_deadline_exactly_one_wins(tmp_path: Path) -> None:
    """After the deadline, `resume` (applying the timeout) races `approve`: one decision."""
    store, env = setup(tmp_path)
    rounds = 3
    starts = [
        spawn(store, "run", "flows.py:deadline", "--run-id", f"d{i}", cwd=tmp_path, env=env)
        for i in range(rounds)
    ]
    for proc in starts:
        assert finish(proc).code == 3
    FileClock.write(str(tmp_path / "clock"), START + HOUR)
    winners = Counter()
    for i in range(rounds):
        outcomes = race(
            tmp_path,
            env,
            [
                ["--store", str(store), "resume", f"d{i}"],
                ["--store", str(store), "approve", f"d{i}", "--node", "gate", "--by", "bob"],
            ],
        )
        with opened(store) as s:
            [record] = s.approvals(f"d{i}")
            types = Counter(e.type for e in s.events(run_id=f"d{i}"))
            run = s.get_run(f"d{i}")
        assert types["approval.expired"] + types["approval.decided"] == 1, outcomes
        assert run is not None
        assert run.status == "finished", outcomes
        if record.decided_by == "smithers:timeout":
            winners["deadline"] += 1
            assert record.status == "denied"
            assert outcomes[1][0] == 4
            assert "already denied by smithers:timeout" in outcomes[1][1]
        else:
            winners["person"] += 1
            assert (record.status, record.decided_by) == ("approved", "bob")
        assert sum(1 for code, _ in outcomes if code == 0) >= 1
    assert sum(winners.values()) == rounds


def test_a_timer_and_a_signal_timeout_survive_process_exits(tmp_path: Path) -> None:
    """run exits 3 on a timer; resume before it is due waits; after it the signal waits,
    and its timeout skips it in a later process."""
    store, env = setup(tmp_path)
    cli = lambda *args: smithers_cli(store, *args, cwd=tmp_path, env=env)  # noqa: E731
    first = cli("run", "flows.py:later", "--run-id", "t")
    assert first.code == 3, first.err
    assert "waiting for a timer" in first.out
    with opened(store) as s:
        run = s.get_run("t")
        assert run is not None
        assert (run.status, run.wake_at) == ("waiting-timer", START + HOUR)
        assert [d.run.run_id for d in s.due_runs(START + HOUR, 10)] == ["t"]
    assert cli("resume", "t").code == 3
    FileClock.write(str(tmp_path / "clock"), START + HOUR)
    second = cli("resume", "t")
    assert second.code == 3
    assert "waiting for a signal" in second.out
    FileClock.write(str(tmp_path / "clock"), START + HOUR + 1800)
    done = cli("--json", "resume", "t")
    assert done.code == 0, done.err
    with opened(store) as s:
        snapshot = s.load("t")
    assert snapshot is not None
    states = {key[0]: record.state for key, record in snapshot.nodes.items()}
    assert states == {
        "nap": "finished",
        "callback": "skipped",
        "use": "skipped",
        "last": "finished",
    }


def test_tick_wakes_a_timer_and_a_signal_timeout_across_process_exits(tmp_path: Path) -> None:
    """No owner alive: `smithers tick` before the timer is due resumes nothing; after it, the
    tick resumes the run, which then waits on the signal; after the signal's deadline another
    tick applies the timeout and the run finishes."""
    store, env = setup(tmp_path)
    cli = lambda *args: smithers_cli(store, *args, cwd=tmp_path, env=env)  # noqa: E731
    assert cli("run", "flows.py:later", "--run-id", "t").code == 3
    assert cli("tick").code == 0
    with opened(store) as s:
        run = s.get_run("t")
        assert run is not None
        assert run.status == "waiting-timer"
    FileClock.write(str(tmp_path / "clock"), START + HOUR)
    assert cli("tick").code == 0
    with opened(store) as s:
        run = s.get_run("t")
        assert run is not None
        assert run.status == "waiting-signal"
    FileClock.write(str(tmp_path / "clock"), START + HOUR + 1800)
    assert cli("tick").code == 0
    with opened(store) as s:
        run = s.get_run("t")
        assert run is not None
        assert run.status == "finished"
