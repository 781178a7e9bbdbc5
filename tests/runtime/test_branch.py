"""Branch: only the chosen side mounts and runs; a side switches freely until a node under
it starts, then it is frozen; and what happens to a task that unmounts while it runs."""

from __future__ import annotations

import threading

import smithers
from smithers import Branch, Loop, Parallel, Sequence, Task, Workflow
from smithers.store import EventRecord, KVStore
from tests.runtime.helpers import (
    Recorder,
    attempts,
    events,
    final_graph,
    outputs,
    reasons,
    run,
    states,
)

WAIT_SECONDS = 10.0


def test_only_the_chosen_side_runs(store: KVStore) -> None:
    """Branch(if_=True) runs `then` and never mounts `else_`; if_=False the reverse."""
    ran = Recorder()

    def side(name: str, value: int) -> Task:
        def body() -> int:
            ran.add(name)
            return value

        return Task(id=name, output=int, run=body)

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        return Workflow(
            Branch(if_=True, then=side("yes", 1), else_=side("no", 2)),
            Branch(if_=False, then=side("yes2", 3), else_=side("no2", 4)),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert sorted(ran.items) == ["no2", "yes"]
    assert result.outputs == {"yes": 1, "no2": 4}
    assert states(store) == {("yes", ()): "finished", ("no2", ()): "finished"}
    assert {n.id for n in final_graph(store).nodes} == {"yes", "no2"}


def test_branch_without_else_mounts_nothing_when_false(store: KVStore) -> None:
    """Branch(if_=False) with no else_ mounts nothing and the next sibling still runs."""

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        return Workflow(
            Task(id="a", output=int, value=1),
            Branch(if_=False, then=Task(id="t", output=int, value=2)),
            Task(id="b", output=int, value=3),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert result.outputs == {"a": 1, "b": 3}
    assert states(store) == {("a", ()): "finished", ("b", ()): "finished"}


def test_branch_side_switches_before_anything_under_it_started(store: KVStore) -> None:
    """A side chosen before its condition's input exists is dropped when the input arrives,
    as long as nothing under it started: the old side never runs."""
    ran = Recorder()

    def body(name: str, value: str) -> Task:
        def go() -> str:
            ran.add(name)
            return value

        return Task(id=name, output=str, run=go)

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        ready = ctx.output_maybe("check")
        return Workflow(
            Task(id="check", output=bool, run=lambda: True),
            Branch(
                if_=ready is True,
                then=Sequence(body("deploy", "deployed"), body("notify", "notified")),
                else_=body("wait", "waited"),
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert ran.items == ["deploy", "notify"]
    assert result.outputs == {"check": True, "deploy": "deployed", "notify": "notified"}
    assert ("wait", ()) not in states(store)
    branch = next(g for g in final_graph(store).groups if g.kind == "branch")
    assert (branch.condition, branch.taken, branch.frozen) == (True, "then", False)


def test_branch_side_is_frozen_once_a_node_under_it_started(store: KVStore) -> None:
    """When the condition flips after a node under the branch started, the started side stays
    mounted and runs to the end; the other side never mounts."""
    inside_started = threading.Event()
    ran = Recorder()

    def flip() -> str:
        # Finish only once the branch's first node runs, so the flip comes after the start.
        assert inside_started.wait(WAIT_SECONDS), "the branch's first node never started"
        return "flipped"

    def first() -> int:
        inside_started.set()
        ran.add("first")
        return 1

    def second(f: str) -> int:
        ran.add(f"second after {f}")
        return 2

    def other() -> int:
        ran.add("other")
        return 3

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        flag = ctx.output_maybe("flag")
        return Workflow(
            Parallel(
                Task(id="flag", output=str, run=flip),
                Branch(
                    if_=flag is None,
                    then=Sequence(
                        Task(id="first", output=int, run=first),
                        Task(id="second", output=int, run=second, needs={"f": "flag"}),
                    ),
                    else_=Task(id="other", output=int, run=other),
                ),
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert ran.items == ["first", "second after flipped"]
    assert result.outputs == {"flag": "flipped", "first": 1, "second": 2}
    assert ("other", ()) not in states(store)
    branch = next(g for g in final_graph(store).groups if g.kind == "branch")
    assert (branch.condition, branch.taken, branch.frozen) == (False, "then", True)


def test_an_unmounted_in_flight_task_finishes_and_is_cancelled(store: KVStore) -> None:
    """A task that unmounts while it runs completes its attempt; its result is stored and the
    node is `cancelled` with reason `unmounted`; the run goes on."""
    work_started = threading.Event()
    release = threading.Event()
    finished = Recorder()

    def stop() -> bool:
        assert work_started.wait(WAIT_SECONDS), "work never started"
        return True

    def work() -> str:
        work_started.set()
        # Released only once the commit that unmounted this task is done (see on_event).
        assert release.wait(WAIT_SECONDS), "the unmount was never committed"
        finished.add("work")
        return "late result"

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        stopped = ctx.output_maybe("stop")
        return Workflow(
            Parallel(
                Task(id="stop", output=bool, run=stop),
                not stopped and Task(id="work", output=str, run=work),
            ),
            Task(id="after", output=int, value=1),
            name="flow",
        )

    def on_event(event: EventRecord) -> None:
        if event.type == "node.finished" and event.node_id == "stop":
            release.set()

    result = run(flow, store, on_event=on_event)
    assert result.status == "finished"
    assert finished.items == ["work"]
    assert states(store) == {
        ("stop", ()): "finished",
        ("work", ()): "cancelled",
        ("after", ()): "finished",
    }
    assert reasons(store)[("work", ())] == "unmounted"
    assert outputs(store)[("work", ())] == "late result"
    assert attempts(store, "work") == [(1, "ok")]
    assert "work" not in {n.id for n in final_graph(store).nodes}


def test_unmounted_task_mounted_again_is_finished_from_its_kept_output(store: KVStore) -> None:
    """A task cancelled as unmounted, whose late result was stored, is `finished` without
    running again when the build function mounts it once more; needs on it get that result."""
    work_started = threading.Event()
    release = threading.Event()
    cancelled = threading.Event()
    runs = Recorder()

    def stop() -> bool:
        assert work_started.wait(WAIT_SECONDS), "work never started"
        return True

    def work() -> str:
        runs.add("work")
        work_started.set()
        assert release.wait(WAIT_SECONDS), "the unmount was never committed"
        return "late"

    def restore() -> bool:
        assert cancelled.wait(WAIT_SECONDS), "work was never cancelled"
        return True

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        stopped = ctx.output_maybe("stop")
        restored = ctx.output_maybe("restore")
        return Workflow(
            Parallel(
                Task(id="stop", output=bool, run=stop),
                (not stopped or restored) and Task(id="work", output=str, run=work),
            ),
            Task(id="restore", output=bool, run=restore),
            Task(id="use", output=str, run=lambda w: w + "!", needs={"w": "work"}),
            name="flow",
        )

    def on_event(event: EventRecord) -> None:
        if event.type == "node.finished" and event.node_id == "stop":
            release.set()
        if event.type == "node.cancelled" and event.node_id == "work":
            cancelled.set()

    result = run(flow, store, on_event=on_event)
    assert result.status == "finished"
    assert runs.items == ["work"]
    assert attempts(store, "work") == [(1, "ok")]
    assert states(store)[("work", ())] == "finished"
    assert result.outputs["use"] == "late!"


def test_an_unmounted_in_flight_failure_does_not_fail_the_run(store: KVStore) -> None:
    """An attempt that fails after its task unmounted is recorded as failed, the node is
    cancelled (unmounted) and the run still finishes."""
    work_started = threading.Event()
    release = threading.Event()

    def stop() -> bool:
        assert work_started.wait(WAIT_SECONDS), "work never started"
        return True

    def work() -> int:
        work_started.set()
        assert release.wait(WAIT_SECONDS), "the unmount was never committed"
        raise RuntimeError("late failure")

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        stopped = ctx.output_maybe("stop")
        return Workflow(
            Parallel(
                Task(id="stop", output=bool, run=stop),
                not stopped and Task(id="work", output=int, run=work),
            ),
            name="flow",
        )

    def on_event(event: EventRecord) -> None:
        if event.type == "node.finished" and event.node_id == "stop":
            release.set()

    result = run(flow, store, on_event=on_event)
    assert result.status == "finished"
    assert result.error is None
    assert states(store) == {("stop", ()): "finished", ("work", ()): "cancelled"}
    assert reasons(store)[("work", ())] == "unmounted"
    assert attempts(store, "work") == [(1, "failed")]


def test_a_task_unmounted_while_waiting_for_its_retry_is_cancelled(store: KVStore) -> None:
    """A task that unmounts during its backoff never retries: it is cancelled (unmounted)."""
    retrying = threading.Event()
    calls = Recorder()

    def stop() -> bool:
        assert retrying.wait(WAIT_SECONDS), "work never failed"
        return True

    def work() -> int:
        calls.add("work")
        raise RuntimeError("fails")

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        stopped = ctx.output_maybe("stop")
        return Workflow(
            Parallel(
                Task(id="stop", output=bool, run=stop),
                not stopped
                and Task(id="work", output=int, run=work, retries=3, backoff=WAIT_SECONDS),
            ),
            name="flow",
        )

    def on_event(event: EventRecord) -> None:
        if event.type == "node.retrying":
            retrying.set()

    result = run(flow, store, on_event=on_event)
    assert result.status == "finished"
    assert calls.items == ["work"]
    assert states(store) == {("stop", ()): "finished", ("work", ()): "cancelled"}
    assert reasons(store)[("work", ())] == "unmounted"
    assert [e for e in events(store) if e[1] == "work"] == [
        ("node.started", "work"),
        ("node.retrying", "work"),
        ("node.cancelled", "work"),
    ]


def test_branch_with_skip_if_skips_the_chosen_side(store: KVStore) -> None:
    """Branch(skip_if=True) mounts its chosen side as skipped."""

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        return Workflow(
            Branch(
                if_=True,
                then=Task(id="t", output=int, value=1),
                else_=Task(id="e", output=int, value=2),
                skip_if=True,
            ),
            Task(id="after", output=int, value=3),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert states(store) == {("t", ()): "skipped", ("after", ()): "finished"}


def test_branches_inside_a_loop_choose_per_iteration(store: KVStore) -> None:
    """A branch in a loop body is chosen anew each iteration (its freeze is per iteration)."""

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        even = ctx.iterations.get("L", 0) % 2 == 0
        return Workflow(
            Loop(
                Branch(
                    if_=even,
                    then=Task(id="even", output=int, run=lambda task: task.iteration[0]),
                    else_=Task(id="odd", output=int, run=lambda task: task.iteration[0]),
                ),
                id="L",
                until=False,
                max_iterations=4,
            ),
            name="flow",
        )

    assert run(flow, store).status == "finished"
    assert outputs(store) == {
        ("even", (0,)): 0,
        ("odd", (1,)): 1,
        ("even", (2,)): 2,
        ("odd", (3,)): 3,
    }


def test_a_side_whose_task_waits_for_a_slot_is_not_frozen(store: KVStore) -> None:
    """A task held back by the concurrency cap has not started, so its branch side still
    switches when the condition flips."""
    ran = Recorder()

    @smithers.smithers
    def flow(ctx: smithers.Context) -> Workflow:
        flag = ctx.output_maybe("flag")
        return Workflow(
            Parallel(
                Task(id="flag", output=bool, run=lambda: ran.add("flag") or True),
                Branch(
                    if_=flag is None,
                    then=Task(id="then", output=int, run=lambda: ran.add("then") or 1),
                    else_=Task(id="else", output=int, run=lambda: ran.add("else") or 2),
                ),
            ),
            name="flow",
        )

    result = run(flow, store, max_concurrency=1)
    assert result.status == "finished"
    assert ran.items == ["flag", "else"]
    assert states(store) == {("flag", ()): "finished", ("else", ()): "finished"}
