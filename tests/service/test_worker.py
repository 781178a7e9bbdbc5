"""The worker in real processes: `tick` applies news and exits, a decision whose recorder was
killed is applied, a resume that cannot load backs off and says so in `status`, two workers
over 50 approved runs resume each exactly once, and SIGTERM of `serve` with a resume in flight
loses nothing across a restart."""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from smithers import approve
from tests.integration.helpers import (
    child_env,
    cli_args,
    executions,
    has_event,
    hold,
    inflight,
    kill9,
    reaping,
    release,
    smithers_cli,
    spawn,
    wait_for,
)
from tests.service.helpers import opened_store, park, serving, status_of, stop, workflows

pytestmark = pytest.mark.slow


def _ran(folder: Path, run_id: str) -> list[str]:
    return [line for line in executions(folder / "executions.log") if line.split()[0] == run_id]


def test_tick_applies_news_and_exits(tmp_path: Path) -> None:
    """`smithers tick` resumes a parked run whose gate was decided (record only) to its next
    wait, says how many it resumed, and exits 0; a second tick finds nothing."""
    store = tmp_path / ".smithers"
    workflows(tmp_path)
    park(tmp_path, store, "gate.py:gated", ["t1", "quiet"])
    approve("t1", "gate", store=str(store), by="ann")
    done = smithers_cli(store, "tick", cwd=tmp_path)
    assert done.code == 0, done.err
    assert done.out.strip() == "Resumed 1 run(s)."
    assert has_event(store, "t1", "approval.requested", "later")
    assert len(_ran(tmp_path, "t1")) == 1
    assert status_of(store, "quiet") == "waiting-approval"
    again = smithers_cli(store, "--json", "tick", cwd=tmp_path)
    assert again.out.strip() == '{"resumed":0}'


def test_a_decision_whose_recorder_was_killed_is_applied(tmp_path: Path) -> None:
    """`approve` killed (kill -9) while resuming the run it decided leaves a dead owner; the
    worker takes the run over and finishes the step the decision started."""
    store = tmp_path / ".smithers"
    workflows(tmp_path)
    park(tmp_path, store, "gate.py:gated", ["k1"])
    hold(tmp_path, "k1", "after")
    proc = spawn(store, "approve", "k1", "--node", "gate", "--yes", cwd=tmp_path)
    with reaping(proc):
        wait_for(inflight(tmp_path, "k1", "after"), "after starts", proc=proc)
        kill9(proc)
    release(tmp_path, "k1")
    done = smithers_cli(store, "tick", cwd=tmp_path)
    assert done.out.strip() == "Resumed 1 run(s).", done.err
    assert has_event(store, "k1", "approval.requested", "later")
    with opened_store(store) as s:
        gate = next(a for a in s.approvals("k1") if a.node_id == "gate")
        after = s.output("k1", "after", ())
    assert gate.status == "approved"
    assert after is not None


def test_a_resume_that_cannot_load_backs_off_and_shows_in_status(tmp_path: Path) -> None:
    """When the workflow file is gone the resume fails to load: the failure is recorded with
    its message and next try (shown by `status`, text and --json), and the next tick does not
    retry it before then."""
    store = tmp_path / ".smithers"
    workflows(tmp_path)
    park(tmp_path, store, "gate.py:gated", ["b1"])
    approve("b1", "gate", store=str(store), by="ann")
    (tmp_path / "gate.py").unlink()
    first = smithers_cli(store, "tick", cwd=tmp_path)
    assert first.out.strip() == "Resumed 1 run(s).", first.err
    second = smithers_cli(store, "tick", cwd=tmp_path)
    assert second.out.strip() == "Resumed 0 run(s)."
    shown = smithers_cli(store, "status", "b1", cwd=tmp_path)
    assert "worker:   resume failed 1 time(s)" in shown.out
    assert "LoadError" in shown.out
    document = smithers_cli(store, "--json", "status", "b1", cwd=tmp_path)
    worker = json.loads(document.out)["worker"]
    assert worker["failures"] == 1
    assert worker["error"].startswith("LoadError: Cannot load the workflow")
    assert worker["retry_at"] > worker["failed_at"]


def test_two_workers_resume_each_of_50_approved_runs_exactly_once(tmp_path: Path) -> None:
    """Two `smithers worker` processes over one store with 50 parked runs approved: every run
    goes on, each resumed once (one run.resumed event, one execution of its next task)."""
    store = tmp_path / ".smithers"
    workflows(tmp_path)
    ids = [f"w{i:02d}" for i in range(50)]
    park(tmp_path, store, "gate.py:gated", ids)
    for run_id in ids:
        approve(run_id, "gate", store=str(store), by="ann")
    workers = [spawn(store, "worker", "--workers", "3", cwd=tmp_path) for _ in range(2)]
    with reaping(*workers):

        def all_done() -> bool:
            with opened_store(store) as s:
                return len(s.requested_gates()) == 50 and all(
                    any(a.node_id == "later" for a in s.approvals(r)) for r in ids
                )

        wait_for(all_done, "every run reaches its second gate")
        for proc in workers:
            stop(proc)
    with opened_store(store) as s:
        resumed = Counter(e.run_id for e in s.events() if e.type == "run.resumed")
    assert resumed == dict.fromkeys(ids, 1)
    ran = Counter(line.split()[0] for line in executions(tmp_path / "executions.log"))
    assert ran == dict.fromkeys(ids, 1)


def test_sigterm_with_a_resume_in_flight_then_restart_loses_nothing(tmp_path: Path) -> None:
    """SIGTERM to `serve` while its worker's resume runs a task: the resume is interrupted
    cleanly, serve exits 0; a restarted serve resumes the run to its next gate."""
    store = tmp_path / ".smithers"
    workflows(tmp_path)
    park(tmp_path, store, "gate.py:gated", ["s1"])
    hold(tmp_path, "s1", "after")
    with serving(store, tmp_path) as served:
        approve("s1", "gate", store=str(store), by="ann")
        wait_for(inflight(tmp_path, "s1", "after"), "the worker's resume runs after")
        served.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: has_event(store, "s1", "run.interrupted"), "the resume is interrupted")
        release(tmp_path, "s1")
        stop(served.proc)
    assert status_of(store, "s1") == "running"
    with serving(store, tmp_path):
        wait_for(lambda: has_event(store, "s1", "approval.requested", "later"), "s1 goes on")
    with opened_store(store) as s:
        attempts = [a.outcome for a in s.attempts("s1") if a.node_id == "after"]
    assert attempts == ["interrupted", "ok"]


def test_serve_refuses_a_public_host_without_tokens(tmp_path: Path) -> None:
    """`serve --host 0.0.0.0` exits 4 while the store has no token, naming the fix."""
    done = smithers_cli(tmp_path / ".smithers", "serve", "--host", "0.0.0.0", cwd=tmp_path)
    assert done.code == 4
    assert done.errors == [
        "Error: Refusing to listen on 0.0.0.0 while the store has no token (anyone who can "
        "reach it could decide gates); create one with `smithers token create NAME`, or "
        "listen on 127.0.0.1."
    ]


def test_tokens_are_shown_once_stored_hashed_and_revocable(tmp_path: Path) -> None:
    """`token create` prints the secret once; the store holds only its hash; `token list`
    never shows it; a revoked token is refused (401) at once."""
    store = tmp_path / ".smithers"
    created = smithers_cli(store, "token", "create", "bob", "--role", "viewer", cwd=tmp_path)
    secret = created.out.strip()
    assert secret.startswith("smt_")
    assert "only time" in created.err
    assert secret.encode() not in (store / "data.mdb").read_bytes()
    listed = smithers_cli(store, "token", "list", cwd=tmp_path)
    assert listed.out.startswith("bob  viewer  created ")
    assert secret not in listed.out
    again = smithers_cli(store, "token", "create", "bob", cwd=tmp_path)
    assert again.errors == [
        "Error: A token named `bob` already exists; pick another name, or revoke it first "
        "with `smithers token revoke bob`."
    ]
    with serving(store, tmp_path) as served, served.client(secret) as client:
        assert client.get("/api/v1/runs").status_code == 200
        assert smithers_cli(store, "token", "revoke", "bob", cwd=tmp_path).code == 0
        assert client.get("/api/v1/runs").status_code == 401
    gone = smithers_cli(store, "token", "revoke", "bob", cwd=tmp_path)
    assert gone.errors == ["Error: No token named `bob`; list them with `smithers token list`."]


def test_expired_tokens_are_refused(tmp_path: Path) -> None:
    """A token past its --expires is refused with 401."""
    from smithers.runtime.clock import ManualClock, use_clock
    from smithers.service.auth import create_token

    store = tmp_path / ".smithers"
    with opened_store(store) as s, use_clock(ManualClock(start=1_000_000.0)):
        secret = create_token(s, "old", "admin", 60).secret
    with serving(store, tmp_path) as served, served.client(secret) as client:
        assert client.get("/api/v1/runs").status_code == 401


def test_worker_stops_on_sigterm(tmp_path: Path) -> None:
    """`smithers worker` exits 0 on SIGTERM."""
    proc = subprocess.Popen(
        cli_args(tmp_path / ".smithers", "worker"),
        cwd=tmp_path,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with reaping(proc):
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert first.startswith("smithers worker: resuming runs of "), first
        rest = stop(proc)
        assert "Error" not in rest, rest


CRASHING_WORKFLOW = """
import os
import signal

from smithers import Approval, ApprovalRequest, Sequence, Task, Workflow, smithers


def boom():
    os.kill(os.getpid(), signal.SIGKILL)


@smithers
def crashes(ctx):
    return Workflow(
        Sequence(
            Approval(id="gate", request=ApprovalRequest(title="Crash?")),
            Task(id="boom", output=int, run=boom),
        ),
        name="crashes",
    )
"""


def test_a_crashing_workflow_cannot_take_the_server_down(tmp_path: Path) -> None:
    """A resume whose process dies (SIGKILL inside a task) leaves the server serving; the
    crash is recorded on the run with a backoff instead of being retried in a loop."""
    store = tmp_path / ".smithers"
    (tmp_path / "crash.py").write_text(CRASHING_WORKFLOW)
    park(tmp_path, store, "crash.py:crashes", ["c1"])
    with serving(store, tmp_path) as served:
        approve("c1", "gate", store=str(store), by="ann")

        def failed_once() -> bool:
            with opened_store(store) as s:
                claim = s.worker_claim("c1")
                return claim is not None and claim.failures == 1

        wait_for(failed_once, "the crash is recorded", proc=served.proc)
        with served.client() as client:
            assert client.get("/healthz").json() == {"status": "ok"}
        with opened_store(store) as s:
            claim = s.worker_claim("c1")
        assert claim is not None
        assert claim.failures == 1
        assert claim.until > 0
