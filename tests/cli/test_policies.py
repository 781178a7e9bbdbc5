"""The CLI side of approval policies: groups, the run's starter, refusals (exit 4), votes,
and the inbox and status showing deadline, time left, who may decide and votes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from smithers.runtime.clock import ManualClock, use_clock
from tests.cli.helpers import invoke, one_error, write

GATE = """
from smithers import Approval, ApprovalRequest, Escalation, Task, Workflow, smithers

@smithers
def release(ctx):
    return Workflow(
        Approval(
            id="gate",
            request=ApprovalRequest(title="Release?"),
            approvers=["group:release"],
            forbid_self=True,
            quorum=2,
            timeout="4h",
            remind_every="1h",
            escalate=[Escalation(after="2h", approvers=["group:leads"])],
        ),
        Task(id="ship", output=str, value="shipped"),
        name="release",
    )
"""


@pytest.fixture(autouse=True)
def clock() -> Iterator[ManualClock]:
    """A manual clock for every command in the test."""
    with use_clock(ManualClock()) as manual:
        assert isinstance(manual, ManualClock)
        yield manual


def test_group_add_list_remove(store_dir: Path) -> None:
    """Groups are made on first add, listed sorted, and removed person by person or whole."""
    s = str(store_dir)
    assert invoke("--store", s, "group", "add", "release", "bob", "alice").out == (
        "Group release: alice, bob.\n"
    )
    invoke("--store", s, "group", "add", "leads", "lena")
    assert invoke("--store", s, "group", "list").out == "leads: lena\nrelease: alice, bob\n"
    assert invoke("--store", s, "--json", "group", "list").json() == [
        {"name": "leads", "members": ["lena"]},
        {"name": "release", "members": ["alice", "bob"]},
    ]
    assert invoke("--store", s, "group", "remove", "release", "bob").out == (
        "Group release: alice.\n"
    )
    assert invoke("--store", s, "group", "remove", "leads").out == "Group leads removed.\n"
    assert one_error(invoke("--store", s, "group", "remove", "leads")) == (
        "Error: No group `leads` in this store; list groups with `smithers group list`."
    )
    assert one_error(invoke("--store", s, "group", "add", "a b", "x")).startswith(
        "Error: Group name 'a b' is invalid"
    )


def test_a_policy_gate_from_run_to_finish(
    tmp_path: Path, store_dir: Path, clock: ManualClock
) -> None:
    """The starter is recorded and shown; a refusal exits 4 naming who may decide; a vote
    waits for the quorum; the inbox and status show deadline, time left and votes."""
    write(tmp_path, "flow.py", GATE)
    s = str(store_dir)
    invoke("--store", s, "group", "add", "release", "alice", "bob", "carol")
    parked = invoke("--store", s, "run", "flow.py", "--run-id", "r", "--by", "alice")
    assert parked.code == 3, parked.err
    status = invoke("--store", s, "status", "r").out
    assert "  started by: alice\n" in status
    assert "    may decide: group:release (bob, carol)\n" in status
    assert "    deadline: 2026-01-01T04:00:00.000000Z (4h left), then deny\n" in status

    refused = invoke("--store", s, "approve", "r", "--by", "alice", "--yes")
    assert one_error(refused) == (
        "Error: `alice` started the run and gate `gate` of run `r` forbids self-approval; "
        "ask group:release (bob, carol)."
    )
    outsider = invoke("--store", s, "approve", "r", "--by", "mallory", "--yes")
    assert one_error(outsider) == (
        "Error: `mallory` may not decide gate `gate` of run `r`; ask group:release (bob, carol)."
    )
    clock.advance(1800)
    voted = invoke("--store", s, "approve", "r", "--by", "bob", "--note", "ok", "--yes")
    assert voted.code == 0, voted.err  # recorded; the run waits for the next vote
    assert "Recorded bob's approval of `gate` of run r (1 of 2 approvals)" in voted.err + voted.out

    inbox = invoke("--store", s, "approvals").out
    assert "  deadline: 2026-01-01T04:00:00.000000Z (3h30m left), then deny\n" in inbox
    assert "  approvals: 1 of 2\n" in inbox
    assert "    bob approved at 2026-01-01T00:30:00.000000Z - 'ok'\n" in inbox
    [row] = invoke("--store", s, "--json", "approvals").json()
    assert row["deadline"] == "2026-01-01T04:00:00.000000Z"
    assert row["time_left"] == 3.5 * 3600
    assert row["approvers"] == ["group:release"]
    assert row["quorum"] == 2
    assert [v["by"] for v in row["votes"]] == ["bob"]
    [pending] = invoke("--store", s, "--json", "status", "r").json()["pending"]
    assert pending["votes"] == row["votes"]
    assert invoke("--store", s, "--json", "status", "r").json()["run"]["started_by"] == "alice"

    done = invoke("--store", s, "approve", "r", "--by", "carol", "--yes")
    assert done.code == 0, done.err
    assert "Run r finished." in done.out


def test_run_by_defaults_to_smithers_actor(tmp_path: Path, store_dir: Path) -> None:
    """Without --by the starter is $SMITHERS_ACTOR."""
    write(tmp_path, "flow.py", GATE)
    s = str(store_dir)
    invoke("--store", s, "run", "flow.py", "--run-id", "r", env={"SMITHERS_ACTOR": "dora"})
    assert invoke("--store", s, "--json", "status", "r").json()["run"]["started_by"] == "dora"


TIMER = """
from smithers import Timer, Workflow, smithers

@smithers
def nap(ctx):
    return Workflow(Timer(id="nap", duration="90m"), name="nap")
"""


def test_a_pending_timer_exits_3_and_status_shows_when_it_fires(
    tmp_path: Path, store_dir: Path
) -> None:
    """run exits 3 on a timer; status says when it fires."""
    write(tmp_path, "nap.py", TIMER)
    s = str(store_dir)
    parked = invoke("--store", s, "run", "nap.py", "--run-id", "n")
    assert parked.code == 3
    assert "Run n is waiting for a timer." in parked.out
    status = invoke("--store", s, "status", "n").out
    assert "Due times:\n  nap fires at 2026-01-01T01:30:00.000000Z\n" in status


def test_the_confirmation_shows_the_deadline_and_the_approvals_so_far() -> None:
    """Before asking, approve shows a policy gate's deadline and its approvals so far."""
    from click.testing import CliRunner

    from smithers.cli.decide import _confirm
    from smithers.cli.options import Fail
    from smithers.store.records import ApprovalRecord

    record = ApprovalRecord(
        node_id="gate",
        status="requested",
        request={"title": "Release?"},
        requested_at="2026-01-01T00:00:00.000000Z",
        policy={"quorum": 2},
        votes=({"by": "bob", "approved": True, "note": None, "at": "x"},),
        deadline="2026-01-01T04:00:00.000000Z",
    )
    with CliRunner().isolation(input="n\n") as (_, err, _):
        with pytest.raises(Fail, match="not confirmed; nothing was recorded"):
            _confirm("r", True)("gate", (), record)
        shown = err.getvalue().decode()
    assert "  deadline 2026-01-01T04:00:00.000000Z\n" in shown
    assert "  approvals so far: 1 of 2\n" in shown
