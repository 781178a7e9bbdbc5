"""Loop: `until` before every iteration, max_iterations and its policies, nested iteration
tuples, and the lookup rule for reads into, out of and within loops."""

from __future__ import annotations

from typing import Any

import smithers
from smithers import Context, Loop, Parallel, Sequence, Task, TaskInfo, Workflow
from smithers.store import KVStore
from tests.runtime.helpers import (
    Recorder,
    events,
    index_of,
    outputs,
    reasons,
    run,
    states,
)


def counter(scale: int = 1) -> Any:
    """A task body returning its loop iteration (outermost first) times ``scale``."""

    def body(task: TaskInfo) -> int:
        return task.iteration[-1] * scale

    return body


# -- until and max_iterations ---------------------------------------------------------------


def test_until_true_never_runs_the_body(store: KVStore) -> None:
    """until=True is checked before the first iteration: the body never runs, the loop is
    done, and the next sibling runs."""
    ran = Recorder()

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(Task(id="x", output=int, run=lambda: ran.add("x") or 1), id="L", until=True),
            Task(id="after", output=int, value=2),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert ran.items == []
    assert result.outputs == {"after": 2}
    assert ("node.started", "x") not in events(store)
    assert states(store) == {("x", (0,)): "skipped", ("after", ()): "finished"}


def test_until_callable_true_at_first_check_never_runs_the_body(store: KVStore) -> None:
    """A callable `until` is called before the first iteration; True there skips the body."""
    ran = Recorder()
    checks = Recorder()

    def until(ctx: Context) -> bool:
        checks.add(dict(ctx.iterations))
        return True

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(Task(id="x", output=int, run=lambda: ran.add("x") or 1), id="L", until=until),
            name="flow",
        )

    assert run(flow, store).status == "finished"
    assert ran.items == []
    assert checks.items == [{"L": 0}]


def test_until_false_runs_max_iterations_and_returns_the_last(store: KVStore) -> None:
    """until=False with on_max_reached='return-last' runs max_iterations iterations, keeps
    every iteration's output and reports the last one."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(Task(id="x", output=int, run=counter(10)), id="L", until=False, max_iterations=3),
            Task(id="after", output=int, run=lambda x: x + 1, needs={"x": "x"}),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert outputs(store) == {("x", (0,)): 0, ("x", (1,)): 10, ("x", (2,)): 20, ("after", ()): 21}
    assert result.outputs == {"x": 20, "after": 21}


def test_default_max_iterations_is_five(store: KVStore) -> None:
    """A loop whose until never holds runs five iterations by default."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(Task(id="x", output=int, run=counter()), id="L", until=False), name="flow"
        )

    assert run(flow, store).status == "finished"
    assert sorted(k for k in outputs(store)) == [("x", (i,)) for i in range(5)]


def test_on_max_reached_fail_fails_the_run_with_a_loop_error(store: KVStore) -> None:
    """on_max_reached='fail' fails the run with a LoopError naming the loop once
    max_iterations ran with until still false; nothing after the loop runs."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(
                Task(id="x", output=int, run=counter()),
                id="retry-loop",
                until=lambda ctx: ctx.output_maybe("x") == 99,
                max_iterations=2,
                on_max_reached="fail",
            ),
            Task(id="after", output=int, value=1),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.type == "LoopError"
    assert "`retry-loop`" in result.error.message
    assert "max_iterations=2" in result.error.message
    assert sorted(outputs(store)) == [("x", (0,)), ("x", (1,))]
    assert ("after", ()) not in states(store)
    assert events(store)[-1] == ("run.failed", None)


def test_on_max_reached_fail_is_not_triggered_when_until_holds_at_the_last_iteration(
    store: KVStore,
) -> None:
    """A loop whose until becomes true after its last allowed iteration finishes normally."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(
                Task(id="x", output=int, run=counter()),
                id="L",
                until=lambda ctx: ctx.output_maybe("x") == 1,
                max_iterations=2,
                on_max_reached="fail",
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert result.outputs == {"x": 1}


def test_until_callable_sees_the_finished_iterations_outputs(store: KVStore) -> None:
    """A callable until is checked before every iteration and reads the output the last
    iteration committed: the loop stops as soon as it holds."""
    seen = Recorder()

    def until(ctx: Context) -> bool:
        value = ctx.output_maybe("x")
        seen.add(value)
        return value is not None and value >= 3

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(Task(id="x", output=int, run=counter(3)), id="L", until=until, max_iterations=5),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert sorted(outputs(store)) == [("x", (0,)), ("x", (1,))]
    assert seen.items == [None, 0, 3]


def test_until_that_raises_fails_the_run(store: KVStore) -> None:
    """An until callable that raises fails the run with that exception type, naming the loop."""

    def until(ctx: Context) -> bool:
        raise KeyError("no such thing")

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(Loop(Task(id="x", output=int, value=1), id="L", until=until), name="flow")

    result = run(flow, store)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.type == "KeyError"
    assert "until of loop `L`" in result.error.message
    assert ("x", (0,)) not in states(store)


def test_loop_body_runs_in_order_and_iterations_do_not_overlap(store: KVStore) -> None:
    """Each iteration runs the body in order, and the next iteration starts only after the
    last body node of the previous one finished."""
    order = Recorder()

    def step(name: str) -> Any:
        def body(task: TaskInfo) -> int:
            order.add((name, task.iteration))
            return 0

        return body

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(
                Task(id="a", output=int, run=step("a")),
                Parallel(Task(id="b", output=int, run=step("b"))),
                Task(id="c", output=int, run=step("c")),
                id="L",
                until=False,
                max_iterations=2,
            ),
            name="flow",
        )

    assert run(flow, store).status == "finished"
    assert order.items == [
        ("a", (0,)),
        ("b", (0,)),
        ("c", (0,)),
        ("a", (1,)),
        ("b", (1,)),
        ("c", (1,)),
    ]


def test_skip_if_on_a_loop_skips_its_body_and_the_run_goes_on(store: KVStore) -> None:
    """Loop(skip_if=True) never runs its body; the next sibling runs."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(Task(id="x", output=int, value=1), id="L", until=False, skip_if=True),
            Task(id="after", output=int, value=2),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert result.outputs == {"after": 2}
    assert states(store) == {("x", (0,)): "skipped", ("after", ()): "finished"}


# -- nested loops ---------------------------------------------------------------------------


def test_nested_loops_store_iteration_tuples_and_restart_the_inner_loop(store: KVStore) -> None:
    """Outputs of nested loops are keyed by iteration tuples, outermost first, and the inner
    loop starts again at 0 for every outer iteration."""
    order = Recorder()

    def body(task: TaskInfo) -> list[int]:
        order.add((task.node_id, task.iteration))
        return list(task.iteration)

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(
                Task(id="o", output=list[int], run=body),
                Loop(
                    Task(id="i", output=list[int], run=body),
                    id="inner",
                    until=False,
                    max_iterations=2,
                ),
                id="outer",
                until=False,
                max_iterations=3,
            ),
            name="flow",
        )

    assert run(flow, store).status == "finished"
    assert outputs(store) == {
        ("o", (0,)): [0],
        ("o", (1,)): [1],
        ("o", (2,)): [2],
        ("i", (0, 0)): [0, 0],
        ("i", (0, 1)): [0, 1],
        ("i", (1, 0)): [1, 0],
        ("i", (1, 1)): [1, 1],
        ("i", (2, 0)): [2, 0],
        ("i", (2, 1)): [2, 1],
    }
    assert order.items == [
        ("o", (0,)),
        ("i", (0, 0)),
        ("i", (0, 1)),
        ("o", (1,)),
        ("i", (1, 0)),
        ("i", (1, 1)),
        ("o", (2,)),
        ("i", (2, 0)),
        ("i", (2, 1)),
    ]


def test_ctx_iterations_in_the_build_function_follow_nested_loops(store: KVStore) -> None:
    """ctx.iterations, read while rendering, maps every mounted loop to its current iteration."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(
                Loop(
                    Task(id="seen", output=dict[str, int], value=dict(ctx.iterations)),
                    id="inner",
                    until=False,
                    max_iterations=2,
                ),
                id="outer",
                until=False,
                max_iterations=2,
            ),
            name="flow",
        )

    assert run(flow, store).status == "finished"
    assert outputs(store) == {
        ("seen", (0, 0)): {"outer": 0, "inner": 0},
        ("seen", (0, 1)): {"outer": 0, "inner": 1},
        ("seen", (1, 0)): {"outer": 1, "inner": 0},
        ("seen", (1, 1)): {"outer": 1, "inner": 1},
    }


def test_inner_until_is_checked_per_outer_iteration(store: KVStore) -> None:
    """An inner loop's until reads its own iteration's outputs, so each outer iteration runs the
    inner loop to its own end."""

    def inner_value(task: TaskInfo) -> int:
        outer, inner = task.iteration
        return outer + inner

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(
                Loop(
                    Task(id="i", output=int, run=inner_value),
                    id="inner",
                    until=lambda ctx: ctx.output_maybe("i") == 2,
                    max_iterations=5,
                ),
                id="outer",
                until=False,
                max_iterations=3,
            ),
            name="flow",
        )

    assert run(flow, store).status == "finished"
    assert sorted(outputs(store)) == [
        ("i", (0, 0)),
        ("i", (0, 1)),
        ("i", (0, 2)),
        ("i", (1, 0)),
        ("i", (1, 1)),
        ("i", (2, 0)),
    ]


# -- the lookup rule ------------------------------------------------------------------------


def test_same_loop_reads_default_to_the_current_iteration(store: KVStore) -> None:
    """Inside a loop, needs, live reads and render-time reads of a same-loop node all see the
    current iteration's output."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        rendered = ctx.output_maybe("x")
        return Workflow(
            Loop(
                Task(id="x", output=int, run=counter(10)),
                Task(id="by_needs", output=int, run=lambda x: x + 1, needs={"x": "x"}),
                Task(id="by_live_read", output=int, run=lambda: ctx.output("x") + 2),
                Task(id="by_render", output=int, value=-1 if rendered is None else rendered + 3),
                id="L",
                until=False,
                max_iterations=3,
            ),
            name="flow",
        )

    assert run(flow, store).status == "finished"
    found = outputs(store)
    for i in range(3):
        assert [found[(n, (i,))] for n in ("x", "by_needs", "by_live_read", "by_render")] == [
            10 * i,
            10 * i + 1,
            10 * i + 2,
            10 * i + 3,
        ]


def test_a_node_outside_any_loop_is_read_from_inside_without_an_iteration(store: KVStore) -> None:
    """A loop body reads a node outside every loop by id alone (needs, live read, render)."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        base = ctx.output_maybe("base")
        return Workflow(
            Task(id="base", output=int, value=100),
            Loop(
                Task(
                    id="by_needs",
                    output=int,
                    run=lambda b, task: b + task.iteration[0],
                    needs={"b": "base"},
                ),
                Task(id="by_live_read", output=int, run=lambda: ctx.output("base") * 2),
                Task(id="by_render", output=int, value=-1 if base is None else base * 3),
                id="L",
                until=False,
                max_iterations=2,
            ),
            name="flow",
        )

    assert run(flow, store).status == "finished"
    found = outputs(store)
    assert [found[("by_needs", (i,))] for i in range(2)] == [100, 101]
    assert [found[("by_live_read", (i,))] for i in range(2)] == [200, 200]
    assert [found[("by_render", (i,))] for i in range(2)] == [300, 300]


def test_a_loop_body_node_read_from_outside_gives_its_last_iteration(store: KVStore) -> None:
    """From outside its loop, a body node reads as its last iteration, by needs, live read and
    render-time read."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        x = ctx.output_maybe("x")
        return Workflow(
            Loop(Task(id="x", output=int, run=counter(10)), id="L", until=False, max_iterations=4),
            Task(id="by_needs", output=int, run=lambda x: x, needs={"x": "x"}),
            Task(id="by_live_read", output=int, run=lambda: ctx.output("x")),
            Task(id="by_render", output=int, value=-1 if x is None else x),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert result.outputs == {"x": 30, "by_needs": 30, "by_live_read": 30, "by_render": 30}


def test_needs_on_a_loop_body_node_waits_for_the_whole_loop(store: KVStore) -> None:
    """A task beside a loop that needs a node of its body starts only after the loop's last
    iteration, and gets that iteration's output."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Parallel(
                Task(id="reader", output=int, run=lambda x: x, needs={"x": "x"}),
                Loop(
                    Task(id="x", output=int, run=counter(10)),
                    Task(id="y", output=int, value=0),
                    id="L",
                    until=False,
                    max_iterations=3,
                ),
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert result.outputs["reader"] == 20
    log = events(store)
    started = log.index(("node.started", "reader"))
    finished_x = [i for i, e in enumerate(log) if e == ("node.finished", "x")]
    finished_y = [i for i, e in enumerate(log) if e == ("node.finished", "y")]
    assert len(finished_x) == 3
    assert max(finished_x + finished_y) < started


def test_needs_on_a_body_node_of_a_loop_that_never_ran_is_upstream_skipped(store: KVStore) -> None:
    """A loop that ends before its first iteration leaves its body skipped, so a task that
    needs a body node is skipped too."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(Task(id="x", output=int, value=1), id="L", until=True),
            Task(id="reader", output=int, run=lambda x: x, needs={"x": "x"}),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert states(store) == {("x", (0,)): "skipped", ("reader", ()): "skipped"}
    assert reasons(store)[("reader", ())] == "upstream-skipped: x"


def test_ctx_outputs_and_latest_list_every_iteration(store: KVStore) -> None:
    """ctx.outputs gives every iteration's output in order and ctx.latest the last one."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(Task(id="x", output=int, run=counter(5)), id="L", until=False, max_iterations=4),
            Task(id="all", output=list[int], run=lambda: ctx.outputs("x")),
            Task(id="last", output=int, run=lambda: ctx.latest("x")),
            Task(id="rendered", output=list[int], value=ctx.outputs("x")),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert result.outputs["all"] == [0, 5, 10, 15]
    assert result.outputs["last"] == 15
    assert result.outputs["rendered"] == [0, 5, 10, 15]


def test_ctx_output_with_an_explicit_iteration_reads_that_iteration(store: KVStore) -> None:
    """ctx.output(id, iteration=...) reads a named iteration, as an int or a tuple."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(
                Loop(
                    Task(
                        id="x",
                        output=int,
                        run=lambda task: task.iteration[0] * 10 + task.iteration[1],
                    ),
                    id="in",
                    until=False,
                    max_iterations=2,
                ),
                id="out",
                until=False,
                max_iterations=2,
            ),
            Loop(
                Task(id="y", output=int, run=counter(7)), id="solo", until=False, max_iterations=3
            ),
            Task(
                id="picked",
                output=list[int],
                run=lambda: [
                    ctx.output("x", iteration=(0, 1)),
                    ctx.output("x", iteration=(1, 0)),
                    ctx.output("y", iteration=1),
                ],
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert result.outputs["picked"] == [1, 10, 7]


def test_ctx_iteration_inside_a_run_callable_is_the_only_loops_iteration(store: KVStore) -> None:
    """ctx.iteration, read live by a task inside the only mounted loop, is that loop's
    iteration."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(
                Task(id="x", output=int, run=lambda: ctx.iteration),
                id="L",
                until=False,
                max_iterations=3,
            ),
            name="flow",
        )

    assert run(flow, store).status == "finished"
    assert outputs(store) == {("x", (0,)): 0, ("x", (1,)): 1, ("x", (2,)): 2}


def test_ctx_iteration_in_the_build_function_is_the_only_loops_iteration(store: KVStore) -> None:
    """ctx.iteration, read while rendering a workflow with one loop, is that loop's current
    iteration (a build function may use it for a payload)."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(
                Task(id="x", output=int, value=ctx.iteration * 10),
                id="L",
                until=False,
                max_iterations=3,
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.error is None
    assert result.status == "finished"
    assert outputs(store) == {("x", (0,)): 0, ("x", (1,)): 10, ("x", (2,)): 20}


def test_ctx_iteration_with_two_loops_mounted_is_a_context_error(store: KVStore) -> None:
    """ctx.iteration with nested loops mounted raises ContextError naming both loops."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(
                Loop(
                    Task(id="x", output=int, run=lambda: ctx.iteration),
                    id="inner",
                    until=False,
                    max_iterations=1,
                ),
                id="outer",
                until=False,
                max_iterations=1,
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.type == "ContextError"
    assert result.error.node_id == "x"
    assert "`inner`" in result.error.message
    assert "`outer`" in result.error.message


def test_a_sequence_after_a_loop_waits_for_the_loop(store: KVStore) -> None:
    """A Sequence sibling after a loop starts only after the loop's last iteration."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Sequence(
                Loop(
                    Task(id="x", output=int, run=counter()), id="L", until=False, max_iterations=2
                ),
                Task(id="after", output=int, value=1),
            ),
            name="flow",
        )

    assert run(flow, store).status == "finished"
    log = events(store)
    last_x = max(i for i, e in enumerate(log) if e == ("node.finished", "x"))
    assert last_x < index_of(store, "node.started", "after")


def test_ctx_iterations_in_the_build_function_name_the_loop_being_mounted(store: KVStore) -> None:
    """ctx.iterations[loop_id], read while rendering the loop's own body, gives its current
    iteration from the very first render."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(
                Task(id="x", output=int, value=ctx.iterations["L"] * 10),
                id="L",
                until=False,
                max_iterations=3,
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.error is None
    assert outputs(store) == {("x", (0,)): 0, ("x", (1,)): 10, ("x", (2,)): 20}


def test_inner_until_is_not_checked_before_the_outer_loop_starts(store: KVStore) -> None:
    """A nested loop's until is first checked when its outer loop's iteration reaches it, so it
    may read outputs committed before the outer loop started."""
    checks = Recorder()

    def inner_until(ctx: Context) -> bool:
        limit = ctx.output("setup")
        checks.add(dict(ctx.iterations))
        return (ctx.output_maybe("x") or 0) >= limit

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Task(id="setup", output=int, run=lambda: 1),
            Loop(
                Loop(
                    Task(id="x", output=int, run=lambda task: task.iteration[1]),
                    id="inner",
                    until=inner_until,
                    max_iterations=5,
                ),
                id="outer",
                until=False,
                max_iterations=2,
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.error is None
    assert result.status == "finished"
    assert sorted(outputs(store)) == [
        ("setup", ()),
        ("x", (0, 0)),
        ("x", (0, 1)),
        ("x", (1, 0)),
        ("x", (1, 1)),
    ]


def test_an_outer_loop_ending_before_its_first_iteration_skips_nested_loops(
    store: KVStore,
) -> None:
    """When an outer loop's until holds before its first iteration, a loop nested in its body
    never runs either: its body is skipped and the run finishes."""
    ran = Recorder()

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(
                Task(id="a", output=int, run=lambda: ran.add("a") or 1),
                Loop(
                    Task(id="x", output=int, run=lambda: ran.add("x") or 2),
                    id="inner",
                    until=False,
                    max_iterations=2,
                ),
                id="outer",
                until=True,
            ),
            Task(id="after", output=int, value=3),
            name="flow",
        )

    result = run(flow, store)
    assert result.error is None
    assert result.status == "finished"
    assert ran.items == []
    assert states(store) == {
        ("a", (0,)): "skipped",
        ("x", (0, 0)): "skipped",
        ("after", ()): "finished",
    }


def test_a_body_of_only_skipped_nodes_is_skipped_in_every_iteration(store: KVStore) -> None:
    """A loop whose body nodes are all skip_if records them skipped in every iteration it runs,
    as it does when the body also holds a running node."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(
                Task(id="x", output=int, value=1, skip_if=True),
                id="L",
                until=False,
                max_iterations=3,
            ),
            name="flow",
        )

    assert run(flow, store).status == "finished"
    assert states(store) == {("x", (0,)): "skipped", ("x", (1,)): "skipped", ("x", (2,)): "skipped"}
    skipped = [e.iteration for e in store.events(run_id="r") if e.type == "node.skipped"]
    assert skipped == [(0,), (1,), (2,)]


def test_an_inner_loop_reads_the_current_outer_iteration_of_an_outer_body_node(
    store: KVStore,
) -> None:
    """From an inner loop, a node of the enclosing loop's body reads as the current outer
    iteration's output, not the latest."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(
                Task(id="o", output=int, run=counter(100)),
                Loop(
                    Task(
                        id="i",
                        output=int,
                        run=lambda o, task: o + task.iteration[1],
                        needs={"o": "o"},
                    ),
                    Task(id="live", output=int, run=lambda: ctx.output("o")),
                    id="inner",
                    until=False,
                    max_iterations=2,
                ),
                id="outer",
                until=False,
                max_iterations=2,
            ),
            Task(id="all", output=list[int], run=lambda: ctx.outputs("i")),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    found = outputs(store)
    assert [found[("i", it)] for it in ((0, 0), (0, 1), (1, 0), (1, 1))] == [0, 1, 100, 101]
    assert [found[("live", it)] for it in ((0, 0), (0, 1), (1, 0), (1, 1))] == [0, 0, 100, 100]
    assert result.outputs["all"] == [0, 1, 100, 101]


def test_needs_on_an_earlier_sibling_loop_gets_its_last_iteration(store: KVStore) -> None:
    """A body node of one loop that needs a body node of an earlier sibling loop gets that
    loop's last iteration in every one of its own iterations."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Parallel(
                Loop(
                    Task(
                        id="y",
                        output=int,
                        run=lambda x, task: x + task.iteration[0],
                        needs={"x": "x"},
                    ),
                    id="B",
                    until=False,
                    max_iterations=2,
                ),
                Loop(
                    Task(id="x", output=int, run=counter(10)), id="A", until=False, max_iterations=3
                ),
            ),
            name="flow",
        )

    assert run(flow, store).status == "finished"
    found = outputs(store)
    assert [found[("y", (i,))] for i in range(2)] == [20, 21]


def test_a_loop_stopping_at_max_iterations_records_an_event(store: KVStore) -> None:
    """Reaching max_iterations appends `loop.max-reached` with the loop, count and policy,
    for each policy and for an inner loop at its outer iteration; `until` ending it does not."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Loop(Task(id="x", output=int, run=counter()), id="L", until=False, max_iterations=2),
            Loop(
                Loop(
                    Task(id="y", output=int, run=counter()), id="in", until=False, max_iterations=1
                ),
                id="out",
                until=lambda c: len(c.outputs("y")) >= 2,
                max_iterations=3,
            ),
            Loop(
                Task(id="z", output=int, run=counter()),
                id="F",
                until=False,
                max_iterations=1,
                on_max_reached="fail",
            ),
            name="flow",
        )

    assert run(flow, store).status == "failed"
    found = [
        (e.node_id, e.iteration, e.data)
        for e in store.events(run_id="r")
        if e.type == "loop.max-reached"
    ]
    assert found == [
        ("L", (), {"iterations": 2, "max_iterations": 2, "on_max_reached": "return-last"}),
        ("in", (0,), {"iterations": 1, "max_iterations": 1, "on_max_reached": "return-last"}),
        ("in", (1,), {"iterations": 1, "max_iterations": 1, "on_max_reached": "return-last"}),
        ("F", (), {"iterations": 1, "max_iterations": 1, "on_max_reached": "fail"}),
    ]
