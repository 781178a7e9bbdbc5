"""`render()`: pure rendering, input validation and rendering against given outputs."""

from __future__ import annotations

import dataclasses
from typing import Any, TypedDict

import msgspec
import pytest

from smithers import (
    Approval,
    ApprovalDecision,
    ApprovalRequest,
    Branch,
    Loop,
    Parallel,
    Sequence,
    Signal,
    Task,
    Workflow,
    component,
    render,
    smithers,
)
from smithers.components import Element
from smithers.errors import InputError


class Build(msgspec.Struct):
    """A task output."""

    version: str
    plan: str


class DeployInput(msgspec.Struct):
    """An input with one required and one defaulted field."""

    version: str
    env: str = "prod"


class Defaults(msgspec.Struct):
    """An input whose fields all have defaults."""

    env: str = "prod"
    replicas: int = 1


class Nested(msgspec.Struct):
    """An input with a nested object."""

    target: DeployInput


@dataclasses.dataclass
class DataInput:
    """A dataclass input."""

    count: int


class DictInput(TypedDict):
    """A TypedDict input."""

    name: str


def explode(*args: Any, **kwargs: Any) -> Any:
    """A callable that must never be called while rendering."""
    raise AssertionError("called while rendering")


# -- purity ------------------------------------------------------------------------------------


def test_render_never_calls_run_request_or_until() -> None:
    """render() calls no run callable, no request function and no until callable."""
    calls: list[str] = []

    def run(build: Build) -> int:
        calls.append("run")
        raise AssertionError("run called")

    def request(build: Build) -> ApprovalRequest:
        calls.append("request")
        raise AssertionError("request called")

    def until(ctx: Any) -> bool:
        calls.append("until")
        raise AssertionError("until called")

    async def arun() -> int:
        calls.append("arun")
        raise AssertionError("async run called")

    @smithers
    def wf(ctx: Any) -> Element:
        return Workflow(
            Task(id="build", output=Build, run=explode),
            Approval(id="gate", needs={"build": "build"}, request=request),
            Loop(
                Task(id="body", output=int, run=run, needs={"build": "build"}),
                Task(id="async-body", output=int, run=arun),
                id="L",
                until=until,
            ),
            Parallel(Task(id="p", output=int, run=explode)),
            name="w",
        )

    built = Build(version="1", plan="p")
    graph = render(wf)
    again = render(wf, outputs={"build": built, "gate": ApprovalDecision(approved=True)})
    assert [n.id for n in graph] == ["build", "gate", "body", "async-body", "p"]
    assert graph == again
    assert calls == []


def test_render_calls_the_build_function_with_a_context() -> None:
    """render() calls the build function, and components, with the given run id."""
    seen: list[str] = []

    @component
    def Part(*, name: str) -> Element:
        seen.append(f"component {name}")
        return Task(id=name, output=int, value=1)

    @smithers
    def wf(ctx: Any) -> Element:
        seen.append(f"build {ctx.run_id}")
        return Workflow(Part(name="a"), name="w")

    render(wf, run_id="r-42")
    assert seen[:2] == ["build r-42", "component a"]


def test_render_refuses_what_smithers_did_not_make() -> None:
    """render() takes a WorkflowDefinition, not a bare function."""
    with pytest.raises(TypeError, match="render\\(\\) takes what @smithers returns, got function"):
        render(lambda ctx: Workflow(name="w"))  # type: ignore[arg-type]


def test_render_is_deterministic() -> None:
    """Rendering the same definition twice gives equal graphs with the same hash."""

    @smithers
    def wf(ctx: Any) -> Element:
        return Workflow(
            Sequence(Task(id="a", output=Build, run=lambda: None), Signal(id="s", output=int)),
            Branch(if_=ctx.output_maybe("s") is None, then=Task(id="b", output=int, value=1)),
            name="w",
        )

    first, second = render(wf), render(wf)
    assert first == second
    assert first.hash == second.hash


# -- input -------------------------------------------------------------------------------------


def recording(input_type: Any) -> tuple[Any, list[Any]]:
    """A definition with ``input_type`` that records every ``ctx.input`` it reads."""
    seen: list[Any] = []

    def build(ctx: Any) -> Element:
        seen.append(ctx.input)
        return Workflow(Task(id="a", output=int, value=1), name="w")

    return smithers(build, input=input_type), seen


def test_input_is_validated_into_the_input_type() -> None:
    """A valid input reaches ctx.input as an instance of the input type, defaults filled."""
    wf, seen = recording(DeployInput)
    render(wf, {"version": "1.2"})
    assert seen[-1] == DeployInput(version="1.2", env="prod")


@pytest.mark.parametrize(
    ("input_type", "value", "expected"),
    [
        (DataInput, {"count": 3}, DataInput(count=3)),
        (DictInput, {"name": "n"}, {"name": "n"}),
        (int, 5, 5),
        (list[int], [1, 2], [1, 2]),
    ],
)
def test_input_types_of_every_family(input_type: Any, value: Any, expected: Any) -> None:
    """Dataclasses, TypedDicts and builtins validate inputs like Structs do."""
    wf, seen = recording(input_type)
    render(wf, value)
    assert seen[-1] == expected
    assert type(seen[-1]) is type(expected)


def test_bad_input_names_the_field_path() -> None:
    """A mismatching input is an InputError naming the workflow, type and field path."""
    wf, _ = recording(DeployInput)
    with pytest.raises(
        InputError,
        match=r"^Input for `build` does not match `DeployInput`: Expected `str`, got `int` - at "
        r"`\$\.version`; pass input matching `DeployInput`\.$",
    ):
        render(wf, {"version": 1})


def test_bad_nested_input_names_the_nested_path() -> None:
    """A nested mismatch names the full field path."""
    wf, _ = recording(Nested)
    with pytest.raises(InputError, match=r"got `int` - at `\$\.target\.version`"):
        render(wf, {"target": {"version": 3}})


def test_missing_required_input_field_is_named() -> None:
    """A missing required field is named in the InputError."""
    wf, _ = recording(DeployInput)
    with pytest.raises(InputError, match=r"Object missing required field `version`"):
        render(wf, {"env": "dev"})


def test_no_input_validates_as_empty_object_when_all_fields_default() -> None:
    """Without input, a Struct whose fields all have defaults is built from {}."""
    wf, seen = recording(Defaults)
    render(wf)
    assert seen[-1] == Defaults(env="prod", replicas=1)


def test_no_input_is_refused_when_a_field_is_required() -> None:
    """Without input, a Struct with a required field is an InputError with the fix."""
    wf, _ = recording(DeployInput)
    with pytest.raises(
        InputError,
        match=r"^Workflow `build` needs input of type `DeployInput` \(.*\); pass --input with a "
        r"JSON object\.$",
    ):
        render(wf)


def test_untyped_input_is_passed_through() -> None:
    """Without an input type, ctx.input is the given JSON value (None when absent)."""
    wf, seen = recording(None)
    render(wf, {"a": [1, 2]})
    render(wf)
    assert seen[0] == {"a": [1, 2]}
    assert seen[-1] is None


def test_untyped_input_must_be_storable() -> None:
    """An input that cannot be encoded is an InputError."""
    wf, _ = recording(None)
    with pytest.raises(InputError, match=r"^Input for `build` cannot be stored \(.*\); pass JSON"):
        render(wf, {"a": object()})


def test_input_error_is_a_value_error() -> None:
    """InputError subclasses ValueError."""
    wf, _ = recording(int)
    with pytest.raises(ValueError, match="does not match `int`"):
        render(wf, "x")


# -- outputs -----------------------------------------------------------------------------------


def deploy_definition() -> Any:
    """The DESIGN §3 example: `record` mounts once the gate has a decision."""

    @smithers(input=DeployInput)
    def deploy(ctx: Any) -> Element:
        decision = ctx.output_maybe("approve-deploy")
        return Workflow(
            Sequence(
                Task(
                    id="build",
                    output=Build,
                    run=lambda: Build(ctx.input.version, "roll out"),
                ),
                Approval(
                    id="approve-deploy",
                    needs={"build": "build"},
                    request=lambda build: ApprovalRequest(title=f"Deploy {build.version}?"),
                    on_deny="continue",
                ),
                decision
                and Task(
                    id="record",
                    output=str,
                    value="approved" if decision.approved else "rejected",
                ),
            ),
            name="deploy",
        )

    return deploy


def test_render_without_outputs_leaves_conditional_nodes_out() -> None:
    """Before the gate has a decision, `record` is not mounted."""
    graph = render(deploy_definition(), {"version": "1"})
    assert [n.id for n in graph] == ["build", "approve-deploy"]


@pytest.mark.parametrize(("approved", "value"), [(True, "approved"), (False, "rejected")])
def test_render_against_given_outputs_mounts_what_they_enable(approved: bool, value: str) -> None:
    """Given a decision, the record task mounts with a value derived from it."""
    graph = render(
        deploy_definition(),
        {"version": "1"},
        outputs={"approve-deploy": ApprovalDecision(approved=approved)},
    )
    assert [n.id for n in graph] == ["build", "approve-deploy", "record"]
    assert graph.node("record").path == "Workflow(deploy)/Sequence[0]/Task(record)"
    assert graph.elements["record"].value == value  # type: ignore[attr-defined]


def test_plain_outputs_are_decoded_into_the_declared_type() -> None:
    """A decision given as plain data reaches the build as an ApprovalDecision."""
    graph = render(
        deploy_definition(),
        {"version": "1"},
        outputs={"approve-deploy": {"approved": True}},
    )
    assert graph.elements["record"].value == "approved"  # type: ignore[attr-defined]


def test_outputs_keyed_by_iteration() -> None:
    """Outputs may be keyed (node_id, iteration); int and tuple iterations both work."""
    seen: dict[str, Any] = {}

    @smithers
    def wf(ctx: Any) -> Element:
        seen["all"] = ctx.outputs("step")
        seen["latest"] = ctx.latest("step")
        seen["first"] = ctx.output("step", iteration=0)
        seen["second"] = ctx.output("step", iteration=(1,))
        return Workflow(Loop(Task(id="step", output=int, value=0), id="L", until=False), name="w")

    render(wf, outputs={("step", 0): 10, ("step", (1,)): 11})
    assert seen == {"all": [10, 11], "latest": 11, "first": 10, "second": 11}


def test_given_outputs_are_not_mutated_by_the_build() -> None:
    """The build gets copies: mutating them changes neither the caller's dict nor later reads."""
    given = {"a": {"items": [1]}}
    reads: list[Any] = []

    @smithers
    def wf(ctx: Any) -> Element:
        first = ctx.output("a")
        first["items"].append(2)
        reads.append(first)
        reads.append(ctx.output("a"))
        return Workflow(Task(id="a", output=dict, value={}), name="w")

    render(wf, outputs=given)
    assert given == {"a": {"items": [1]}}
    assert reads[0] == {"items": [1, 2]}
    assert reads[1] == {"items": [1]}
