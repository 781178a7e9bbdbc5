"""Racing processes: deciders of one gate, and executors of one run. Exactly one wins."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.helpers import (
    HANG_GUARD,
    TASK_KIT,
    child_env,
    executions,
    finish,
    hold,
    inflight,
    opened,
    reaping,
    smithers_cli,
    spawn,
    wait_for,
    write,
)

GATES = 20
RACERS = 4

WIDE = (
    TASK_KIT
    + f"""
from smithers import Approval, ApprovalRequest, Parallel, Task, Workflow, smithers


def after(d, task):
    ran("after", task)
    return d.approved


@smithers
def wide(ctx):
    return Workflow(
        Parallel(
            *[
                Approval(
                    id=f"g{{i}}", request=ApprovalRequest(title=f"Gate {{i}}?"), on_deny="continue"
                )
                for i in range({GATES})
            ]
        ),
        name="wide",
    )


@smithers
def single(ctx):
    return Workflow(
        Approval(id="gate", request=ApprovalRequest(title="Ship?"), on_deny="continue"),
        Task(id="after", output=bool, needs={{"d": "gate"}}, run=after),
        name="single",
    )
"""
)

# A racer imports the CLI once, then for each round: says it is ready, spins until the
# test says go, and runs one `smithers approve|deny` through the CLI's own entry point.
# Spinning on a file lines the racers up within a millisecond or so of each other, far
# closer than separately started interpreters would be.
RACER = """
import contextlib
import io
import json
import os
import sys

from smithers.cli import main

folder, store, run_id = sys.argv[1:4]
me, rounds = int(sys.argv[4]), int(sys.argv[5])
results = []
for g in range(rounds):
    verb = "approve" if (me + g) % 2 == 0 else "deny"
    open(os.path.join(folder, f"READY-{g}-{me}"), "w").close()
    go = os.path.join(folder, f"GO-{g}")
    while not os.path.exists(go):
        pass
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(["--store", store, verb, run_id, "--node", f"g{g}", "--by", f"racer-{me}",
                  "--no-resume"])
        except SystemExit as exc:
            code = exc.code
    results.append({"me": me, "gate": f"g{g}", "verb": verb, "code": code, "err": err.getvalue()})
with open(os.path.join(folder, f"RESULT-{me}.json"), "w") as out:
    json.dump(results, out)
"""

# One decision from a fresh interpreter, released by the GO file; the process exits with the
# CLI's own exit code.
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


def python(script: Path, *args: str, cwd: Path) -> subprocess.Popen[str]:
    """Start a helper script in a new interpreter."""
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        cwd=cwd,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _without_resume_hint(line: str, run_id: str) -> str:
    """An "already decided" line without the hint added while the decision is not applied."""
    hint = f"; that decision is not applied yet: go on with `smithers resume {run_id}`."
    return line[: -len(hint)] + "." if line.endswith(hint) else line


def test_racing_deciders_decide_each_gate_exactly_once(tmp_path: Path) -> None:
    """4 processes race on each of 20 gates: one decision each; losers exit 4 naming it."""
    write(tmp_path / "wide.py", WIDE)
    write(tmp_path / "racer.py", RACER)
    store = tmp_path / "store"
    parked = smithers_cli(store, "run", "wide.py:wide", "--run-id", "race", cwd=tmp_path)
    assert parked.code == 3, parked.err

    racers = [
        python(
            tmp_path / "racer.py",
            str(tmp_path),
            str(store),
            "race",
            str(me),
            str(GATES),
            cwd=tmp_path,
        )
        for me in range(RACERS)
    ]
    try:
        for g in range(GATES):
            wait_for(
                lambda g=g: all((tmp_path / f"READY-{g}-{me}").exists() for me in range(RACERS)),
                f"racers ready for round {g}",
            )
            (tmp_path / f"GO-{g}").touch()
        for racer in racers:
            racer.communicate(timeout=HANG_GUARD)
            assert racer.returncode == 0
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
                racer.communicate()

    results = [
        r for me in range(RACERS) for r in json.loads((tmp_path / f"RESULT-{me}.json").read_text())
    ]
    with opened(store) as s:
        records = {a.node_id: a for a in s.approvals("race")}
        decided = Counter(
            e.node_id for e in s.events(run_id="race") if e.type == "approval.decided"
        )
    assert decided == {f"g{g}": 1 for g in range(GATES)}
    for g in range(GATES):
        gate = f"g{g}"
        entries = [r for r in results if r["gate"] == gate]
        assert sorted(r["code"] for r in entries) == [0, 4, 4, 4], entries
        [winner] = [r for r in entries if r["code"] == 0]
        record = records[gate]
        status = "approved" if winner["verb"] == "approve" else "denied"
        assert record.status == status
        winner_name = f"racer-{winner['me']}"
        assert record.decided_by == winner_name
        for loser in entries:
            if loser["code"] == 0:
                continue
            errors = [line for line in loser["err"].splitlines() if line.startswith("Error:")]
            # While nothing has applied the winner's decision yet, the refusal also says how
            # to apply it (whether a loser sees that moment is a matter of timing).
            assert [_without_resume_hint(line, "race") for line in errors] == [
                f"Error: Gate `{gate}` of run `race` was already {status} by {winner_name} at "
                f"{record.decided_at}; a decision is final."
            ]


def test_racing_decider_processes_one_resumes_the_rest_exit_4(tmp_path: Path) -> None:
    """Racing approve/deny processes: the winner resumes and finishes; the others exit 4."""
    write(tmp_path / "wide.py", WIDE)
    write(tmp_path / "once.py", ONCE)
    store = tmp_path / "store"
    parked = smithers_cli(store, "run", "wide.py:single", "--run-id", "one", cwd=tmp_path)
    assert parked.code == 3, parked.err
    verbs = ["approve", "deny", "approve", "deny"]
    procs = [
        python(
            tmp_path / "once.py",
            str(tmp_path),
            "--store",
            str(store),
            verb,
            "one",
            "--node",
            "gate",
            "--by",
            f"p{i}",
            cwd=tmp_path,
        )
        for i, verb in enumerate(verbs)
    ]
    try:
        wait_for(
            lambda: all((tmp_path / f"READY-{p.pid}").exists() for p in procs), "deciders ready"
        )
        (tmp_path / "GO").touch()
        outcomes = [(p.communicate(timeout=HANG_GUARD), p.returncode) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    codes = [code for _, code in outcomes]
    assert sorted(codes) == [0, 4, 4, 4], outcomes
    winner = codes.index(0)
    (winner_out, _), _ = outcomes[winner]
    assert winner_out.splitlines() == ["Run one finished."]
    status = "approved" if verbs[winner] == "approve" else "denied"
    with opened(store) as s:
        [record] = s.approvals("one")
        run = s.get_run("one")
        after = s.output("one", "after", ())
    assert (record.status, record.decided_by) == (status, f"p{winner}")
    assert run is not None
    assert run.status == "finished"
    assert after == (b"\xc3" if status == "approved" else b"\xc2")  # msgpack True / False
    for i, ((_, err), _code) in enumerate(outcomes):
        if i == winner:
            continue
        errors = [line for line in err.splitlines() if line.startswith("Error:")]
        assert [_without_resume_hint(line, "one") for line in errors] == [
            f"Error: Gate `gate` of run `one` was already {status} by p{winner} at "
            f"{record.decided_at}; a decision is final."
        ]
    ran = [line.split()[1] for line in executions(tmp_path / "executions.log")]
    assert ran == ["after"]


def test_racing_resumes_of_a_decided_run_apply_the_decision_once(tmp_path: Path) -> None:
    """Racing `resume` processes on a decided run apply the decision and run downstream once."""
    write(tmp_path / "wide.py", WIDE)
    write(tmp_path / "once.py", ONCE)
    store = tmp_path / "store"
    parked = smithers_cli(store, "run", "wide.py:single", "--run-id", "one", cwd=tmp_path)
    assert parked.code == 3, parked.err
    recorded = smithers_cli(store, "approve", "one", "--no-resume", "--by", "kim", cwd=tmp_path)
    assert recorded.code == 0, recorded.err
    procs = [
        python(
            tmp_path / "once.py",
            str(tmp_path),
            "--store",
            str(store),
            "resume",
            "one",
            cwd=tmp_path,
        )
        for _ in range(3)
    ]
    try:
        wait_for(lambda: all((tmp_path / f"READY-{p.pid}").exists() for p in procs), "ready")
        (tmp_path / "GO").touch()
        outcomes = [(p.communicate(timeout=HANG_GUARD), p.returncode) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert 0 in [code for _, code in outcomes]
    for (out, err), code in outcomes:
        if code == 0:
            assert out.splitlines() == ["Run one finished."]
        else:
            assert code == 4, (out, err)
            assert re.fullmatch(
                r"Error: Run `one` is being executed by pid \d+ on .+; wait for it, or stop that "
                r"process first\.",
                err.splitlines()[-1],
            )
    with opened(store) as s:
        kinds = [(e.type, e.node_id) for e in s.events(run_id="one")]
    assert kinds.count(("node.finished", "gate")) == 1
    assert kinds.count(("node.finished", "after")) == 1
    assert [line.split()[1] for line in executions(tmp_path / "executions.log")] == ["after"]


PARKING = (
    TASK_KIT
    + """
from smithers import Approval, ApprovalRequest, Parallel, Sequence, Task, Workflow, smithers


def slow(task):
    ran("slow", task)
    hold_here("slow", task)
    return 1


def after(d, task):
    ran("after", task)
    return d.decided_by


@smithers
def parking(ctx):
    return Workflow(
        Sequence(
            Parallel(
                Task(id="slow", output=int, run=slow),
                Approval(id="gate", request=ApprovalRequest(title="Ship?")),
            ),
            Task(id="after", output=str, needs={"d": "gate"}, run=after),
        ),
        name="parking",
    )
"""
)

# An approver that lets the owner go on (RELEASE) just before it records its decision, then
# waits a seeded gap: the decision lands before, while, or after the owner parks.
PARK_RACER = """
import os
import sys
import time

from smithers.cli import main
from smithers.store.kv.kvstore import KVStore

folder, gap = sys.argv[1], float(sys.argv[2])
decide = KVStore.decide


def release_then_decide(self, run_id, decision):
    open(os.path.join(folder, f"RELEASE-{run_id}"), "w").close()
    time.sleep(gap)
    return decide(self, run_id, decision)


KVStore.decide = release_then_decide
main(sys.argv[3:])
"""
_RNG = random.Random(5)
PARK_GAPS = [0.0, *(round(_RNG.uniform(0.0, 0.025), 3) for _ in range(3))]


@pytest.mark.parametrize("gap", PARK_GAPS)
def test_a_decision_racing_the_owner_parking_is_never_lost(tmp_path: Path, gap: float) -> None:
    """approve while the owner parks: the owner or the approver applies it; the run finishes."""
    write(tmp_path / "parking.py", PARKING)
    write(tmp_path / "park_racer.py", PARK_RACER)
    store = tmp_path / "store"
    hold(tmp_path, "r", "slow")
    owner = spawn(store, "run", "parking.py", "--run-id", "r", cwd=tmp_path)
    with reaping(owner):
        wait_for(inflight(tmp_path, "r", "slow"), "slow in flight", proc=owner)
        approver = python(
            tmp_path / "park_racer.py",
            str(tmp_path),
            str(gap),
            "--store",
            str(store),
            "approve",
            "r",
            "--node",
            "gate",
            "--by",
            "ivy",
            cwd=tmp_path,
        )
        with reaping(approver):
            decided = finish(approver)
        owned = finish(owner)
    assert decided.code == 0, decided.err
    assert owned.code in (0, 3), owned.err
    with opened(store) as s:
        run = s.get_run("r")
        kinds = [(e.type, e.node_id) for e in s.events(run_id="r")]
        output = s.output("r", "after", ())
    assert run is not None
    assert (run.status, run.lease) == ("finished", None)
    assert kinds.count(("node.finished", "gate")) == 1
    assert output is not None
    assert b"ivy" in output
    assert [line.split()[1] for line in executions(tmp_path / "executions.log")] == [
        "slow",
        "after",
    ]
