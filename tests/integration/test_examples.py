"""The shipped examples, end to end: the seed's deploy and publish workflows under both
decisions, and the developer-approval flow (signal, approve or deny), in process and from
the command line."""

from __future__ import annotations

import hashlib
import json
import runpy
from pathlib import Path
from typing import Any

import pytest

import smithers
from smithers import ApprovalRequest
from smithers.store import KVStore
from tests.integration.helpers import EXAMPLES, child_env, opened, smithers_cli


def example(name: str, attr: str) -> Any:
    """Load a definition and its module namespace from examples/NAME.py."""
    namespace = runpy.run_path(str(EXAMPLES / f"{name}.py"))
    return namespace[attr], namespace


def node_records(store: KVStore, run_id: str) -> dict[str, str]:
    """Node id -> state, for nodes that left pending."""
    snapshot = store.load(run_id)
    assert snapshot is not None
    return {n: r.state for (n, _), r in sorted(snapshot.nodes.items())}


# -- deploy (the seed's first workflow) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("approved", "status"),
    [(True, "approved"), (False, "rejected")],
)
def test_deploy_records_what_the_person_decided(
    store: KVStore, approved: bool, status: str
) -> None:
    """deploy: approve -> record.status approved; deny (continue) -> record.status rejected."""
    deploy, ns = example("deploy", "deploy")
    parked = smithers.run(deploy, {"version": "2.1.0"}, store=store, run_id="d")
    assert parked.status == "waiting-approval"
    assert parked.outputs == {
        "build": ns["Build"](version="2.1.0", plan="Roll 2.1.0 out to 3 regions, canary first.")
    }
    assert [(p.node_id, p.request) for p in parked.pending] == [
        (
            "approve-deploy",
            ApprovalRequest(
                title="Deploy 2.1.0?",
                summary="Roll 2.1.0 out to 3 regions, canary first.",
                metadata={"risk": "medium"},
            ),
        )
    ]
    decide = smithers.approve if approved else smithers.deny
    decide("d", "approve-deploy", note="why not", by="alice", store=store)
    done = smithers.resume("d", store=store, definition=deploy)
    assert done.status == "finished"
    assert done.outputs["record"] == ns["Published"](status=status)
    decision = done.outputs["approve-deploy"]
    assert (decision.approved, decision.note, decision.decided_by) == (approved, "why not", "alice")
    assert node_records(store, "d") == {
        "approve-deploy": "finished",
        "build": "finished",
        "record": "finished",
    }


# -- publish (the seed's branching workflow) ---------------------------------------------------


def test_publish_approved_publishes_and_never_records_a_rejection(store: KVStore) -> None:
    """publish approved: the Branch mounts `publish` only; `record-rejection` never runs."""
    publish, ns = example("publish", "publish")
    parked = smithers.run(publish, store=store, run_id="p")
    assert parked.status == "waiting-approval"
    assert parked.pending[0].request == ApprovalRequest(
        title="Publish Q3 report?", summary="Revenue up 12%; churn down to 2.1%."
    )
    smithers.approve("p", "approve-release", by="editor", store=store)
    done = smithers.resume("p", store=store, definition=publish)
    assert done.status == "finished"
    assert done.outputs["publish"] == ns["Published"](
        status="published", url="https://example.com/q3"
    )
    assert "record-rejection" not in done.outputs
    assert node_records(store, "p") == {
        "approve-release": "finished",
        "draft": "finished",
        "publish": "finished",
    }
    assert not any(e.node_id == "record-rejection" for e in store.events(run_id="p"))


def test_publish_denied_records_the_rejection_with_the_note_as_reason(store: KVStore) -> None:
    """publish denied (on_deny=continue): `record-rejection` runs with the note; `publish` never."""
    publish, ns = example("publish", "publish")
    smithers.run(publish, store=store, run_id="p")
    smithers.deny("p", "approve-release", note="Numbers not final", by="editor", store=store)
    done = smithers.resume("p", store=store, definition=publish)
    assert done.status == "finished"
    assert done.outputs["record-rejection"] == ns["Rejected"](
        status="rejected", reason="Numbers not final"
    )
    assert "publish" not in done.outputs
    assert node_records(store, "p") == {
        "approve-release": "finished",
        "draft": "finished",
        "record-rejection": "finished",
    }
    assert not any(e.node_id == "publish" for e in store.events(run_id="p"))


# -- developer approval ------------------------------------------------------------------------

AGENT_DATA = {"patch": "--- a\n+++ b\n", "log": "all green", "tests_passed": True}


@pytest.fixture
def artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the example persists its artifacts."""
    folder = tmp_path / "artifacts"
    monkeypatch.setenv("SMITHERS_ARTIFACTS", str(folder))
    return folder


def park_at_review(store: KVStore, definition: Any) -> Any:
    """Run developer-approval up to its review gate: start, signal the agent, resume."""
    first = smithers.run(definition, {"request": "Bump lmdb to 1.5"}, store=store, run_id="dev")
    assert first.status == "waiting-signal"
    assert [(p.node_id, p.kind) for p in first.pending] == [("agent-done", "signal")]
    assert first.outputs["start-agent"].callback == (
        "smithers signal dev --node agent-done --data @result.json"
    )
    smithers.signal("dev", "agent-done", AGENT_DATA, store=store)
    review = smithers.resume("dev", store=store, definition=definition)
    assert review.status == "waiting-approval"
    return review


def test_developer_approval_signal_then_approve_opens_the_pull_request(
    store: KVStore, artifacts: Path
) -> None:
    """plan -> agent -> signal -> persist -> approve -> apply -> notify, across three resumes."""
    flow, ns = example("review_sketch", "developer_approval")
    review = park_at_review(store, flow)
    patch_bytes = len(AGENT_DATA["patch"].encode())
    assert [(p.node_id, p.request) for p in review.pending] == [
        (
            "approve-change",
            ApprovalRequest(
                title="Apply: Bump lmdb to 1.5?",
                summary=f"2 files, {patch_bytes} bytes of patch; tests passed.",
                metadata={"patch": "res://dev/patch.diff", "log": "res://dev/agent.log"},
            ),
        )
    ]
    assert (artifacts / "dev" / "patch.diff").read_text() == AGENT_DATA["patch"]
    assert (artifacts / "dev" / "agent.log").read_text() == "all green"

    smithers.approve("dev", "approve-change", note="Looks right", by="lead", store=store)
    done = smithers.resume("dev", store=store, definition=flow)
    assert done.status == "finished"
    number = int(hashlib.sha256(b"dev/apply").hexdigest()[:4], 16)
    assert done.outputs["apply"] == ns["PullRequest"](
        url=f"https://git.example.com/pulls/{number}", number=number
    )
    assert done.outputs["notify"] == ns["Notice"](
        channel="#deploys", text=f"Opened https://git.example.com/pulls/{number}"
    )
    assert done.outputs["agent-done"] == ns["AgentResult"](**AGENT_DATA)
    assert set(node_records(store, "dev").values()) == {"finished"}


def test_developer_approval_denied_fails_the_run_and_applies_nothing(
    store: KVStore, artifacts: Path
) -> None:
    """on_deny=fail: denying the change fails the run; apply and notify never run."""
    flow, _ = example("review_sketch", "developer_approval")
    park_at_review(store, flow)
    smithers.deny("dev", "approve-change", note="Wrong repo", by="lead", store=store)
    done = smithers.resume("dev", store=store, definition=flow)
    assert done.status == "failed"
    assert done.error is not None
    assert (done.error.type, done.error.node_id, done.error.message) == (
        "ApprovalDenied",
        "approve-change",
        "Gate `approve-change` was denied by lead: Wrong repo",
    )
    assert "apply" not in done.outputs
    assert "notify" not in done.outputs
    assert node_records(store, "dev")["approve-change"] == "failed"
    assert "apply" not in node_records(store, "dev")


def test_developer_approval_from_the_command_line(tmp_path: Path) -> None:
    """CLI processes: run 3, bad signal 4, signal 3, second signal 4, approve 0 (finished)."""
    store = tmp_path / "store"
    env = child_env(SMITHERS_ARTIFACTS=str(tmp_path / "artifacts"))
    flow = str(EXAMPLES / "review_sketch.py")

    def cli(*args: str) -> Any:
        return smithers_cli(store, *args, cwd=tmp_path, env=env)

    started = cli("run", flow, "--run-id", "dev")
    assert started.code == 3, started.err
    assert "Run dev is waiting for a signal." in started.out.splitlines()
    assert (
        f"  deliver: smithers signal dev --node agent-done --store {store} --data '<json>'"
        in started.out.splitlines()
    )

    bad = cli("signal", "dev", "--node", "agent-done", "--data", '{"patch": "p", "log": "l"}')
    assert bad.code == 4
    assert len(bad.errors) == 1
    assert "missing required field `tests_passed`" in bad.errors[0]
    with opened(store) as s:
        assert s.signals("dev") == []

    signalled = cli("signal", "dev", "--node", "agent-done", "--data", json.dumps(AGENT_DATA))
    assert signalled.code == 3, signalled.err
    assert "Run dev is waiting for approval." in signalled.out.splitlines()
    assert "  approve-change: Apply: Bump lmdb to 1.5?" in signalled.out.splitlines()

    again = cli("signal", "dev", "--node", "agent-done", "--data", json.dumps(AGENT_DATA))
    assert again.code == 4
    assert len(again.errors) == 1
    assert "already received data" in again.errors[0]

    approved = cli("approve", "dev", "--note", "Looks right", "--by", "lead")
    assert approved.code == 0, approved.err
    assert approved.out.splitlines() == ["Run dev finished."]
    with opened(store) as s:
        [record] = s.approvals("dev")
        assert (record.status, record.decided_by) == ("approved", "lead")
        assert s.output("dev", "notify", ()) is not None


def test_developer_approval_counts_in_words() -> None:
    """The review summary says "1 file" and "1 byte", never "1 bytes"."""
    _, ns = example("review_sketch", "developer_approval")
    assert [ns["counted"](n, "byte") for n in (0, 1, 2)] == ["0 bytes", "1 byte", "2 bytes"]
