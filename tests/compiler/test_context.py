"""The Context API a build function reads: run id, input, iterations and outputs."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from smithers import Context, Loop, Sequence, Task, Workflow, render, smithers
from smithers.compiler import MappingSource
from smithers.components import Element
from smithers.errors import ContextError, MissingOutputError


class Build(msgspec.Struct):
    """A task output."""

    version: str


class Config(msgspec.Struct):
    """A mutable input type."""

    tags: list[str]


def context(
    outputs: dict[Any, Any] | None = None,
    iterations: dict[str, int] | None = None,
    input: Any = None,
) -> Context:
    """A Context over plain outputs and loop iterations (no loops unless given)."""
    known = iterations if iterations is not None else {}
    return Context(run_id="r1", source=MappingSource(outputs, known), input=input)


def loops_workflow(*loop_ids: str) -> Workflow:
    """A workflow mounting one loop per id, each with one task."""
    return Workflow(
        [Loop(Task(id=f"t-{i}", output=int, value=0), id=i, until=False) for i in loop_ids],
        name="w",
    )


# -- run_id and input --------------------------------------------------------------------------


def test_run_id_defaults_to_preview() -> None:
    """ctx.run_id is "preview" when rendering without a run, else the given id."""
    seen: list[str] = []

    @smithers
    def wf(ctx: Any) -> Element:
        seen.append(ctx.run_id)
        return Workflow(name="w")

    render(wf)
    render(wf, run_id="run-7")
    assert (seen[0], seen[-1]) == ("preview", "run-7")
    assert repr(context()) == "Context(run_id='r1')"


def test_input_is_a_fresh_copy_on_every_read() -> None:
    """Mutating ctx.input changes neither a later read nor the caller's value."""
    given = {"tags": ["a"]}
    reads: list[Config] = []

    @smithers(input=Config)
    def wf(ctx: Any) -> Element:
        first = ctx.input
        first.tags.append("mutated")
        reads.extend([first, ctx.input])
        return Workflow(name="w")

    render(wf, given)
    assert reads[0].tags == ["a", "mutated"]
    assert reads[1] == Config(tags=["a"])
    assert reads[0] is not reads[1]
    assert given == {"tags": ["a"]}


def test_plain_context_input_is_copied() -> None:
    """A Context built with a plain input hands out deep copies."""
    ctx = context(input={"k": [1]})
    ctx.input["k"].append(2)
    assert ctx.input == {"k": [1]}


# -- iterations --------------------------------------------------------------------------------


def test_iterations_name_every_mounted_loop() -> None:
    """ctx.iterations maps each mounted loop id to its iteration (0 in a render)."""
    seen: list[dict[str, int]] = []

    @smithers
    def wf(ctx: Any) -> Element:
        seen.append(dict(ctx.iterations))
        return loops_workflow("A", "B")

    render(wf)
    assert seen[-1] == {"A": 0, "B": 0}


def test_iterations_are_read_only() -> None:
    """ctx.iterations cannot be changed by the build function."""
    ctx = context(iterations={"L": 1})
    with pytest.raises(TypeError, match="does not support item assignment"):
        ctx.iterations["L"] = 2  # type: ignore[index]


def test_iteration_of_the_only_loop() -> None:
    """ctx.iteration is the iteration of the only mounted loop."""
    assert context(iterations={"L": 3}).iteration == 3


def test_iteration_without_a_loop_is_a_context_error() -> None:
    """ctx.iteration with no loop mounted is a ContextError saying so."""
    with pytest.raises(
        ContextError,
        match=r"^ctx\.iteration was read but no Loop is mounted; read it only in workflows that "
        r"mount a Loop\.$",
    ):
        _ = context().iteration


def test_iteration_with_several_loops_names_them() -> None:
    """ctx.iteration with two loops is a ContextError naming both and the fix."""
    with pytest.raises(
        ContextError,
        match=r"^ctx\.iteration is ambiguous: loops `A`, `B` are mounted; use "
        r"ctx\.iterations\['A'\] to name one\.$",
    ):
        _ = context(iterations={"B": 0, "A": 1}).iteration


def test_render_gives_the_only_loop_iteration_zero() -> None:
    """A build reading ctx.iteration with one loop mounted renders it at 0."""
    seen: list[int] = []

    @smithers
    def wf(ctx: Any) -> Element:
        seen.append(ctx.iteration)
        return loops_workflow("L")

    render(wf)
    assert seen[-1] == 0


def test_render_without_a_loop_raises_context_error_for_iteration() -> None:
    """ctx.iteration in a build without loops surfaces as the ContextError itself."""

    @smithers
    def wf(ctx: Any) -> Element:
        _ = ctx.iteration
        return Workflow(name="w")

    with pytest.raises(ContextError, match=r"no Loop is mounted"):
        render(wf)


# -- outputs -----------------------------------------------------------------------------------


def test_output_returns_the_value() -> None:
    """ctx.output returns the given output of a node."""
    assert context({"a": Build(version="1")}).output("a") == Build(version="1")


def test_output_with_a_type_decodes_into_it() -> None:
    """ctx.output(node_id, T) returns the output validated into T, even from plain data."""
    ctx = context({"b": {"version": "1.2"}})
    assert ctx.output("b", Build) == Build(version="1.2")
    assert ctx.output_maybe("b", Build) == Build(version="1.2")
    assert ctx.latest("b", Build) == Build(version="1.2")
    assert ctx.outputs("b", Build) == [Build(version="1.2")]


def test_output_of_none_is_an_output() -> None:
    """A node whose output is None has an output: output() returns None without raising."""
    ctx = context({"a": None})
    assert ctx.output("a") is None
    assert ctx.outputs("a") == [None]


def test_missing_output_raises_missing_output_error() -> None:
    """ctx.output for a node with no output raises MissingOutputError with the fix."""
    with pytest.raises(
        MissingOutputError,
        match=r"^Node `a` has no output yet; use ctx\.output_maybe\('a'\) to render before it "
        r"finishes\.$",
    ) as info:
        context().output("a")
    assert isinstance(info.value, ContextError)
    assert isinstance(info.value, LookupError)


def test_missing_output_at_an_iteration_names_it() -> None:
    """A missing output at a given iteration names that iteration."""
    with pytest.raises(
        MissingOutputError, match=r"^Node `a` has no output at iteration \(2,\) yet"
    ):
        context({("a", 0): 1}).output("a", iteration=2)


def test_render_surfaces_missing_output_error() -> None:
    """ctx.output on a missing node inside a build surfaces as MissingOutputError."""

    @smithers
    def wf(ctx: Any) -> Element:
        ctx.output("build")
        return Workflow(Task(id="build", output=int, value=1), name="w")

    with pytest.raises(MissingOutputError, match="Node `build` has no output yet"):
        render(wf)


def test_output_maybe_latest_and_outputs_when_absent() -> None:
    """Absent outputs: output_maybe and latest give None, outputs gives []."""
    ctx = context()
    assert ctx.output_maybe("a") is None
    assert ctx.latest("a") is None
    assert ctx.outputs("a") == []


def test_iteration_lookup_rules_over_given_outputs() -> None:
    """outputs() lists iterations in order; latest() is the highest; iteration picks one."""
    ctx = context({("a", 2): "c", ("a", 0): "a", ("a", (1,)): "b"})
    assert ctx.outputs("a") == ["a", "b", "c"]
    assert ctx.latest("a") == "c"
    assert ctx.output("a") == "c"
    assert ctx.output("a", iteration=1) == "b"
    assert ctx.output("a", iteration=[0]) == "a"
    assert ctx.output_maybe("a", iteration=5) is None


def test_node_outside_loops_is_read_at_iteration_unit() -> None:
    """A node keyed by plain id (iteration ()) is what output() returns."""
    ctx = context({"a": 1, ("a", 3): 2})
    assert ctx.output("a") == 1
    assert ctx.output("a", iteration=()) == 1


def test_returned_outputs_are_copies() -> None:
    """Mutating what output/output_maybe/latest/outputs return changes nothing stored."""
    ctx = context({"a": {"k": [1]}})
    ctx.output("a")["k"].append(2)
    ctx.output_maybe("a")["k"].append(3)
    ctx.latest("a")["k"].append(4)
    ctx.outputs("a")[0]["k"].append(5)
    assert ctx.output("a") == {"k": [1]}


def test_output_ids_must_be_strings() -> None:
    """Reading an output by a non-string id is a TypeError."""
    with pytest.raises(TypeError, match="node ids are strings, got 5"):
        context().output(5)  # type: ignore[arg-type]


def test_reads_are_recorded_until_sealed() -> None:
    """Reads made while rendering are dependencies; reads after seal() are not."""
    ctx = context({"a": 1})
    ctx.output_maybe("a")
    ctx.latest("b")
    ctx.seal()
    ctx.outputs("c")
    assert ctx.reads == frozenset({"a", "b"})


def test_rendering_reads_outputs_from_inside_a_sequence() -> None:
    """A build may branch on outputs it reads, mounting different nodes."""

    @smithers
    def wf(ctx: Any) -> Element:
        done = ctx.output_maybe("first")
        return Workflow(
            Sequence(
                Task(id="first", output=int, value=1),
                done is not None and Task(id=f"second-{done}", output=int, value=done),
            ),
            name="w",
        )

    assert [n.id for n in render(wf)] == ["first"]
    assert [n.id for n in render(wf, outputs={"first": 7})] == ["first", "second-7"]
