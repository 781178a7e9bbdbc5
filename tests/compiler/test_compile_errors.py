"""CompileError and BuildError at render: each names the path and the fix."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from smithers import (
    Approval,
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
from smithers.compiler import compile_tree
from smithers.components import Element
from smithers.errors import BuildError, CompileError, DefinitionError, SmithersError


@dataclasses.dataclass
class Left:
    """One dataclass of a union msgspec cannot validate."""

    x: int


@dataclasses.dataclass
class Right:
    """The other dataclass of that union."""

    y: int


def task(node_id: str, **props: Any) -> Task:
    """A value task with an int output."""
    return Task(id=node_id, output=int, value=1, **props)


def skip_gate(node_id: str = "g") -> Approval:
    """A gate whose deny policy skips its later siblings."""
    return Approval(id=node_id, request=ApprovalRequest(title="ok?"), on_deny="skip")


def cycle_message(chain: list[str], path: str) -> str:
    """The regex for a cycle error naming ``chain`` (closed) at ``path``."""
    hops = " -> ".join(f"`{v}`" for v in chain)
    return re.escape(
        f"Cycle through needs and Sequence order: {hops} at `{path}`; remove one of these needs "
        "or reorder the Sequence."
    )


# -- duplicate ids -----------------------------------------------------------------------------


def test_duplicate_node_ids_name_both_paths() -> None:
    """Two nodes with one id are refused, naming the later path, the earlier one and the fix."""
    tree = Workflow(
        Sequence(task("approve-publish")),
        Parallel(Approval(id="approve-publish", request=ApprovalRequest(title="t"))),
        name="publish",
    )
    with pytest.raises(
        CompileError,
        match=re.escape(
            "Duplicate node id `approve-publish` at "
            "`Workflow(publish)/Parallel[1]/Approval(approve-publish)`; "
            "an element at `Workflow(publish)/Sequence[0]/Task(approve-publish)` has it too; "
            "ids must be unique within a workflow."
        ),
    ):
        compile_tree(tree)


def test_duplicate_between_a_node_and_a_loop() -> None:
    """A node may not reuse a loop's id, inside or after the loop."""
    with pytest.raises(
        CompileError,
        match=re.escape(
            "Duplicate node id `L` at `Workflow(w)/Loop(L)/Task(L)`; an element at "
            "`Workflow(w)/Loop(L)` has it"
        ),
    ):
        compile_tree(Workflow(Loop(task("L"), id="L", until=False), name="w"))
    with pytest.raises(
        CompileError,
        match=re.escape(
            "Duplicate node id `L` at `Workflow(w)/Loop(L)`; an element at `Workflow(w)/Task(L)`"
        ),
    ):
        compile_tree(Workflow(task("L"), Loop(task("b"), id="L", until=False), name="w"))


def test_duplicate_loop_ids() -> None:
    """Two loops with one id are refused."""
    with pytest.raises(
        CompileError,
        match=re.escape(
            "Duplicate node id `L` at `Workflow(w)/Loop(L)/Loop(L)`; an element at "
            "`Workflow(w)/Loop(L)` has it"
        ),
    ):
        compile_tree(Workflow(Loop(Loop(id="L", until=False), id="L", until=False), name="w"))


def test_duplicate_ids_across_components() -> None:
    """Two instances of a component that hard-code an id collide, naming both components."""

    @component
    def Gate() -> Element:
        return Approval(id="gate", request=ApprovalRequest(title="t"))

    with pytest.raises(
        CompileError,
        match=re.escape(
            "Duplicate node id `gate` at `Workflow(w)/Gate[1]/Approval(gate)`; "
            "an element at `Workflow(w)/Gate[0]/Approval(gate)` has it too"
        ),
    ):
        compile_tree(Workflow(Gate(), Gate(), name="w"))


def test_compile_error_is_a_value_error() -> None:
    """CompileError subclasses SmithersError and ValueError."""
    with pytest.raises(ValueError, match="Duplicate node id `a`") as info:
        compile_tree(Workflow(task("a"), task("a"), name="w"))
    assert isinstance(info.value, SmithersError)


# -- cycles ------------------------------------------------------------------------------------


def test_needs_on_a_later_sibling_is_a_cycle() -> None:
    """a needs b but b comes after a in the Sequence: a cycle naming both."""
    with pytest.raises(CompileError, match=cycle_message(["a", "b", "a"], "Workflow(w)/Task(a)")):
        compile_tree(Workflow(task("a", needs={"x": "b"}), task("b"), name="w"))


def test_needs_on_itself_is_a_cycle() -> None:
    """A node that needs itself is a one-node cycle."""
    with pytest.raises(CompileError, match=cycle_message(["a", "a"], "Workflow(w)/Task(a)")):
        compile_tree(Workflow(task("a", needs={"x": "a"}), name="w"))


def test_needs_cycle_inside_a_parallel() -> None:
    """Two parallel siblings that need each other form a cycle; one-way is fine."""
    fine = compile_tree(Workflow(Parallel(task("a", needs={"x": "b"}), task("b")), name="w"))
    assert [(e.source, e.target, e.kind) for e in fine.edges] == [("b", "a", "needs")]
    with pytest.raises(CompileError, match=r"Cycle through needs and Sequence order: `a` -> `b`"):
        compile_tree(
            Workflow(Parallel(task("a", needs={"x": "b"}), task("b", needs={"y": "a"})), name="w")
        )


def test_cycle_through_a_loop_body_from_after_the_loop() -> None:
    """A body node needing a node after the loop, which needs the body, is a cycle via the loop."""
    tree = Workflow(
        Sequence(
            task("a"),
            Loop(task("b"), task("c", needs={"x": "d"}), id="L", until=False),
            task("d", needs={"y": "b"}),
        ),
        name="w",
    )
    with pytest.raises(
        CompileError,
        match=cycle_message(["L", "d", "c", "L"], "Workflow(w)/Sequence[0]/Loop(L)"),
    ):
        compile_tree(tree)


def test_cycle_through_nested_loops() -> None:
    """An inner-loop node needing a node after the outer loop cycles via both loops."""
    tree = Workflow(
        Loop(Loop(task("a", needs={"x": "b"}), id="in", until=False), id="out", until=False),
        task("b"),
        name="w",
    )
    with pytest.raises(
        CompileError, match=cycle_message(["out", "b", "a", "in", "out"], "Workflow(w)/Loop(out)")
    ):
        compile_tree(tree)


def test_needs_into_a_nested_loop_from_before_it_is_a_cycle() -> None:
    """A node before an outer loop cannot need a node of its inner loop."""
    tree = Workflow(
        task("b", needs={"x": "a"}),
        Loop(Loop(task("a"), id="in", until=False), id="out", until=False),
        name="w",
    )
    with pytest.raises(CompileError, match=cycle_message(["b", "out", "b"], "Workflow(w)/Task(b)")):
        compile_tree(tree)


def test_needs_between_sibling_inner_loops_is_fine() -> None:
    """A node of one inner loop may need a node of an earlier inner loop of the same outer."""
    graph = compile_tree(
        Workflow(
            Loop(
                Loop(task("a"), id="one", until=False),
                Loop(task("b", needs={"x": "a"}), id="two", until=False),
                id="out",
                until=False,
            ),
            name="w",
        )
    )
    assert {(e.source, e.target, e.kind) for e in graph.edges} == {
        ("one", "two", "loop"),
        ("a", "b", "needs"),
    }


def test_needs_into_a_loop_from_before_it_is_a_cycle() -> None:
    """A node before a loop cannot need a node in its body: the loop waits for that node."""
    with pytest.raises(CompileError, match=cycle_message(["x", "L", "x"], "Workflow(w)/Task(x)")):
        compile_tree(
            Workflow(task("x", needs={"y": "b"}), Loop(task("b"), id="L", until=False), name="w")
        )


def test_needs_into_a_loop_from_after_it_is_fine() -> None:
    """A node after a loop may need a body node: it waits for the whole loop."""
    graph = compile_tree(
        Workflow(Loop(task("b"), id="L", until=False), task("after", needs={"y": "b"}), name="w")
    )
    assert {(e.source, e.target, e.kind) for e in graph.edges} == {
        ("L", "after", "sequence"),
        ("b", "after", "needs"),
    }


def test_needs_into_a_sibling_loop_body_from_a_parallel_branch_is_fine() -> None:
    """A node parallel to a loop may need its body: no order path leads back to it."""
    graph = compile_tree(
        Workflow(
            Parallel(Loop(task("b"), id="L", until=False), task("p", needs={"y": "b"})), name="w"
        )
    )
    assert ("b", "p", "needs") in {(e.source, e.target, e.kind) for e in graph.edges}


def test_needs_naming_a_loop_is_refused() -> None:
    """needs must name a node inside a loop, not the loop itself."""
    with pytest.raises(
        CompileError,
        match=re.escape(
            "Task `c` at `Workflow(w)/Task(c)` has needs={'x': 'L'} naming a Loop; needs must "
            "name a task, approval or signal inside it."
        ),
    ):
        compile_tree(
            Workflow(Loop(task("b"), id="L", until=False), task("c", needs={"x": "L"}), name="w")
        )


# -- on_deny="skip" ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wrap", "parent"),
    [
        (lambda g: Parallel(g), "Parallel"),
        (lambda g: Sequence(Parallel(task("a"), g)), "Parallel"),
        (lambda g: Branch(if_=True, then=g), "Branch"),
        (lambda g: Branch(if_=False, then=None, else_=g), "Branch"),
    ],
)
def test_skip_gate_under_parallel_or_branch_is_refused(wrap: Any, parent: str) -> None:
    """on_deny='skip' on a gate whose parent is a Parallel or a Branch side is refused."""
    with pytest.raises(
        CompileError,
        match=rf"^Approval `g` at `Workflow\(w\)/.*Approval\(g\)` has on_deny='skip' but its "
        rf"parent is a {parent}; 'skip' skips later siblings, so wrap the gate in a Sequence or "
        r"use on_deny='continue'\.$",
    ):
        compile_tree(Workflow(wrap(skip_gate()), name="w"))


def test_skip_gate_through_a_component_inside_a_parallel_is_refused() -> None:
    """A user component is transparent: its gate's structural parent is the Parallel."""

    @component
    def Gate() -> Element:
        return skip_gate()

    with pytest.raises(CompileError, match=r"Approval `g` at `Workflow\(w\)/Parallel\[0\]/Gate"):
        compile_tree(Workflow(Parallel(Gate()), name="w"))


@pytest.mark.parametrize(
    "wrap",
    [
        lambda g: g,
        lambda g: Sequence(task("a"), g, task("b")),
        lambda g: Loop(g, id="L", until=False),
        lambda g: Parallel(Sequence(g)),
        lambda g: Branch(if_=True, then=Sequence(g)),
    ],
)
def test_skip_gate_under_sequence_workflow_or_loop_is_allowed(wrap: Any) -> None:
    """on_deny='skip' is fine directly under a Workflow, Sequence or Loop body."""
    graph = compile_tree(Workflow(wrap(skip_gate()), name="w"))
    assert graph.node("g").props["on_deny"] == "skip"


def test_skip_gate_through_a_component_inside_a_sequence_is_allowed() -> None:
    """A component inside a Sequence keeps the Sequence as its gate's parent."""

    @component
    def Gate() -> Element:
        return skip_gate()

    graph = compile_tree(Workflow(Sequence(task("a"), Gate()), name="w"))
    assert graph.node("g").path == "Workflow(w)/Sequence[0]/Gate[1]/Approval(g)"


# -- root and nesting --------------------------------------------------------------------------


def test_nested_workflow_is_refused() -> None:
    """A Workflow below the root is refused with the fix."""
    with pytest.raises(
        CompileError,
        match=re.escape(
            "Workflow(name='inner') at `Workflow(w)/Sequence[0]/Workflow(inner)` is nested; "
            "Workflow can only be the root, so use Sequence(...) here."
        ),
    ):
        compile_tree(Workflow(Sequence(Workflow(name="inner")), name="w"))


@pytest.mark.parametrize(
    ("root", "got"),
    [(Sequence(), "Sequence"), (task("a"), "Task(id='a')"), (5, "int"), ("w", "str")],
)
def test_root_must_be_a_workflow(root: Any, got: str) -> None:
    """A root that is not a Workflow is refused, naming what was returned."""
    with pytest.raises(
        CompileError,
        match=re.escape(f"The build function returned {got}; it must return Workflow(")
        + re.escape("..., name=...) at the root."),
    ):
        compile_tree(root)


def test_build_returning_none_is_refused() -> None:
    """A build function that returns None is a CompileError naming the workflow."""

    @smithers
    def empty(ctx: Any) -> Any:
        return None

    with pytest.raises(CompileError, match=r"^The build function of `empty` returned None"):
        render(empty)


def test_component_returning_a_non_element_is_refused() -> None:
    """A component must return one element."""

    @component
    def Broken() -> Any:
        return [task("a")]

    with pytest.raises(
        CompileError,
        match=re.escape(
            "Component `Broken` at `Workflow(w)/Sequence[0]/Broken[0]` returned `list`"
        ),
    ):
        compile_tree(Workflow(Sequence(Broken()), name="w"))


# -- output types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda t: Task(id="x", output=t, value=1),
        lambda t: Signal(id="x", output=t),
    ],
)
def test_output_type_msgspec_cannot_validate_is_refused(make: Any) -> None:
    """A union of two dataclasses cannot be validated, so it is refused at render."""
    with pytest.raises(
        CompileError,
        match=r"^(Task|Signal)\(id='x'\) at `Workflow\(w\)/Sequence\[0\]/(Task|Signal)\(x\)` "
        r"declares output `Left \| Right` that msgspec cannot validate \(.*\); use a "
        r"msgspec\.Struct",
    ):
        compile_tree(Workflow(Sequence(make(Left | Right)), name="w"))


def test_non_type_output_is_refused() -> None:
    """An output that is not a type at all is refused at render."""
    with pytest.raises(CompileError, match=r"declares output `42` that msgspec cannot validate"):
        compile_tree(Workflow(Task(id="x", output=42, value=1), name="w"))


# -- BuildError --------------------------------------------------------------------------------


def test_build_function_raising_is_a_build_error() -> None:
    """A non-smithers exception in the build function becomes a BuildError naming it."""

    @smithers
    def broken(ctx: Any) -> Any:
        raise KeyError("version")

    line = broken.build.__code__.co_firstlineno + 2
    with pytest.raises(
        BuildError,
        match=r"^The build function of `broken` raised KeyError: 'version' \(at "
        + re.escape(f"{__file__}:{line}")
        + r"\)$",
    ) as info:
        render(broken)
    assert isinstance(info.value.__cause__, KeyError)
    assert isinstance(info.value, RuntimeError)


def test_build_error_names_the_line_of_the_users_file_not_the_library() -> None:
    """An error raised deep inside a library called by the build names the build's line."""

    @smithers
    def broken(ctx: Any) -> Any:
        return int("not a number")

    line = broken.build.__code__.co_firstlineno + 2
    with pytest.raises(BuildError, match=re.escape(f"(at {__file__}:{line})")):
        render(broken)


def test_component_raising_is_a_build_error_naming_its_path() -> None:
    """A non-smithers exception in a component becomes a BuildError naming the component path."""

    @component
    def Flaky(*, n: int) -> Element:
        return task(str(1 // n))

    flaky_line = Flaky.__wrapped__.__code__.co_firstlineno + 2
    with pytest.raises(
        BuildError,
        match=re.escape(
            "Component `Flaky` at `Workflow(w)/Sequence[1]/Flaky[0]` raised ZeroDivisionError: "
            f"integer division or modulo by zero (at {__file__}:{flaky_line})"
        ),
    ) as info:
        compile_tree(Workflow(task("a"), Sequence(Flaky(n=0)), name="w"))
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_definition_error_in_the_build_function_passes_through() -> None:
    """A bad prop inside the build function surfaces as the DefinitionError itself."""

    @smithers
    def bad(ctx: Any) -> Any:
        return Workflow(Parallel(max_concurrency=0), name="w")

    with pytest.raises(DefinitionError, match=r"^Parallel got max_concurrency=0"):
        render(bad)


def test_definition_error_in_a_component_passes_through() -> None:
    """A bad prop inside a component surfaces as a DefinitionError, like in a build function."""

    @component
    def Bad() -> Element:
        return Parallel(max_concurrency=0)

    with pytest.raises(DefinitionError, match=r"Parallel got max_concurrency=0"):
        compile_tree(Workflow(Bad(), name="w"))


def test_nested_component_errors_name_the_full_path() -> None:
    """A non-element from a nested component is a CompileError naming its full path."""

    @component
    def Inner() -> Any:
        return "not an element"

    @component
    def Outer() -> Element:
        return Sequence(Inner())

    with pytest.raises(
        CompileError,
        match=re.escape(
            "Component `Inner` at `Workflow(w)/Outer[0]/Sequence[0]/Inner[0]` returned"
        ),
    ):
        compile_tree(Workflow(Outer(), name="w"))
