"""`smithers approve`, `deny` and `signal`: record, then resume in the same process."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from smithers.runtime.lease import hostname, is_dead, new_lease
from smithers.store import Batch
from tests.cli.helpers import (
    EXAMPLES,
    GATE,
    GATE_THEN_SIGNAL,
    LOOP_GATE,
    SIGNAL,
    TWO_GATES,
    invoke,
    one_error,
    read_store,
    store_state,
    write,
)

BAD_CALLBACK = (
    "Error: Data for signal `callback` does not match `Callback`: Expected `bool`, got `int` - "
    "at `$.ok`; pass --data matching `Callback`."
)


@pytest.fixture
def parked(tmp_path: Path, store_dir: Path) -> str:
    """A run (r1) of the gated workflow parked at its gate, in store_dir."""
    write(tmp_path, "gate.py", GATE)
    assert invoke("--store", str(store_dir), "run", "gate.py", "--run-id", "r1").code == 3
    return "r1"


def _approval(store_dir: Path, run_id: str, node: str, iteration: tuple[int, ...] = ()) -> Any:
    store = read_store(store_dir)
    try:
        return next(
            a
            for a in store.approvals(run_id)
            if a.node_id == node and tuple(a.iteration) == iteration
        )
    finally:
        store.close()


def _signals(store_dir: Path, run_id: str) -> list[Any]:
    store = read_store(store_dir)
    try:
        return store.signals(run_id)
    finally:
        store.close()


def _status(store_dir: Path, run_id: str) -> str:
    return invoke("--store", str(store_dir), "--json", "status", run_id).json()["run"]["status"]


# -- approve / deny, then resume ----------------------------------------------------------------


def test_approve_records_then_resumes_to_finished(
    tmp_path: Path, store_dir: Path, parked: str
) -> None:
    """`approve` records the decision, resumes the run here and exits with its code (0)."""
    result = invoke("--store", str(store_dir), "approve", "r1", "--node", "gate", "--by", "bob")
    assert result.code == 0
    assert result.out == "Run r1 finished.\n"
    assert result.err_lines[:2] == [
        "Approved `gate` of run r1 as bob.",
        f"Run r1 resumed (pid {os.getpid()})",
    ]
    assert (tmp_path / "shipped.txt").read_text() == "plan-1.0"
    record = _approval(store_dir, "r1", "gate")
    assert (record.status, record.decided_by) == ("approved", "bob")


def test_deny_with_on_deny_fail_exits_1(tmp_path: Path, store_dir: Path, parked: str) -> None:
    """Denying an `on_deny="fail"` gate fails the run: exit 1, the denial named."""
    result = invoke("--store", str(store_dir), "deny", "r1", "--by", "carol", "--note", "nope")
    assert result.code == 1
    assert result.out.splitlines() == [
        "Run r1 failed.",
        "  ApprovalDenied at `gate`: Gate `gate` was denied by carol: nope",
    ]
    assert result.err_lines[0] == "Denied `gate` of run r1 as carol."
    assert not (tmp_path / "shipped.txt").exists()


def test_deny_with_on_deny_continue_goes_on(tmp_path: Path, store_dir: Path) -> None:
    """The publish example: a denial is data, the rejection branch records the note."""
    publish = str(EXAMPLES / "publish.py")
    assert invoke("--store", str(store_dir), "run", publish, "--run-id", "p1").code == 3
    result = invoke("--store", str(store_dir), "deny", "p1", "--note", "Numbers not final")
    assert result.code == 0
    assert result.out == "Run p1 finished.\n"
    rejected = invoke("--store", str(store_dir), "output", "p1", "record-rejection")
    assert json.loads(rejected.out) == {"status": "rejected", "reason": "Numbers not final"}
    assert one_error(invoke("--store", str(store_dir), "output", "p1", "publish")) == (
        "Error: Run `p1` has no node `publish`; its nodes: `draft`, `approve-release`, "
        "`record-rejection`."
    )


def test_approve_the_deploy_example(tmp_path: Path, store_dir: Path) -> None:
    """The deploy example: approve (with --yes) records `approved` in its last task."""
    deploy = str(EXAMPLES / "deploy.py")
    assert invoke("--store", str(store_dir), "run", deploy, "--run-id", "d1").code == 3
    result = invoke("--store", str(store_dir), "approve", "d1", "--node", "approve-deploy", "--yes")
    assert result.code == 0
    record = invoke("--store", str(store_dir), "output", "d1", "record")
    assert json.loads(record.out) == {"status": "approved"}


def test_approve_json_document(tmp_path: Path, store_dir: Path, parked: str) -> None:
    """`approve --json` prints the resumed run's document."""
    result = invoke("--store", str(store_dir), "approve", "r1", "--json", "--by", "bob")
    assert result.code == 0
    assert result.err_lines[0] == "Approved `gate` of run r1 as bob."
    document = result.json()
    assert (document["run_id"], document["status"], document["error"], document["pending"]) == (
        "r1",
        "finished",
        None,
        [],
    )


def test_approve_exits_3_when_the_run_waits_again(tmp_path: Path, store_dir: Path) -> None:
    """A gate inside loops: approving iteration 0.0 resumes to the next request (exit 3)."""
    write(tmp_path, "loop.py", LOOP_GATE)
    first = invoke("--store", str(store_dir), "run", "loop.py", "--run-id", "l1")
    assert first.code == 3
    assert f"  approve: smithers approve l1 --node gate --iteration 0.0 --store {store_dir}" in (
        first.out.replace(' --note "..."', "").splitlines()
    )
    again = invoke(
        "--store", str(store_dir), "approve", "l1", "--node", "gate", "--iteration", "0.0"
    )
    assert again.code == 3
    assert again.err_lines[0] == "Approved `gate` iteration 0.0 of run l1 as " + (
        _approval(store_dir, "l1", "gate", (0, 0)).decided_by + "."
    )
    assert again.out.splitlines()[1] == "  gate (iteration 1.0): Round?"
    done = invoke(
        "--store", str(store_dir), "approve", "l1", "--node", "gate", "--iteration", "1.0"
    )
    assert done.code == 0
    assert done.out == "Run l1 finished.\n"
    assert _approval(store_dir, "l1", "gate", (1, 0)).status == "approved"


def test_approve_iteration_not_yet_requested(tmp_path: Path, store_dir: Path) -> None:
    """--iteration 1.0 before that iteration's request is refused; nothing written."""
    write(tmp_path, "loop.py", LOOP_GATE)
    invoke("--store", str(store_dir), "run", "loop.py", "--run-id", "l1")
    before = store_state(store_dir)
    result = invoke(
        "--store", str(store_dir), "approve", "l1", "--node", "gate", "--iteration", "1.0"
    )
    assert one_error(result) == (
        "Error: Gate `gate` iteration 1.0 of run `l1` has not been requested; decide it once "
        "`smithers approvals` lists it."
    )
    assert store_state(store_dir) == before


def test_no_resume_records_and_leaves_the_run_waiting(
    tmp_path: Path, store_dir: Path, parked: str
) -> None:
    """--no-resume exits 0 once recorded; the run stays waiting and nothing runs."""
    result = invoke("--store", str(store_dir), "approve", "r1", "--no-resume", "--by", "bob")
    assert result.code == 0
    assert result.out.splitlines()[:2] == [
        "Approved `gate` of run r1 as bob.",
        "Run r1 is waiting for approval.",
    ]
    assert _status(store_dir, "r1") == "waiting-approval"
    assert _approval(store_dir, "r1", "gate").status == "approved"
    assert not (tmp_path / "shipped.txt").exists()
    events = invoke("--store", str(store_dir), "--json", "events", "r1").json()
    assert events[-1]["type"] == "approval.decided"
    assert "run.resumed" not in [e["type"] for e in events]


def test_no_resume_json_carries_the_note(tmp_path: Path, store_dir: Path, parked: str) -> None:
    """`--no-resume --json` prints one document whose `note` says what was recorded."""
    result = invoke("--store", str(store_dir), "deny", "r1", "--no-resume", "--json", "--by", "x")
    assert result.code == 0
    document = result.json()
    assert document["status"] == "waiting-approval"
    assert document["note"] == "Denied `gate` of run r1 as x."


def test_decision_for_a_run_with_a_live_owner_is_left_to_it(
    tmp_path: Path, store_dir: Path, parked: str
) -> None:
    """If a live process owns the run, approve records, says the owner applies it, exits 0."""
    store = read_store(store_dir)
    try:
        store.acquire("r1", new_lease(), is_dead=is_dead, batch=Batch())
    finally:
        store.close()
    result = invoke("--store", str(store_dir), "approve", "r1", "--by", "bob")
    assert result.code == 0
    assert result.out.splitlines()[0] == (
        f"Approved `gate` of run r1 as bob. Its owner (pid {os.getpid()} on {hostname()}) "
        "will apply it."
    )
    assert _approval(store_dir, "r1", "gate").status == "approved"
    assert not (tmp_path / "shipped.txt").exists()


# -- who decides, and the note -------------------------------------------------------------------


def test_decider_is_by_then_actor_then_os_user(tmp_path: Path, store_dir: Path) -> None:
    """--by wins over $SMITHERS_ACTOR, which wins over the OS user; the OS user records."""
    write(tmp_path, "gate.py", GATE)
    for run_id in ("a", "b", "c"):
        invoke("--store", str(store_dir), "run", "gate.py", "--run-id", run_id)
    env = {"SMITHERS_ACTOR": "carol", "LOGNAME": "dave", "USER": "dave"}
    invoke("--store", str(store_dir), "approve", "a", "--by", "bob", env=env)
    invoke("--store", str(store_dir), "approve", "b", env=env)
    invoke("--store", str(store_dir), "approve", "c", env={**env, "SMITHERS_ACTOR": None})
    decided = {r: _approval(store_dir, r, "gate") for r in ("a", "b", "c")}
    assert {r: a.decided_by for r, a in decided.items()} == {"a": "bob", "b": "carol", "c": "dave"}
    assert {a.decision["decided_by"] for a in decided.values()} == {"bob", "carol", "dave"}
    assert {a.recorded_by for a in decided.values()} == {"dave"}


def test_note_lands_in_status_and_the_approval_record(
    tmp_path: Path, store_dir: Path, parked: str
) -> None:
    """--note is kept in the approval record and shown by `status` (text and JSON)."""
    invoke("--store", str(store_dir), "approve", "r1", "--note", "Ship it Friday", "--by", "ann")
    record = _approval(store_dir, "r1", "gate")
    assert record.decision["note"] == "Ship it Friday"
    text = invoke("--store", str(store_dir), "status", "r1").out.splitlines()
    assert text[text.index("Decisions:") + 1] == (
        f"  gate: approved by ann at {record.decided_at} - 'Ship it Friday' "
        f"(recorded by {record.recorded_by} on {record.recorded_on})"
    )
    document = invoke("--store", str(store_dir), "status", "r1", "--json").json()
    (decision,) = document["decisions"]
    assert decision["decision"]["note"] == "Ship it Friday"
    assert decision["decided_by"] == "ann"


# -- refusals: exit 4, one exact line, nothing written -------------------------------------------


def test_approve_unknown_run(tmp_path: Path, store_dir: Path, parked: str) -> None:
    """An unknown run id is refused and names the store."""
    before = store_state(store_dir)
    for verb in ("approve", "deny"):
        assert one_error(invoke("--store", str(store_dir), verb, "nope", "--node", "gate")) == (
            f"Error: No run `nope` in the store at {store_dir}; list runs with `smithers runs`."
        )
    assert store_state(store_dir) == before


def test_approve_unknown_node(tmp_path: Path, store_dir: Path, parked: str) -> None:
    """An unknown node is refused and the run's gates are listed."""
    before = store_state(store_dir)
    assert one_error(invoke("--store", str(store_dir), "approve", "r1", "--node", "zzz")) == (
        "Error: Run `r1` has no node `zzz`; its gates: `gate`."
    )
    assert store_state(store_dir) == before


def test_approve_a_task(tmp_path: Path, store_dir: Path, parked: str) -> None:
    """A task is not a gate: refused, naming its kind."""
    before = store_state(store_dir)
    assert one_error(invoke("--store", str(store_dir), "deny", "r1", "--node", "build")) == (
        "Error: Node `build` of run `r1` is a task, not an approval gate; only Approval nodes "
        "take approve/deny."
    )
    assert store_state(store_dir) == before


def test_approve_a_signal_and_a_gate_not_yet_requested(tmp_path: Path, store_dir: Path) -> None:
    """The developer-approval example parked at its Signal: neither it nor the later gate
    can be decided yet."""
    flow = str(EXAMPLES / "review_sketch.py")
    assert invoke("--store", str(store_dir), "run", flow, "--run-id", "d1").code == 3
    before = store_state(store_dir)
    s = str(store_dir)
    assert one_error(invoke("--store", s, "approve", "d1", "--node", "agent-done")) == (
        "Error: Node `agent-done` of run `d1` is a signal, not an approval gate; only Approval "
        "nodes take approve/deny."
    )
    assert one_error(invoke("--store", s, "approve", "d1", "--node", "approve-change")) == (
        "Error: Gate `approve-change` of run `d1` has not been requested; decide it once "
        "`smithers approvals` lists it."
    )
    assert one_error(invoke("--store", s, "approve", "d1")) == (
        "Error: Run `d1` has no requested gate; see `smithers status d1`."
    )
    assert store_state(store_dir) == before


def test_approve_an_already_decided_gate(tmp_path: Path, store_dir: Path, parked: str) -> None:
    """A second decision is refused, naming who decided, what and when (and, since nothing
    applied the first yet, how to apply it)."""
    invoke(
        "--store", str(store_dir), "approve", "r1", "--no-resume", "--by", "bob", "--note", "fine"
    )
    decided_at = _approval(store_dir, "r1", "gate").decided_at
    before = store_state(store_dir)
    expected = (
        f"Error: Gate `gate` of run `r1` was already approved by bob at {decided_at} ('fine'); "
        "a decision is final; that decision is not applied yet: go on with `smithers resume r1`."
    )
    assert one_error(invoke("--store", str(store_dir), "deny", "r1", "--node", "gate")) == expected
    assert one_error(invoke("--store", str(store_dir), "approve", "r1", "--node", "gate")) == (
        expected
    )
    assert store_state(store_dir) == before


def test_approve_an_already_denied_gate_after_the_run_ended(
    tmp_path: Path, store_dir: Path, parked: str
) -> None:
    """After a denial failed the run, approving the gate names the denial."""
    invoke("--store", str(store_dir), "deny", "r1", "--by", "carol")
    decided_at = _approval(store_dir, "r1", "gate").decided_at
    before = store_state(store_dir)
    assert one_error(invoke("--store", str(store_dir), "approve", "r1", "--node", "gate")) == (
        f"Error: Gate `gate` of run `r1` was already denied by carol at {decided_at}; a decision "
        "is final."
    )
    assert store_state(store_dir) == before


@pytest.mark.parametrize("iteration", ["x", "-1", "1..0", "1.a"])
def test_approve_bad_iteration(
    tmp_path: Path, store_dir: Path, parked: str, iteration: str
) -> None:
    """An --iteration that is not dot-separated numbers is refused."""
    before = store_state(store_dir)
    result = invoke(
        "--store", str(store_dir), "approve", "r1", "--node", "gate", "--iteration", iteration
    )
    assert one_error(result) == (
        f"Error: --iteration {iteration!r} is invalid; pass dot-separated numbers such as 1.0."
    )
    assert store_state(store_dir) == before


def test_approve_without_node_among_several_gates(tmp_path: Path, store_dir: Path) -> None:
    """With two requested gates (a Parallel), leaving out --node lists them."""
    write(tmp_path, "two.py", TWO_GATES)
    assert invoke("--store", str(store_dir), "run", "two.py", "--run-id", "t1").code == 3
    before = store_state(store_dir)
    assert one_error(invoke("--store", str(store_dir), "approve", "t1")) == (
        "Error: Run `t1` has 2 requested gates (`left`, `right`); name one with --node "
        "(and --iteration)."
    )
    assert store_state(store_dir) == before
    left = invoke("--store", str(store_dir), "approve", "t1", "--node", "left")
    assert left.code == 3
    right = invoke("--store", str(store_dir), "deny", "t1")
    assert right.code == 0
    assert _approval(store_dir, "t1", "right").status == "denied"


def test_approve_when_the_definition_cannot_load(
    tmp_path: Path, store_dir: Path, parked: str
) -> None:
    """A workflow file moved after the run parked: refused without --no-resume, nothing
    written, and the hint names --no-resume and --workflow."""
    (tmp_path / "gate.py").rename(tmp_path / "moved.py")
    before = store_state(store_dir)
    for verb in ("approve", "deny"):
        assert one_error(invoke("--store", str(store_dir), verb, "r1", "--node", "gate")) == (
            "Error: Cannot load the workflow run `r1` was started from (no workflow file at "
            f"`{tmp_path / 'gate.py'}`); pass --no-resume to only record the decision, or "
            "--workflow FILE[:ATTR]."
        )
    assert store_state(store_dir) == before
    recorded = invoke("--store", str(store_dir), "approve", "r1", "--no-resume", "--by", "bob")
    assert recorded.code == 0
    assert _approval(store_dir, "r1", "gate").status == "approved"
    assert _status(store_dir, "r1") == "waiting-approval"


def test_approve_with_workflow_after_the_file_moved(
    tmp_path: Path, store_dir: Path, parked: str
) -> None:
    """--workflow points approve at the moved definition; the run resumes and finishes."""
    (tmp_path / "gate.py").rename(tmp_path / "moved.py")
    result = invoke("--store", str(store_dir), "approve", "r1", "--workflow", "moved.py")
    assert result.code == 0, result
    assert (tmp_path / "shipped.txt").exists()


# -- signal --------------------------------------------------------------------------------------


def test_signal_delivers_and_resumes(tmp_path: Path, store_dir: Path) -> None:
    """`signal` validates and records the data, resumes the run and exits 0."""
    write(tmp_path, "sig.py", SIGNAL)
    assert invoke("--store", str(store_dir), "run", "sig.py", "--run-id", "s1").code == 3
    result = invoke(
        "--store",
        str(store_dir),
        "signal",
        "s1",
        "--node",
        "callback",
        "--data",
        '{"ok": true, "log": "all green"}',
    )
    assert result.code == 0
    assert result.out == "Run s1 finished.\n"
    assert result.err_lines[0] == "Delivered data to `callback` of run s1."
    report = invoke("--store", str(store_dir), "output", "s1", "report")
    assert json.loads(report.out) == "ok=True log=all green"


def test_signal_data_from_a_file(tmp_path: Path, store_dir: Path) -> None:
    """--data @file.json reads the data from a file."""
    write(tmp_path, "sig.py", SIGNAL)
    (tmp_path / "result.json").write_text('{"ok": false, "log": "red"}', encoding="utf-8")
    invoke("--store", str(store_dir), "run", "sig.py", "--run-id", "s1")
    result = invoke(
        "--store", str(store_dir), "signal", "s1", "--node", "callback", "--data", "@result.json"
    )
    assert result.code == 0
    assert json.loads(invoke("--store", str(store_dir), "output", "s1", "callback").out) == {
        "ok": False,
        "log": "red",
    }


def test_signal_the_developer_approval_example(tmp_path: Path, store_dir: Path) -> None:
    """Signal the agent callback, then approve: the example opens its pull request."""
    flow = str(EXAMPLES / "review_sketch.py")
    env = {"SMITHERS_ARTIFACTS": str(tmp_path / "artifacts")}
    assert invoke("--store", str(store_dir), "run", flow, "--run-id", "d1", env=env).code == 3
    data = '{"patch": "diff", "log": "ok", "tests_passed": true}'
    signalled = invoke(
        "--store", str(store_dir), "signal", "d1", "--node", "agent-done", "--data", data, env=env
    )
    assert signalled.code == 3
    assert signalled.out.splitlines()[1] == "  approve-change: Apply: Bump lmdb to 1.5?"
    assert (tmp_path / "artifacts" / "d1" / "patch.diff").read_text() == "diff"
    approved = invoke("--store", str(store_dir), "approve", "d1", env=env)
    assert approved.code == 0
    assert json.loads(invoke("--store", str(store_dir), "output", "d1", "notify").out)[
        "channel"
    ] == ("#deploys")


def test_signal_with_bad_data_writes_nothing(tmp_path: Path, store_dir: Path) -> None:
    """Data that does not match the Signal's output type is refused before anything is written."""
    write(tmp_path, "sig.py", SIGNAL)
    invoke("--store", str(store_dir), "run", "sig.py", "--run-id", "s1")
    before = store_state(store_dir)
    result = invoke(
        "--store", str(store_dir), "signal", "s1", "--node", "callback", "--data", '{"ok": 1}'
    )
    assert one_error(result) == BAD_CALLBACK
    assert store_state(store_dir) == before


def test_signal_with_bad_data_and_no_resume_writes_nothing(tmp_path: Path, store_dir: Path) -> None:
    """--no-resume does not skip validation: bad data is refused and the run stays usable."""
    write(tmp_path, "sig.py", SIGNAL)
    invoke("--store", str(store_dir), "run", "sig.py", "--run-id", "s1")
    before = store_state(store_dir)
    result = invoke(
        "--store",
        str(store_dir),
        "signal",
        "s1",
        "--node",
        "callback",
        "--data",
        '{"ok": 1}',
        "--no-resume",
    )
    assert one_error(result) == BAD_CALLBACK
    assert store_state(store_dir) == before
    resumed = invoke("--store", str(store_dir), "resume", "s1")
    assert resumed.code == 3


def test_signal_held_until_the_run_reaches_it(tmp_path: Path, store_dir: Path) -> None:
    """A signal delivered while the run waits at an earlier gate is held and applied later."""
    write(tmp_path, "both.py", GATE_THEN_SIGNAL)
    assert invoke("--store", str(store_dir), "run", "both.py", "--run-id", "b1").code == 3
    early = invoke(
        "--store", str(store_dir), "signal", "b1", "--node", "callback", "--data", '{"ok": true}'
    )
    assert early.code == 3
    assert _status(store_dir, "b1") == "waiting-approval"
    assert [s.node_id for s in _signals(store_dir, "b1")] == ["callback"]
    result = invoke("--store", str(store_dir), "approve", "b1")
    assert result.code == 0
    assert result.out == "Run b1 finished.\n"
    assert invoke("--store", str(store_dir), "output", "b1", "report").out == "true\n"
    events = [e["type"] for e in invoke("--store", str(store_dir), "--json", "events", "b1").json()]
    assert "signal.waiting" not in events


def test_signal_held_with_no_resume(tmp_path: Path, store_dir: Path) -> None:
    """--no-resume records the early signal and exits 0; the run is untouched otherwise."""
    write(tmp_path, "both.py", GATE_THEN_SIGNAL)
    invoke("--store", str(store_dir), "run", "both.py", "--run-id", "b1")
    result = invoke(
        "--store",
        str(store_dir),
        "signal",
        "b1",
        "--node",
        "callback",
        "--data",
        '{"ok": false}',
        "--no-resume",
    )
    assert result.code == 0
    assert result.out.splitlines()[0] == "Delivered data to `callback` of run b1."
    assert invoke("--store", str(store_dir), "approve", "b1").code == 0
    assert invoke("--store", str(store_dir), "output", "b1", "report").out == "false\n"


def test_signal_second_delivery_is_refused(tmp_path: Path, store_dir: Path) -> None:
    """A Signal takes data once: the second delivery names when the first arrived."""
    write(tmp_path, "both.py", GATE_THEN_SIGNAL)
    invoke("--store", str(store_dir), "run", "both.py", "--run-id", "b1")
    invoke(
        "--store", str(store_dir), "signal", "b1", "--node", "callback", "--data", '{"ok": true}'
    )
    (first,) = _signals(store_dir, "b1")
    before = store_state(store_dir)
    result = invoke(
        "--store", str(store_dir), "signal", "b1", "--node", "callback", "--data", '{"ok": false}'
    )
    assert one_error(result) == (
        f"Error: Signal `callback` of run `b1` already received data at {first.received_at}; a "
        "signal is delivered once."
    )
    assert store_state(store_dir) == before


def test_signal_refusals_write_nothing(tmp_path: Path, store_dir: Path) -> None:
    """Unknown run, unknown node, a task, bad JSON, a missing @file, a bad --iteration."""
    write(tmp_path, "sig.py", SIGNAL)
    invoke("--store", str(store_dir), "run", "sig.py", "--run-id", "s1")
    before = store_state(store_dir)
    s = str(store_dir)

    def refused(*args: str) -> str:
        return one_error(invoke("--store", s, "signal", *args))

    assert refused("nope", "--node", "callback", "--data", "{}") == (
        f"Error: No run `nope` in the store at {store_dir}; list runs with `smithers runs`."
    )
    assert refused("s1", "--node", "zzz", "--data", "{}") == (
        "Error: Run `s1` has no node `zzz`; its signals: `callback`."
    )
    assert refused("s1", "--node", "start", "--data", "{}") == (
        "Error: Node `start` of run `s1` is a task, not a Signal; only Signal nodes take data."
    )
    assert refused("s1", "--node", "callback", "--data", "{x") == (
        "Error: --data '{x' is not valid JSON (JSON is malformed: object keys must be strings "
        "(byte 1)); pass a JSON document or @file.json."
    )
    assert refused("s1", "--node", "callback", "--data", "@gone.json") == (
        "Error: --data file `gone.json` cannot be read (No such file or directory); pass an "
        "existing JSON file as @file.json."
    )
    assert refused("s1", "--node", "callback", "--data", "{}", "--iteration", "z") == (
        "Error: --iteration 'z' is invalid; pass dot-separated numbers such as 1.0."
    )
    assert store_state(store_dir) == before


def test_signal_to_an_ended_run(tmp_path: Path, store_dir: Path) -> None:
    """A run that finished takes no more data."""
    write(tmp_path, "sig.py", SIGNAL)
    invoke("--store", str(store_dir), "run", "sig.py", "--run-id", "s1")
    invoke(
        "--store",
        str(store_dir),
        "signal",
        "s1",
        "--node",
        "callback",
        "--data",
        '{"ok": true, "log": ""}',
    )
    before = store_state(store_dir)
    result = invoke("--store", str(store_dir), "signal", "s1", "--node", "callback", "--data", "{}")
    assert one_error(result) == (
        "Error: Run `s1` is finished; a signal can only reach a run that goes on."
    )
    assert store_state(store_dir) == before


def test_signal_when_the_definition_cannot_load(tmp_path: Path, store_dir: Path) -> None:
    """A moved workflow file: refused without --no-resume (nothing written), recorded with it."""
    write(tmp_path, "both.py", GATE_THEN_SIGNAL)
    invoke("--store", str(store_dir), "run", "both.py", "--run-id", "b1")
    (tmp_path / "both.py").rename(tmp_path / "moved.py")
    before = store_state(store_dir)
    result = invoke(
        "--store", str(store_dir), "signal", "b1", "--node", "callback", "--data", '{"ok": true}'
    )
    assert one_error(result) == (
        "Error: Cannot load the workflow run `b1` was started from (no workflow file at "
        f"`{tmp_path / 'both.py'}`); pass --no-resume to only record the data, or --workflow "
        "FILE[:ATTR]."
    )
    assert store_state(store_dir) == before
    recorded = invoke(
        "--store",
        str(store_dir),
        "signal",
        "b1",
        "--node",
        "callback",
        "--data",
        '{"ok": true}',
        "--no-resume",
    )
    assert recorded.code == 0
    assert [s.node_id for s in _signals(store_dir, "b1")] == ["callback"]
