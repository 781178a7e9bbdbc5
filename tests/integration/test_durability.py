"""Decisions outlive processes: a parked run is decided and finished by new processes, a
decision survives the death of the process that recorded it, and a live owner applies a
decision recorded by someone else."""

from __future__ import annotations

import getpass
import json
import random
import socket
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.helpers import (
    EXAMPLES,
    TASK_KIT,
    bodies,
    executions,
    finish,
    has_event,
    hold,
    inflight,
    kill9,
    node_states,
    opened,
    reaping,
    release,
    smithers_cli,
    spawn,
    wait_for,
    write,
)

GATED = (
    TASK_KIT
    + """
from smithers import Approval, ApprovalRequest, Parallel, Sequence, Task, Workflow, smithers


def build(task):
    ran("build", task)
    return "1.4.2"


def after(d, task):
    ran("after", task)
    hold_here("after", task)
    return f"{d.approved} by {d.decided_by}"


def slow(task):
    ran("slow", task)
    hold_here("slow", task)
    return "slow done"


def ask():
    with open(os.path.join(HERE, "requests.log"), "a") as log:
        log.write(f"{os.getpid()}\\n")
    return ApprovalRequest(title="Ship?")


@smithers
def gated(ctx):
    return Workflow(
        Sequence(
            Task(id="build", output=str, run=build),
            Approval(
                id="gate",
                needs={"version": "build"},
                request=lambda version: ApprovalRequest(title=f"Ship {version}?"),
            ),
            Task(id="after", output=str, needs={"d": "gate"}, run=after),
        ),
        name="gated",
    )


@smithers
def owned(ctx):
    return Workflow(
        Sequence(
            Parallel(
                Task(id="slow", output=str, run=slow),
                Approval(id="gate", request=ask),
            ),
            Task(id="after", output=str, needs={"d": "gate"}, run=after),
        ),
        name="owned",
    )
"""
)


def ran_in(folder: Path, run_id: str) -> Counter[str]:
    """How many times each task body ran for a run."""
    lines = executions(folder / "executions.log")
    return Counter(line.split()[1] for line in lines if line.split()[0] == run_id)


def test_a_parked_run_is_approved_and_finished_by_new_processes(tmp_path: Path) -> None:
    """A parked run is approved and finished by a new process; status shows who, when, why."""
    store = tmp_path / "store"
    example = str(EXAMPLES / "deploy.py")
    parked = smithers_cli(
        store, "run", example, "--input", '{"version": "1.4.2"}', "--run-id", "d", cwd=tmp_path
    )
    assert parked.code == 3, parked.err
    assert parked.out.splitlines()[:3] == [
        "Run d is waiting for approval.",
        "  approve-deploy: Deploy 1.4.2?",
        "    Roll 1.4.2 out to 3 regions, canary first.",
    ]
    assert f'approve: smithers approve d --node approve-deploy --store {store} --note "..."' in (
        parked.out
    )
    with opened(store) as s:
        run = s.get_run("d")
        assert run is not None
        assert (run.status, run.lease) == ("waiting-approval", None)

    approved = smithers_cli(
        store,
        "approve",
        "d",
        "--node",
        "approve-deploy",
        "--note",
        "Ship it",
        "--by",
        "alice",
        cwd=tmp_path,
    )
    assert approved.code == 0, approved.err
    assert "Approved `approve-deploy` of run d as alice." in approved.err.splitlines()
    assert approved.out.splitlines() == ["Run d finished."]

    with opened(store) as s:
        [record] = s.approvals("d")
    status = smithers_cli(store, "status", "d", cwd=tmp_path)
    assert status.code == 0, status.err
    assert status.out.splitlines()[0] == "Run d  finished"
    assert (
        f"  approve-deploy: approved by alice at {record.decided_at} - 'Ship it' "
        f"(recorded by {getpass.getuser()} on {socket.gethostname()})"
    ) in status.out.splitlines()
    output = smithers_cli(store, "output", "d", "record", cwd=tmp_path)
    assert (output.code, json.loads(output.out)) == (0, {"status": "approved"})


def test_a_decision_recorded_with_no_resume_is_applied_once_by_a_later_resume(
    tmp_path: Path,
) -> None:
    """approve --no-resume records and exits 0; a later resume applies the decision once."""
    write(tmp_path / "gated.py", GATED)
    store = tmp_path / "store"
    parked = smithers_cli(store, "run", "gated.py:gated", "--run-id", "r", cwd=tmp_path)
    assert parked.code == 3, parked.err
    recorded = smithers_cli(
        store, "approve", "r", "--node", "gate", "--by", "bob", "--no-resume", cwd=tmp_path
    )
    assert recorded.code == 0, recorded.err
    assert recorded.out.splitlines()[:2] == [
        "Approved `gate` of run r as bob.",
        "Run r is waiting for approval.",
    ]
    assert node_states(tmp_path / "store", "r")["gate"] == "waiting-approval"
    assert ran_in(tmp_path, "r") == {"build": 1}

    resumed = smithers_cli(store, "resume", "r", cwd=tmp_path)
    assert resumed.code == 0, resumed.err
    assert resumed.out.splitlines() == ["Run r finished."]
    again = smithers_cli(store, "resume", "r", cwd=tmp_path)
    assert (again.code, again.out.splitlines()) == (0, ["Run r finished."])
    assert ran_in(tmp_path, "r") == {"build": 1, "after": 1}
    with opened(store) as s:
        kinds = [(e.type, e.node_id) for e in s.events(run_id="r")]
        output = s.output("r", "after", ())
    assert kinds.count(("approval.decided", "gate")) == 1
    assert kinds.count(("node.finished", "gate")) == 1
    assert kinds.count(("run.resumed", None)) == 1
    assert output is not None
    assert b"True by bob" in output


# A seeded sweep of kill points after the decision commits: the approver dies before it
# resumes, while it resumes, or while the downstream task runs.
_RNG = random.Random(11)
KILL_DELAYS = [0.0, *(round(_RNG.uniform(0.0, 0.4), 3) for _ in range(2))]


@pytest.mark.parametrize("delay", KILL_DELAYS)
def test_killing_the_approver_after_the_decision_commits_loses_nothing(
    tmp_path: Path, delay: float
) -> None:
    """Approver killed after its decision commits: resume applies the decision exactly once."""
    write(tmp_path / "gated.py", GATED)
    store = tmp_path / "store"
    parked = smithers_cli(store, "run", "gated.py:gated", "--run-id", "r", cwd=tmp_path)
    assert parked.code == 3, parked.err
    hold(tmp_path, "r", "after")
    approver = spawn(store, "approve", "r", "--node", "gate", "--by", "dora", cwd=tmp_path)
    with reaping(approver):
        wait_for(lambda: has_event(store, "r", "approval.decided"), "the decision", proc=approver)
        time.sleep(delay)  # picks the kill point; nothing is asserted about time
        if approver.poll() is None:
            kill9(approver)
        else:
            finish(approver)
    release(tmp_path, "r")
    resumed = smithers_cli(store, "resume", "r", cwd=tmp_path)
    assert resumed.code == 0, resumed.err
    assert "Run r finished." in resumed.out

    with opened(store) as s:
        kinds = [(e.type, e.node_id) for e in s.events(run_id="r")]
        [record] = s.approvals("r")
        after_attempts = [(a.number, a.outcome) for a in s.attempts("r") if a.node_id == "after"]
        output = s.output("r", "after", ())
    assert kinds.count(("approval.decided", "gate")) == 1
    assert kinds.count(("node.finished", "gate")) == 1
    assert kinds.count(("node.finished", "after")) == 1
    assert (record.status, record.decided_by) == ("approved", "dora")
    # Every attempt but the last was cut off by the kill (possibly before its body began);
    # no attempt ran its body twice, and the one that counted ran it once.
    assert after_attempts[-1] == (len(after_attempts), "ok")
    assert all(outcome == "interrupted" for _, outcome in after_attempts[:-1])
    ran = bodies(tmp_path, "r")
    assert ran["build"] == [1]
    assert ran["after"] == sorted(set(ran["after"]))
    assert ran["after"][-1] == len(after_attempts)
    assert output is not None
    assert b"True by dora" in output
    status = smithers_cli(store, "status", "r", cwd=tmp_path)
    assert f"  gate: approved by dora at {record.decided_at}" in status.out


def test_a_decision_recorded_while_the_owner_runs_is_applied_by_that_owner(
    tmp_path: Path,
) -> None:
    """approve during a live run exits 0; the owner applies it mid-run and finishes the run."""
    write(tmp_path / "gated.py", GATED)
    store = tmp_path / "store"
    hold(tmp_path, "r", "slow")
    owner = spawn(store, "run", "gated.py:owned", "--run-id", "r", cwd=tmp_path)
    with reaping(owner):
        wait_for(inflight(tmp_path, "r", "slow"), "slow in flight", proc=owner)
        wait_for(lambda: has_event(store, "r", "approval.requested", "gate"), "the request")
        approved = smithers_cli(
            store, "approve", "r", "--node", "gate", "--by", "eve", cwd=tmp_path
        )
        assert approved.code == 0, approved.err
        assert approved.out.splitlines()[:2] == [
            f"Approved `gate` of run r as eve. Its owner (pid {owner.pid} on "
            f"{socket.gethostname()}) will apply it.",
            "Run r is running.",
        ]
        wait_for(
            lambda: node_states(store, "r")["gate"] == "finished",
            "the owner to apply it",
            proc=owner,
        )
        assert node_states(store, "r")["slow"] == "in-progress"
        release(tmp_path, "r")
        done = finish(owner)
    assert done.code == 0, done.err
    assert done.out.splitlines() == ["Run r finished."]
    with opened(store) as s:
        kinds = [(e.type, e.node_id) for e in s.events(run_id="r")]
        output = s.output("r", "after", ())
    assert ("run.waiting", None) not in kinds
    assert ("run.resumed", None) not in kinds
    assert kinds.count(("node.finished", "gate")) == 1
    assert output is not None
    assert b"True by eve" in output
    assert ran_in(tmp_path, "r") == {"slow": 1, "after": 1}


def test_approving_a_run_whose_owner_died_takes_it_over_and_finishes_it(tmp_path: Path) -> None:
    """Owner killed with a gate requested: `approve` sees no live owner, resumes, finishes."""
    write(tmp_path / "gated.py", GATED)
    store = tmp_path / "store"
    hold(tmp_path, "r", "slow")
    owner = spawn(store, "run", "gated.py:owned", "--run-id", "r", cwd=tmp_path)
    with reaping(owner):
        wait_for(inflight(tmp_path, "r", "slow"), "slow in flight", proc=owner)
        wait_for(lambda: has_event(store, "r", "approval.requested", "gate"), "the request")
        kill9(owner)
    release(tmp_path, "r")
    approved = smithers_cli(store, "approve", "r", "--by", "finn", cwd=tmp_path)
    assert approved.code == 0, approved.err
    assert "Approved `gate` of run r as finn." in approved.err.splitlines()
    assert "  interrupted slow (attempt 1); it will run again" in approved.err.splitlines()
    assert approved.out.splitlines() == ["Run r finished."]
    assert ran_in(tmp_path, "r") == {"slow": 2, "after": 1}
    # The request was computed once, by the dead owner, and reused by the new one.
    assert executions(tmp_path / "requests.log") == [str(owner.pid)]
    with opened(store) as s:
        output = s.output("r", "after", ())
    assert output is not None
    assert b"True by finn" in output


AGENT = """
import msgspec

from smithers import Signal, Task, Workflow, smithers


class Job(msgspec.Struct):
    job_id: str


class Result(msgspec.Struct):
    ok: bool


@smithers
def agent(ctx):
    job = ctx.output_maybe("start")
    return Workflow(
        Task(id="start", output=Job, value=Job(job_id="j-1")),
        Signal(id="done", output=Result, label=f"callback for {job.job_id}" if job else None),
        Task(id="after", output=bool, needs={"r": "done"}, run=lambda r: r.ok),
        name="agent",
    )
"""


def test_a_signal_from_a_new_process_reaches_a_run_whose_build_reads_its_outputs(
    tmp_path: Path,
) -> None:
    """`smithers signal` renders the parked run with typed outputs, records, and finishes it."""
    write(tmp_path / "agent.py", AGENT)
    store = tmp_path / "store"
    parked = smithers_cli(store, "run", "agent.py", "--run-id", "s", cwd=tmp_path)
    assert parked.code == 3, parked.err
    assert "Run s is waiting for a signal." in parked.out.splitlines()
    delivered = smithers_cli(
        store, "signal", "s", "--node", "done", "--data", '{"ok": true}', cwd=tmp_path
    )
    assert delivered.errors == []
    assert delivered.code == 0
    assert delivered.out.splitlines() == ["Run s finished."]
    with opened(store) as s:
        assert s.output("s", "after", ()) == b"\xc3"  # msgpack True
