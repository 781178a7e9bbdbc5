"""`retry`: a failed run's failed nodes run again after a fix; finished outputs are kept; a
denied gate is asked again only when named, its earlier decision kept; refusals write nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import smithers
from smithers import Approval, ApprovalRequest, Loop, Sequence, Task, Workflow
from smithers import smithers as define
from smithers.errors import InputError, RunNotFoundError
from smithers.runtime.retry import aretry
from smithers.store import KVStore
from tests.runtime.helpers import Recorder, attempts, events, outputs, run, states


def flaky_flow(flag: Path, calls: Recorder) -> Any:
    """`prepare` -> `deploy` (fails while ``flag`` exists) -> `notify`."""

    def prepare() -> int:
        calls.add("prepare")
        return 41

    def deploy(prepared: int) -> int:
        calls.add("deploy")
        if flag.exists():
            raise RuntimeError("the deploy target is down")
        return prepared + 1

    @define
    def flow(ctx: Any) -> Any:
        return Workflow(
            Task(id="prepare", output=int, run=prepare),
            Task(id="deploy", output=int, needs={"prepared": "prepare"}, run=deploy, retries=1),
            Task(id="notify", output=str, needs={"deployed": "deploy"}, run=lambda deployed: "ok"),
            name="flow",
        )

    return flow


def test_retry_after_the_fix_runs_only_the_failed_node_and_keeps_outputs(
    store: KVStore, tmp_path: Path
) -> None:
    """A task failing on a flag file fails the run; once fixed, retry finishes it without
    running the finished node again, its output unchanged; attempts number on."""
    flag = tmp_path / "broken"
    flag.touch()
    calls = Recorder()
    flow = flaky_flow(flag, calls)
    failed = run(flow, store)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.node_id == "deploy"
    before = outputs(store)
    assert before == {("prepare", ()): 41}
    flag.unlink()
    seen: list[str] = []
    result = smithers.retry(
        "r", store=store, definition=flow, on_event=lambda e: seen.append(e.type)
    )
    assert result.status == "finished"
    assert result.error is None
    assert result.outputs == {"prepare": 41, "deploy": 42, "notify": "ok"}
    assert outputs(store)[("prepare", ())] == before[("prepare", ())]
    assert calls.items == ["prepare", "deploy", "deploy", "deploy"]
    assert attempts(store, "deploy") == [(1, "failed"), (2, "failed"), (3, "ok")]
    assert seen[:2] == ["run.retried", "run.resumed"]
    retried = [e for e in store.events(run_id="r") if e.type == "run.retried"]
    assert [e.data for e in retried] == [{"nodes": ["deploy"]}]
    assert events(store).index(("run.failed", None)) < events(store).index(("run.retried", None))


def test_retry_of_a_run_that_fails_again_leaves_it_failed(store: KVStore, tmp_path: Path) -> None:
    """Without a fix the failed node runs (with its retries) and the run fails again."""
    flag = tmp_path / "broken"
    flag.touch()
    flow = flaky_flow(flag, Recorder())
    run(flow, store)
    again = smithers.retry("r", store=store, definition=flow)
    assert again.status == "failed"
    assert again.error is not None
    assert "the deploy target is down" in again.error.message
    assert [n for n, _ in attempts(store, "deploy")] == [1, 2, 3, 4]


def test_retry_in_a_loop_reruns_the_failed_iteration_only(store: KVStore, tmp_path: Path) -> None:
    """A loop-body task failing at iteration 1 runs again at iteration 1; iteration 0 is kept."""
    flag = tmp_path / "broken"
    flag.touch()

    def body(task: smithers.TaskInfo) -> int:
        if task.iteration == (1,) and flag.exists():
            raise RuntimeError("bad round")
        return task.iteration[0]

    @define
    def flow(ctx: Any) -> Any:
        return Workflow(
            Loop(Task(id="x", output=int, run=body), id="L", until=False, max_iterations=3),
            name="flow",
        )

    assert run(flow, store).status == "failed"
    flag.unlink()
    assert smithers.retry("r", store=store, definition=flow).status == "finished"
    assert outputs(store) == {("x", (0,)): 0, ("x", (1,)): 1, ("x", (2,)): 2}
    (retried,) = [e.data for e in store.events(run_id="r") if e.type == "run.retried"]
    assert retried == {"nodes": ["x@1"]}


@define
def gated(ctx: Any) -> Any:
    return Workflow(
        Sequence(
            Task(id="build", output=int, value=1),
            Approval(id="ship", request=ApprovalRequest(title="Ship it?")),
            Task(id="done", output=int, value=2),
        ),
        name="gated",
    )


def denied_run(store: KVStore) -> None:
    """A run whose gate `ship` was denied under on_deny='fail'."""
    run(gated, store)
    smithers.deny("r", "ship", note="not today", by="ana", store=store)
    assert smithers.resume("r", store=store, definition=gated).status == "failed"


def test_a_denied_gate_is_not_asked_again_unless_named(store: KVStore) -> None:
    """Without node= the denial stands: retry refuses, naming the gate; nothing is written."""
    denied_run(store)
    before = (store.get_run("r"), store.events(run_id="r"), store.approvals("r"))
    with pytest.raises(
        InputError,
        match=r"^Gate `ship` of run `r` was denied \(on_deny='fail'\); a denied gate is asked "
        r"again only when named: retry with node='ship' \(--node ship\)\.$",
    ):
        smithers.retry("r", store=store, definition=gated)
    assert (store.get_run("r"), store.events(run_id="r"), store.approvals("r")) == before


def test_a_denied_gate_named_is_requested_again_and_the_denial_stays_on_record(
    store: KVStore,
) -> None:
    """retry(node=gate) requests the gate anew; the old denial is kept in `previous`;
    approving it then finishes the run without rerunning what finished."""
    denied_run(store)
    waiting = smithers.retry("r", node="ship", store=store, definition=gated)
    assert waiting.status == "waiting-approval"
    assert [(p.node_id, p.request) for p in waiting.pending] == [
        ("ship", ApprovalRequest(title="Ship it?"))
    ]
    (record,) = store.approvals("r")
    assert record.status == "requested"
    assert [(p["status"], p["decision"]["note"], p["decided_by"]) for p in record.previous] == [
        ("denied", "not today", "ana")
    ]
    decided = [
        e.data["decision"]["approved"]
        for e in store.events(run_id="r")
        if e.type == "approval.decided"
    ]
    assert decided == [False]
    smithers.approve("r", "ship", store=store)
    done = smithers.resume("r", store=store, definition=gated)
    assert done.status == "finished"
    assert states(store) == {
        ("build", ()): "finished",
        ("ship", ()): "finished",
        ("done", ()): "finished",
    }
    assert [e.data for e in store.events(run_id="r") if e.type == "run.retried"] == [
        {"nodes": ["ship"], "node": "ship"}
    ]
    assert [e.type for e in store.events(run_id="r") if e.node_id == "build"] == [
        "node.started",
        "node.finished",
    ]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("finished", r"^Run `r` is finished, not failed; only a failed run can be retried"),
        ("waiting", r"^Run `r` is waiting-approval, not failed; .*approve or deny it\)\.$"),
    ],
)
def test_retry_refuses_a_run_that_did_not_fail(store: KVStore, setup: str, message: str) -> None:
    """Only a failed run can be retried; the message says what to do instead."""
    if setup == "finished":
        run(finishing_flow(), store)
    else:
        run(gated, store)
    before = store.events(run_id="r")
    with pytest.raises(InputError, match=message):
        smithers.retry("r", store=store)
    assert store.events(run_id="r") == before


def finishing_flow() -> Any:
    """A one-task workflow that finishes."""

    @define
    def flow(ctx: Any) -> Any:
        return Workflow(Task(id="a", output=int, value=1), name="flow")

    return flow


def test_retry_refuses_a_node_that_did_not_fail(store: KVStore, tmp_path: Path) -> None:
    """node= must name a failed node: a finished node or an unknown id is refused."""
    flag = tmp_path / "broken"
    flag.touch()
    flow = flaky_flow(flag, Recorder())
    run(flow, store)
    with pytest.raises(
        InputError,
        match=r"^Node `prepare` of run `r` did not fail \(it is finished\); retry names a "
        r"failed node, here: `deploy`\.$",
    ):
        smithers.retry("r", node="prepare", store=store, definition=flow)
    with pytest.raises(InputError, match=r"^Node `nope` of run `r` did not fail \(it never ran\)"):
        smithers.retry("r", node="nope", store=store, definition=flow)
    assert store.get_run("r").status == "failed"  # type: ignore[union-attr]


def test_retry_of_an_unknown_run_is_refused(store: KVStore) -> None:
    """An unknown run id names the store and how to list runs."""
    with pytest.raises(RunNotFoundError, match=r"^No run `ghost` in the store"):
        smithers.retry("ghost", store=store)


def test_aretry_retries_inside_an_event_loop(store: KVStore, tmp_path: Path) -> None:
    """aretry is the awaitable form for callers inside an event loop."""
    flag = tmp_path / "broken"
    flag.touch()
    flow = flaky_flow(flag, Recorder())
    run(flow, store)
    flag.unlink()
    result = asyncio.run(aretry("r", store=store, definition=flow))
    assert result.status == "finished"
