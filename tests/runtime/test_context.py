"""Context during a run: run_id, input, output/output_maybe/latest/outputs, fresh copies,
render-time dependencies versus live reads, and the errors ctx raises."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

import smithers
from smithers import Context, Loop, Parallel, Sequence, Task, Workflow
from smithers.errors import InputError
from smithers.store import KVStore
from tests.runtime.helpers import Recorder, outputs, run, states


class Params(msgspec.Struct):
    version: str
    regions: list[str] = msgspec.field(default_factory=lambda: ["eu"])


class Pair(msgspec.Struct):
    left: int
    right: int


def test_run_id_is_seen_while_rendering_and_inside_tasks(store: KVStore) -> None:
    """ctx.run_id is the run's id, both in the build function and in a run callable."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Task(id="rendered", output=str, value=ctx.run_id),
            Task(id="live", output=str, run=lambda: ctx.run_id),
            name="flow",
        )

    result = run(flow, store, run_id="the-run")
    assert result.outputs == {"rendered": "the-run", "live": "the-run"}


def test_input_is_validated_into_the_declared_type(store: KVStore) -> None:
    """ctx.input is the run input validated into the definition's input type, defaults
    filled."""

    @smithers.smithers(input=Params)
    def flow(ctx: Context) -> Workflow:
        params = ctx.input
        return Workflow(
            Task(id="version", output=str, value=params.version),
            Task(id="regions", output=list[str], value=params.regions),
            name="flow",
        )

    result = run(flow, store, input={"version": "1.2"})
    assert result.status == "finished"
    assert result.outputs == {"version": "1.2", "regions": ["eu"]}


def test_input_is_a_fresh_copy_on_every_read(store: KVStore) -> None:
    """Mutating ctx.input changes neither the next read nor later renders."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        first = ctx.input
        first["items"].append("mutated")
        second = ctx.input
        return Workflow(
            Task(id="a", output=int, value=1),
            Task(id="seen", output=list[str], value=second["items"]),
            Task(id="live", output=list[str], run=lambda: ctx.input["items"]),
            name="flow",
        )

    result = run(flow, store, input={"items": ["x"]})
    assert result.status == "finished"
    assert result.outputs["seen"] == ["x"]
    assert result.outputs["live"] == ["x"]


def test_outputs_returned_by_ctx_are_fresh_copies(store: KVStore) -> None:
    """Mutating an output a run callable read through ctx changes nothing stored or read later."""

    def mutate(ctx: Context) -> list[int]:
        value = ctx.output("items")
        value.append(99)
        return value

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Task(id="items", output=list[int], value=[1, 2]),
            Task(id="mutated", output=list[int], run=lambda: mutate(ctx)),
            Task(id="again", output=list[int], run=lambda: ctx.output("items")),
            Task(id="needs", output=list[int], run=lambda items: items, needs={"items": "items"}),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert result.outputs == {
        "items": [1, 2],
        "mutated": [1, 2, 99],
        "again": [1, 2],
        "needs": [1, 2],
    }


def test_output_decodes_into_the_declared_type_or_a_given_one(store: KVStore) -> None:
    """ctx.output returns the node's declared type, or the type passed as `type`."""
    seen: dict[str, Any] = {}

    def read(ctx: Context) -> int:
        seen["declared"] = ctx.output("pair")
        seen["as_dict"] = ctx.output("pair", dict)
        return 0

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Task(id="pair", output=Pair, value=Pair(1, 2)),
            Task(id="reader", output=int, run=lambda: read(ctx)),
            name="flow",
        )

    assert run(flow, store).status == "finished"
    assert seen == {"declared": Pair(1, 2), "as_dict": {"left": 1, "right": 2}}


def test_output_of_a_missing_node_raises_missing_output_error(store: KVStore) -> None:
    """ctx.output of a node with no output raises MissingOutputError naming it; output_maybe
    returns None instead."""
    seen = Recorder()

    def reader(ctx: Context) -> int:
        seen.add(ctx.output_maybe("later"))
        return ctx.output("later")  # type: ignore[no-any-return]

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Task(id="reader", output=int, run=lambda: reader(ctx)),
            Task(id="later", output=int, value=1),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.type == "MissingOutputError"
    assert result.error.node_id == "reader"
    assert "`later`" in result.error.message
    assert seen.items == [None]


def test_output_of_a_missing_node_while_rendering_fails_the_run(store: KVStore) -> None:
    """A build function calling ctx.output on a node without output fails the run with that
    MissingOutputError, which names the node and the fix."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Task(id="a", output=int, value=ctx.output("a")),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.type == "MissingOutputError"
    assert "`a`" in result.error.message
    assert "output_maybe" in result.error.message
    assert states(store) == {}


def test_a_build_function_that_raises_fails_the_run_with_a_build_error(store: KVStore) -> None:
    """A build function raising on a later render fails the run with a BuildError."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        if ctx.output_maybe("a") is not None:
            raise RuntimeError("bad render")
        return Workflow(Task(id="a", output=int, value=1), name="flow")

    result = run(flow, store)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.type == "BuildError"
    assert "RuntimeError: bad render" in result.error.message
    assert outputs(store) == {("a", ()): 1}


def test_render_time_reads_re_render_when_the_output_arrives(store: KVStore) -> None:
    """A payload computed from an output at render time is recomputed once that output is
    committed, before the reading task starts."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        base = ctx.output_maybe("base")
        return Workflow(
            Task(id="base", output=int, run=lambda: 20),
            Task(id="derived", output=int, value=-1 if base is None else base + 1),
            name="flow",
        )

    result = run(flow, store)
    assert result.outputs == {"base": 20, "derived": 21}


def test_live_reads_see_outputs_committed_after_the_render(store: KVStore) -> None:
    """A run callable reading ctx without needs sees what is committed when it runs."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Sequence(
                Task(id="a", output=int, run=lambda: 3),
                Task(id="b", output=int, run=lambda: ctx.output("a") * 2),
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.outputs == {"a": 3, "b": 6}


def test_latest_and_outputs_outside_loops(store: KVStore) -> None:
    """Outside loops ctx.latest is the single output and ctx.outputs a one-item list; for a node
    with no output they give None and an empty list."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Task(id="a", output=int, value=5),
            Task(
                id="read",
                output=list[Any],
                run=lambda: [
                    ctx.latest("a"),
                    ctx.outputs("a"),
                    ctx.latest("none"),
                    ctx.outputs("none"),
                ],
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.outputs["read"] == [5, [5], None, []]


def test_iterations_are_empty_and_iteration_is_an_error_outside_loops(store: KVStore) -> None:
    """Outside any loop ctx.iterations is empty and ctx.iteration raises ContextError."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Task(id="its", output=dict[str, int], value=dict(ctx.iterations)),
            Task(id="it", output=int, run=lambda: ctx.iteration),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.type == "ContextError"
    assert result.error.node_id == "it"
    assert "no Loop is mounted" in result.error.message
    assert outputs(store)[("its", ())] == {}


def test_iterations_name_every_mounted_loop_side_by_side(store: KVStore) -> None:
    """Two loops in a Parallel both appear in ctx.iterations, each at its own iteration."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Parallel(
                Loop(Task(id="a", output=int, value=0), id="A", until=False, max_iterations=2),
                Loop(Task(id="b", output=int, value=0), id="B", until=False, max_iterations=3),
            ),
            Task(id="its", output=dict[str, int], run=lambda: dict(ctx.iterations)),
            name="flow",
        )

    result = run(flow, store)
    assert result.status == "finished"
    assert result.outputs["its"] == {"A": 1, "B": 2}


def test_run_outputs_report_the_latest_iteration_of_loop_nodes(store: KVStore) -> None:
    """RunResult.outputs maps each node id to its output, a loop-body node to its latest."""

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(
            Task(id="a", output=str, value="x"),
            Loop(
                Task(id="b", output=int, run=lambda: len(ctx.outputs("b"))),
                id="L",
                until=False,
                max_iterations=3,
            ),
            name="flow",
        )

    result = run(flow, store)
    assert result.outputs == {"a": "x", "b": 2}
    assert outputs(store) == {("a", ()): "x", ("b", (0,)): 0, ("b", (1,)): 1, ("b", (2,)): 2}


def test_input_that_does_not_match_is_refused_before_the_run_starts(store: KVStore) -> None:
    """run() with input that does not match the input type raises InputError naming the field
    path, and creates no run."""

    @smithers.smithers(input=Params)
    def flow(ctx: Context) -> Workflow:
        return Workflow(Task(id="a", output=int, value=1), name="flow")

    with pytest.raises(InputError, match=r"\$\.version"):
        smithers.run(flow, {"version": 3}, store=store, run_id="r")
    assert store.get_run("r") is None
