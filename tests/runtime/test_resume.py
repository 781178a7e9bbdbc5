"""In-process resume: a terminal run is returned as is, committed outputs never re-run, and a
committed output that no longer decodes refuses the resume."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import msgspec
import pytest

import smithers
from smithers import Branch, Context, Loop, Parallel, Sequence, Signal, Task, Workflow
from smithers.errors import OutputTypeChangedError, RunNotFoundError
from smithers.store import KVStore
from tests.runtime.helpers import Recorder, attempts, events, guarded, outputs, run, states


class Build(msgspec.Struct):
    version: str


class BuildV2(msgspec.Struct):
    version: int


def counted(calls: Recorder, name: str, value: Any) -> Any:
    """A task body that records each call."""

    def body() -> Any:
        calls.add(name)
        return value

    return body


def resume(store: KVStore, definition: smithers.WorkflowDefinition, run_id: str = "r") -> Any:
    """`smithers.resume` behind the hang guard."""
    return guarded(lambda: smithers.resume(run_id, store=store, definition=definition))


def parked_flow(
    calls: Recorder, output: Any = Build, value: Any = None
) -> smithers.WorkflowDefinition:
    """build -> Signal `go` -> after: parks waiting for the signal after `build` finished."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Sequence(
                Task(id="build", output=output, run=counted(calls, "build", value or Build("1.0"))),
                Signal(id="go", output=int),
                Task(id="after", output=str, run=counted(calls, "after", "done")),
            ),
            name="flow",
        )

    return flow


def test_resume_of_a_finished_run_returns_its_result_and_runs_nothing(store: KVStore) -> None:
    """resume() of a finished run returns the same result, calls no task and logs nothing."""
    calls = Recorder()

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(Task(id="a", output=int, run=counted(calls, "a", 1)), name="flow")

    first = run(flow, store)
    before = store.last_seq()
    again = resume(store, flow)
    assert again == first
    assert again.status == "finished"
    assert calls.items == ["a"]
    assert store.last_seq() == before


def test_resume_of_a_failed_run_returns_its_error_and_runs_nothing(store: KVStore) -> None:
    """resume() of a failed run returns its error and retries nothing."""
    calls = Recorder()

    def broken() -> int:
        calls.add("broken")
        raise RuntimeError("nope")

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(Task(id="t", output=int, run=broken), name="flow")

    first = run(flow, store)
    assert first.status == "failed"
    before = store.last_seq()
    again = resume(store, flow)
    assert again == first
    assert again.error is not None
    assert again.error.node_id == "t"
    assert calls.items == ["broken"]
    assert store.last_seq() == before


def test_resume_of_an_unknown_run_raises(store: KVStore) -> None:
    """resume() of a run id the store does not hold raises RunNotFoundError."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(Task(id="a", output=int, value=1), name="flow")

    with pytest.raises(RunNotFoundError, match="No run `nope`"):
        smithers.resume("nope", store=store, definition=flow)


def test_a_committed_output_is_never_recomputed_on_resume(store: KVStore) -> None:
    """A resumed run keeps committed outputs unchanged and never calls their tasks again."""
    calls = Recorder()
    flow = parked_flow(calls)
    parked = run(flow, store)
    assert parked.status == "waiting-signal"
    assert calls.items == ["build"]
    smithers.signal("r", "go", 1, store=store)
    done = resume(store, flow)
    assert done.status == "finished"
    assert calls.items == ["build", "after"]
    assert done.outputs == {"build": Build("1.0"), "go": 1, "after": "done"}
    assert attempts(store, "build") == [(1, "ok")]
    assert [e for e in events(store) if e == ("node.started", "build")] == [
        ("node.started", "build")
    ]
    assert ("run.resumed", None) in events(store)


def test_resume_before_the_signal_parks_again_without_rerunning(store: KVStore) -> None:
    """Resuming a parked run with nothing new parks it again and runs nothing."""
    calls = Recorder()
    flow = parked_flow(calls)
    assert run(flow, store).status == "waiting-signal"
    again = resume(store, flow)
    assert again.status == "waiting-signal"
    assert [p.node_id for p in again.pending] == ["go"]
    assert calls.items == ["build"]


def test_resume_keeps_loop_outputs_and_continues_at_the_next_iteration(store: KVStore) -> None:
    """A loop parked at a signal in iteration 1 resumes there: iteration 0 is not re-run."""
    calls = Recorder()

    def body(task: smithers.TaskInfo) -> int:
        calls.add(task.iteration)
        return task.iteration[0]

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(
                Task(id="x", output=int, run=body),
                Signal(id="more", output=int),
                id="L",
                until=False,
                max_iterations=2,
            ),
            name="flow",
        )

    assert run(flow, store).status == "waiting-signal"
    smithers.signal("r", "more", 10, store=store)
    second = resume(store, flow)
    assert second.status == "waiting-signal"
    assert [(p.node_id, p.iteration) for p in second.pending] == [("more", (1,))]
    assert calls.items == [(0,), (1,)]
    assert outputs(store) == {("x", (0,)): 0, ("more", (0,)): 10, ("x", (1,)): 1}


def test_output_type_changed_refuses_resume_and_never_reruns(store: KVStore) -> None:
    """Resuming with a definition whose output type no longer decodes a committed output raises
    OutputTypeChangedError naming the node; nothing runs and the committed output is kept."""
    calls = Recorder()
    assert run(parked_flow(calls), store).status == "waiting-signal"
    smithers.signal("r", "go", 1, store=store)
    changed = parked_flow(calls, output=BuildV2, value=BuildV2(2))
    with pytest.raises(OutputTypeChangedError, match=r"`build`.*`BuildV2`"):
        smithers.resume("r", store=store, definition=changed)
    assert calls.items == ["build"]
    assert outputs(store) == {("build", ()): {"version": "1.0"}}
    assert states(store)[("build", ())] == "finished"


def test_after_output_type_changed_the_original_definition_resumes(store: KVStore) -> None:
    """A refused resume leaves the run resumable: the original definition then finishes it."""
    calls = Recorder()
    flow = parked_flow(calls)
    assert run(flow, store).status == "waiting-signal"
    smithers.signal("r", "go", 1, store=store)
    with pytest.raises(OutputTypeChangedError, match="no longer decodes"):
        smithers.resume("r", store=store, definition=parked_flow(calls, output=BuildV2))
    done = resume(store, flow)
    assert done.status == "finished"
    assert calls.items == ["build", "after"]


def test_a_compatible_output_type_change_resumes(store: KVStore) -> None:
    """A changed output type that still decodes the committed output is accepted."""
    calls = Recorder()
    assert run(parked_flow(calls), store).status == "waiting-signal"
    smithers.signal("r", "go", 1, store=store)
    done = resume(store, parked_flow(calls, output=dict[str, str], value={"version": "x"}))
    assert done.status == "finished"
    assert done.outputs["build"] == {"version": "1.0"}
    assert calls.items == ["build", "after"]


def test_run_with_a_taken_run_id_is_refused(store: KVStore) -> None:
    """Starting a second run with an existing run id raises instead of overwriting it."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(Task(id="a", output=int, value=1), name="flow")

    assert run(flow, store).status == "finished"
    with pytest.raises(ValueError, match="`r`"):
        smithers.run(flow, store=store, run_id="r")
    assert outputs(store) == {("a", ()): 1}


def test_a_frozen_branch_side_survives_resume(store: KVStore) -> None:
    """A branch side frozen before the run parked stays frozen when a later process resumes
    the run, although its condition now says otherwise."""
    first_started = threading.Event()
    calls = Recorder()

    def flag() -> str:
        assert first_started.wait(10.0), "the branch's first node never started"
        return "flipped"

    def first() -> int:
        first_started.set()
        calls.add("first")
        return 1

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        flipped = ctx.output_maybe("flag") is not None
        return Workflow(
            Parallel(
                Task(id="flag", output=str, run=flag),
                Branch(
                    if_=not flipped,
                    then=Sequence(
                        Task(id="first", output=int, run=first),
                        Signal(id="go", output=int),
                        Task(id="second", output=int, run=counted(calls, "second", 2)),
                    ),
                    else_=Task(id="other", output=int, run=counted(calls, "other", 3)),
                ),
            ),
            name="flow",
        )

    assert run(flow, store).status == "waiting-signal"
    smithers.signal("r", "go", 1, store=store)
    done = resume(store, flow)
    assert done.status == "finished"
    assert calls.items == ["first", "second"]
    assert done.outputs == {"flag": "flipped", "first": 1, "go": 1, "second": 2}


def test_arun_and_aresume_drive_runs_inside_an_event_loop(store: KVStore) -> None:
    """arun and aresume work from inside a running event loop, where run() refuses."""
    calls = Recorder()
    flow = parked_flow(calls)

    async def main() -> tuple[Any, Any]:
        with pytest.raises(RuntimeError, match=r"await arun\(\.\.\.\)"):
            smithers.run(flow, store=store, run_id="refused")
        parked = await smithers.arun(flow, store=store, run_id="r")
        smithers.signal("r", "go", 1, store=store)
        done = await smithers.aresume("r", store=store, definition=flow)
        return parked, done

    parked, done = guarded(lambda: asyncio.run(main()))
    assert parked.status == "waiting-signal"
    assert done.status == "finished"
    assert calls.items == ["build", "after"]
    assert store.get_run("refused") is None
