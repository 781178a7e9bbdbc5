"""Reading a store: `status`, `output`, `runs`, `events`, `approvals`; and `cancel`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from smithers.store import open_store
from tests.cli.helpers import (
    EXAMPLES,
    FAILING,
    GATE,
    LOOP_GATE,
    OK,
    invoke,
    one_error,
    read_store,
    store_state,
    write,
)


@pytest.fixture
def parked(tmp_path: Path, store_dir: Path) -> str:
    """A run (r1) of the gated workflow parked at its gate, in store_dir."""
    write(tmp_path, "gate.py", GATE)
    assert invoke("--store", str(store_dir), "run", "gate.py", "--run-id", "r1").code == 3
    return "r1"


def _requested_at(store_dir: Path, run_id: str, node: str) -> str:
    store = read_store(store_dir)
    try:
        return next(a for a in store.approvals(run_id) if a.node_id == node).requested_at
    finally:
        store.close()


# -- status --------------------------------------------------------------------------------------


def test_status_of_a_parked_run(tmp_path: Path, store_dir: Path, parked: str) -> None:
    """`status` shows the graph with node states and the pending gate with its commands."""
    result = invoke("--store", str(store_dir), "status", "r1")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0] == "Run r1  waiting-approval"
    assert lines[1] == "  workflow: gated (gate.py:gated)"
    assert next(x for x in lines if "[task] build" in x).endswith("[finished]")
    assert next(x for x in lines if "[approval] gate" in x).endswith("[waiting-approval]")
    assert next(x for x in lines if "[task] ship" in x).endswith("[pending]")
    at = _requested_at(store_dir, "r1", "gate")
    start = lines.index("Pending gates:")
    assert lines[start + 1 :] == [
        f"  gate: Ship plan-1.0? (requested {at})",
        "    One region.",
        "    risk: low",
        f"    approve: smithers approve r1 --node gate --store {store_dir}",
        f"    deny:    smithers deny r1 --node gate --store {store_dir}",
    ]
    assert "Decisions:" not in lines


def test_status_json_document(tmp_path: Path, store_dir: Path, parked: str) -> None:
    """`status --json` is one document: run (no input), nodes, attempts, pending, graph."""
    result = invoke("--store", str(store_dir), "status", "r1", "--json")
    assert result.code == 0
    document = result.json()
    assert set(document) >= {
        "run",
        "nodes",
        "attempts",
        "pending",
        "decisions",
        "approvals",
        "graph",
    }
    assert document["run"]["run_id"] == "r1"
    assert document["run"]["status"] == "waiting-approval"
    assert document["run"]["workflow"] == "gated"
    assert "input" not in document["run"]
    assert {n["node_id"]: n["state"] for n in document["nodes"]} == {
        "build": "finished",
        "gate": "waiting-approval",
    }
    assert [(a["node_id"], a["number"], a["outcome"]) for a in document["attempts"]] == [
        ("build", 1, "ok")
    ]
    (pending,) = document["pending"]
    assert pending["node_id"] == "gate"
    assert pending["request"]["title"] == "Ship plan-1.0?"
    assert pending["approve_command"] == f"smithers approve r1 --node gate --store {store_dir}"
    assert pending["deny_command"] == f"smithers deny r1 --node gate --store {store_dir}"
    assert document["decisions"] == []
    assert [a["status"] for a in document["approvals"]] == ["requested"]
    assert [n["id"] for n in document["graph"]["nodes"]] == ["build", "gate", "ship"]


def test_status_of_a_failed_run(tmp_path: Path, store_dir: Path) -> None:
    """A failed run's status names the error and the attempt that was not ok; exit 0."""
    write(tmp_path, "fail.py", FAILING)
    assert invoke("--store", str(store_dir), "run", "fail.py", "--run-id", "f1").code == 1
    result = invoke("--store", str(store_dir), "status", "f1")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0] == "Run f1  failed"
    error = next(x for x in lines if x.startswith("  error:"))
    assert error.startswith("  error:    ValueError at `explode`: ")
    assert error.endswith("the disk is full")
    assert next(x for x in lines if "[task] explode" in x).endswith("[failed]")
    assert "Attempts: 2 recorded, 1 not ok:" in lines
    assert "  explode attempt 1 failed: ValueError: the disk is full" in lines


def test_status_json_and_store_on_either_side(tmp_path: Path, store_dir: Path, parked: str) -> None:
    """--json and --store work before or after `status` and give the same document."""
    before = invoke("--json", "--store", str(store_dir), "status", "r1").json()
    after = invoke("status", "r1", "--store", str(store_dir), "--json").json()
    mixed = invoke("--store", str(store_dir), "status", "--json", "r1").json()
    assert before == after == mixed


# -- output --------------------------------------------------------------------------------------


def test_output_prints_a_node_output_as_json(tmp_path: Path, store_dir: Path) -> None:
    """`output RUN NODE` prints the committed output as JSON (a Struct as an object)."""
    result = invoke(
        "--store",
        str(store_dir),
        "run",
        str(EXAMPLES / "deploy.py"),
        "--run-id",
        "d1",
        "--input",
        '{"version": "2.0"}',
    )
    assert result.code == 3
    output = invoke("--store", str(store_dir), "output", "d1", "build")
    assert output.code == 0
    assert json.loads(output.out) == {
        "version": "2.0",
        "plan": "Roll 2.0 out to 3 regions, canary first.",
    }


def test_output_of_a_scalar_and_of_a_decision(tmp_path: Path, store_dir: Path) -> None:
    """A str output prints as a JSON string; a decided gate's output is its decision."""
    write(tmp_path, "gate.py", GATE)
    invoke("--store", str(store_dir), "run", "gate.py", "--run-id", "r1")
    invoke("--store", str(store_dir), "approve", "r1", "--by", "ann", "--note", "go")
    assert invoke("--store", str(store_dir), "output", "r1", "build").out == '"plan-1.0"\n'
    decision = json.loads(invoke("--store", str(store_dir), "output", "r1", "gate").out)
    assert {k: decision[k] for k in ("approved", "note", "decided_by")} == {
        "approved": True,
        "note": "go",
        "decided_by": "ann",
    }
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)", decision["decided_at"]
    )


def test_output_by_iteration(tmp_path: Path, store_dir: Path) -> None:
    """--iteration picks a loop iteration's output; without it the latest is printed."""
    write(tmp_path, "loop.py", LOOP_GATE)
    invoke("--store", str(store_dir), "run", "loop.py", "--run-id", "l1")
    invoke("--store", str(store_dir), "approve", "l1", "--note", "first")
    invoke("--store", str(store_dir), "deny", "l1", "--note", "second")
    first = json.loads(
        invoke("--store", str(store_dir), "output", "l1", "gate", "--iteration", "0.0").out
    )
    second = json.loads(
        invoke("--store", str(store_dir), "output", "l1", "gate", "--iteration", "1.0").out
    )
    latest = json.loads(invoke("--store", str(store_dir), "output", "l1", "gate").out)
    assert (first["approved"], first["note"]) == (True, "first")
    assert (second["approved"], second["note"]) == (False, "second")
    assert latest == second


def test_output_refusals_write_nothing(tmp_path: Path, store_dir: Path) -> None:
    """Unknown node, no output yet, a missing iteration, a bad iteration: exit 4, one line."""
    write(tmp_path, "loop.py", LOOP_GATE)
    write(tmp_path, "gate.py", GATE)
    invoke("--store", str(store_dir), "run", "loop.py", "--run-id", "l1")
    invoke("--store", str(store_dir), "approve", "l1")
    invoke("--store", str(store_dir), "run", "gate.py", "--run-id", "r1")
    before = store_state(store_dir)
    s = str(store_dir)
    assert one_error(invoke("--store", s, "output", "r1", "nosuch")) == (
        "Error: Run `r1` has no node `nosuch`; its nodes: `build`, `gate`, `ship`."
    )
    assert one_error(invoke("--store", s, "output", "r1", "gate")) == (
        "Error: Node `gate` of run `r1` has no output; see `smithers status r1`."
    )
    assert one_error(invoke("--store", s, "output", "l1", "gate", "--iteration", "5.0")) == (
        "Error: Node `gate` of run `l1` has no output at iteration 5.0; it has outputs at "
        "iterations 0.0."
    )
    assert one_error(invoke("--store", s, "output", "l1", "gate", "--iteration", "a.b")) == (
        "Error: --iteration 'a.b' is invalid; pass dot-separated numbers such as 1.0."
    )
    assert store_state(store_dir) == before


# -- runs ----------------------------------------------------------------------------------------


@pytest.fixture
def three_runs(tmp_path: Path, store_dir: Path) -> None:
    """Runs o1 (finished), f1 (failed) and r1 (waiting-approval), in that order."""
    write(tmp_path, "ok.py", OK)
    write(tmp_path, "fail.py", FAILING)
    write(tmp_path, "gate.py", GATE)
    assert invoke("--store", str(store_dir), "run", "ok.py", "--run-id", "o1").code == 0
    assert invoke("--store", str(store_dir), "run", "fail.py", "--run-id", "f1").code == 1
    assert invoke("--store", str(store_dir), "run", "gate.py", "--run-id", "r1").code == 3


def test_runs_lists_every_run(tmp_path: Path, store_dir: Path, three_runs: None) -> None:
    """`runs` prints one line per run, oldest first: id, status, workflow."""
    result = invoke("--store", str(store_dir), "runs")
    assert result.code == 0
    rows = [line.split()[:3] for line in result.out.splitlines()]
    assert rows == [
        ["o1", "finished", "ok"],
        ["f1", "failed", "failing"],
        ["r1", "waiting-approval", "gated"],
    ]


def test_runs_json_and_status_filter(tmp_path: Path, store_dir: Path, three_runs: None) -> None:
    """`runs --json` is one list; --status keeps only runs in that status."""
    everything = invoke("--store", str(store_dir), "runs", "--json")
    assert everything.code == 0
    rows = everything.json()
    assert [(r["run_id"], r["status"], r["workflow"]) for r in rows] == [
        ("o1", "finished", "ok"),
        ("f1", "failed", "failing"),
        ("r1", "waiting-approval", "gated"),
    ]
    assert all(
        set(r) >= {"run_id", "status", "workflow", "created_at", "updated_at", "error"}
        for r in rows
    )
    assert rows[0]["error"] is None
    assert rows[1]["error"]["type"] == "ValueError"
    assert rows[1]["error"]["node_id"] == "explode"
    failed = invoke("--json", "--store", str(store_dir), "runs", "--status", "failed").json()
    assert [r["run_id"] for r in failed] == ["f1"]
    waiting = invoke("--store", str(store_dir), "runs", "--status", "waiting-approval")
    assert [line.split()[0] for line in waiting.out.splitlines()] == ["r1"]


def test_runs_when_there_are_none(tmp_path: Path, store_dir: Path, three_runs: None) -> None:
    """An empty listing says so, with the filter it used."""
    assert invoke("--store", str(store_dir), "runs", "--status", "cancelled").out == (
        "No runs with status cancelled.\n"
    )
    assert invoke("--store", str(store_dir), "--json", "runs", "--status", "cancelled").json() == []
    empty = tmp_path / "empty"
    open_store(str(empty)).close()
    assert invoke("--store", str(empty), "runs").out == "No runs.\n"


def test_runs_unknown_status_is_refused(tmp_path: Path, store_dir: Path, three_runs: None) -> None:
    """An unknown --status is one error line listing the statuses."""
    assert one_error(invoke("--store", str(store_dir), "runs", "--status", "done")) == (
        "Error: Invalid value for '--status': 'done' is not one of 'queued', 'running', "
        "'waiting-approval', 'waiting-signal', 'waiting-timer', 'finished', 'failed', 'cancelled' "
        "(see `smithers runs --help`)."
    )


# -- events --------------------------------------------------------------------------------------

_EVENT_KEYS = {"seq", "type", "run_id", "node_id", "iteration", "at", "data"}


def test_events_json_of_a_run(tmp_path: Path, store_dir: Path, parked: str) -> None:
    """`events RUN --json` is one list of events with gap-free sequence numbers."""
    result = invoke("--store", str(store_dir), "events", "r1", "--json")
    assert result.code == 0
    events = result.json()
    assert all(set(e) == _EVENT_KEYS for e in events)
    assert [(e["type"], e["node_id"]) for e in events] == [
        ("run.started", None),
        ("node.started", "build"),
        ("node.finished", "build"),
        ("approval.requested", "gate"),
        ("run.waiting", None),
    ]
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert {e["run_id"] for e in events} == {"r1"}
    requested = events[3]
    assert requested["iteration"] == []
    assert requested["data"]["request"] == {
        "title": "Ship plan-1.0?",
        "summary": "One region.",
        "metadata": {"risk": "low"},
    }


def test_events_after_a_sequence_number(tmp_path: Path, store_dir: Path, parked: str) -> None:
    """--after SEQ prints only the events numbered above SEQ."""
    every = invoke("--store", str(store_dir), "--json", "events", "r1").json()
    after = invoke("--store", str(store_dir), "--json", "events", "r1", "--after", "3").json()
    assert after == every[3:]
    assert invoke("--store", str(store_dir), "--json", "events", "--after", "99").json() == []


def test_events_of_all_runs_and_of_one(tmp_path: Path, store_dir: Path, three_runs: None) -> None:
    """Without RUN_ID every run's events print in sequence order; with it, only that run's."""
    every = invoke("--store", str(store_dir), "--json", "events").json()
    assert [e["seq"] for e in every] == list(range(1, len(every) + 1))
    assert [e["run_id"] for e in every if e["type"] == "run.started"] == ["o1", "f1", "r1"]
    failed = invoke("--store", str(store_dir), "--json", "events", "f1").json()
    assert failed == [e for e in every if e["run_id"] == "f1"]
    assert failed[-1]["type"] == "run.failed"


def test_events_text_lines(tmp_path: Path, store_dir: Path, parked: str) -> None:
    """Without --json each event is one line: seq, time, type, run, node, data."""
    every = invoke("--store", str(store_dir), "--json", "events", "r1").json()
    lines = invoke("--store", str(store_dir), "events", "r1").out.splitlines()
    assert len(lines) == len(every)
    for line, event in zip(lines, every, strict=True):
        fields = line.split()
        assert fields[:4] == [str(event["seq"]), event["at"], event["type"], "r1"]
    assert lines[3].split()[4] == "gate"


# -- approvals -----------------------------------------------------------------------------------


def test_approvals_lists_requested_gates_across_runs(tmp_path: Path, store_dir: Path) -> None:
    """`approvals` lists every requested gate of every run with its request and commands."""
    write(tmp_path, "gate.py", GATE)
    write(tmp_path, "loop.py", LOOP_GATE)
    invoke("--store", str(store_dir), "run", "gate.py", "--run-id", "r1")
    invoke("--store", str(store_dir), "run", "loop.py", "--run-id", "l1")
    invoke("--store", str(store_dir), "run", "gate.py", "--run-id", "r2")
    invoke("--store", str(store_dir), "approve", "r2")
    result = invoke("--store", str(store_dir), "approvals", "--json")
    assert result.code == 0
    rows = result.json()
    assert [(r["run_id"], r["node_id"], r["iteration"]) for r in rows] == [
        ("r1", "gate", []),
        ("l1", "gate", [0, 0]),
    ]
    r1, l1 = rows
    assert {k: r1[k] for k in ("workflow", "title", "summary", "metadata", "on_deny")} == {
        "workflow": "gated",
        "title": "Ship plan-1.0?",
        "summary": "One region.",
        "metadata": {"risk": "low"},
        "on_deny": "fail",
    }
    assert r1["waiting_since"] == _requested_at(store_dir, "r1", "gate")
    assert r1["approve_command"] == f"smithers approve r1 --node gate --store {store_dir}"
    assert r1["deny_command"] == f"smithers deny r1 --node gate --store {store_dir}"
    assert l1["approve_command"] == (
        f"smithers approve l1 --node gate --iteration 0.0 --store {store_dir}"
    )


def test_approvals_text(tmp_path: Path, store_dir: Path, parked: str) -> None:
    """The text listing shows run, gate, request and the two commands."""
    result = invoke("--store", str(store_dir), "approvals")
    assert result.code == 0
    at = _requested_at(store_dir, "r1", "gate")
    assert result.out.splitlines() == [
        f"r1  gate  (gated, waiting since {at})",
        "  Ship plan-1.0?",
        "  One region.",
        "  risk: low",
        f"  approve: smithers approve r1 --node gate --store {store_dir}",
        f"  deny:    smithers deny r1 --node gate --store {store_dir}",
    ]


def test_approvals_when_none_wait(tmp_path: Path, store_dir: Path, three_runs: None) -> None:
    """With no requested gate `approvals` says so (and --json prints an empty list)."""
    invoke("--store", str(store_dir), "approve", "r1")
    assert invoke("--store", str(store_dir), "approvals").out == (
        "No gates are waiting for a decision.\n"
    )
    assert invoke("--store", str(store_dir), "approvals", "--json").json() == []


# -- cancel --------------------------------------------------------------------------------------


def test_cancel_a_waiting_run(tmp_path: Path, store_dir: Path, parked: str) -> None:
    """`cancel` exits 0; the run is cancelled, its gate withdrawn, and resume exits 2."""
    result = invoke("--store", str(store_dir), "cancel", "r1")
    assert result.code == 0
    assert result.out == "Run r1 was cancelled.\n"
    status = invoke("--store", str(store_dir), "--json", "status", "r1")
    assert status.code == 0
    document = status.json()
    assert document["run"]["status"] == "cancelled"
    assert {n["node_id"]: n["state"] for n in document["nodes"]}["gate"] == "cancelled"
    assert [a["status"] for a in document["approvals"]] == ["withdrawn"]
    assert document["pending"] == []
    assert invoke("--store", str(store_dir), "status", "r1").out.splitlines()[0] == (
        "Run r1  cancelled"
    )
    events = invoke("--store", str(store_dir), "--json", "events", "r1").json()
    assert [(e["type"], e["node_id"]) for e in events][-3:] == [
        ("approval.withdrawn", "gate"),
        ("node.cancelled", "gate"),
        ("run.cancelled", None),
    ]
    assert invoke("--store", str(store_dir), "--json", "approvals").json() == []
    listed = invoke("--store", str(store_dir), "--json", "runs", "--status", "cancelled").json()
    assert [r["run_id"] for r in listed] == ["r1"]
    assert invoke("--store", str(store_dir), "resume", "r1").code == 2
    assert not (tmp_path / "shipped.txt").exists()


def test_cancel_json_document(tmp_path: Path, store_dir: Path, parked: str) -> None:
    """`cancel --json` prints the run's document with status cancelled and nothing pending."""
    result = invoke("--store", str(store_dir), "cancel", "r1", "--json")
    assert result.code == 0
    document = result.json()
    assert (document["run_id"], document["status"], document["error"], document["pending"]) == (
        "r1",
        "cancelled",
        None,
        [],
    )


def test_cancel_an_ended_run_changes_nothing(tmp_path: Path, store_dir: Path) -> None:
    """Cancelling a finished run reports it as it is, exits 0 and writes nothing."""
    write(tmp_path, "ok.py", OK)
    invoke("--store", str(store_dir), "run", "ok.py", "--run-id", "o1")
    before = store_state(store_dir)
    result = invoke("--store", str(store_dir), "cancel", "o1")
    assert result.code == 0
    assert result.out == "Run o1 finished.\n"
    assert store_state(store_dir) == before
