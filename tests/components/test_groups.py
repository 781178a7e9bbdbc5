"""Structural components: Workflow, Sequence, Parallel, Branch and Loop props and errors."""

from __future__ import annotations

import re
from typing import Any

import pytest

from smithers import Branch, Loop, Parallel, Sequence, Task, Workflow
from smithers.errors import DefinitionError

BOOL_FIX = re.escape("pass True or False")


def task(node_id: str = "t") -> Task:
    """A minimal value task."""
    return Task(id=node_id, output=int, value=1)


# -- Workflow ----------------------------------------------------------------------------------


def test_workflow_keeps_children_and_name() -> None:
    """Workflow holds its flattened children and its name."""
    a, b = task("a"), task("b")
    wf = Workflow(a, [None, b], name="deploy")
    assert wf.children == (a, b)
    assert wf.name == "deploy"
    assert wf.kind == "workflow"


def test_workflow_name_is_keyword_only_and_required() -> None:
    """Workflow has no default name; leaving it out is a TypeError at the call."""
    with pytest.raises(TypeError, match="required keyword-only argument: 'name'"):
        Workflow(task())  # type: ignore[call-arg]


@pytest.mark.parametrize("name", ["", "has space", "a/b", 3, None])
def test_workflow_refuses_a_bad_name(name: Any) -> None:
    """A workflow name must be a valid id."""
    with pytest.raises(DefinitionError, match=rf"^Workflow got name={re.escape(repr(name))}; ids"):
        Workflow(name=name)


# -- Sequence ----------------------------------------------------------------------------------


def test_sequence_defaults() -> None:
    """A Sequence has no children and is not skipped by default."""
    seq = Sequence()
    assert seq.children == ()
    assert seq.skip_if is False
    assert Sequence(skip_if=True).skip_if is True


@pytest.mark.parametrize("value", [1, 0, None, "yes", [True]])
def test_sequence_skip_if_must_be_bool(value: Any) -> None:
    """skip_if refuses truthy non-bools so mistakes stay visible."""
    with pytest.raises(
        DefinitionError, match=rf"^Sequence got skip_if={re.escape(repr(value))}; {BOOL_FIX}"
    ):
        Sequence(skip_if=value)


# -- Parallel ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cap", [None, 1, 2, 100])
def test_parallel_accepts_positive_caps_or_none(cap: int | None) -> None:
    """max_concurrency is a positive int or None."""
    group = Parallel(task("a"), task("b"), max_concurrency=cap)
    assert group.max_concurrency == cap
    assert len(group.children) == 2


@pytest.mark.parametrize("cap", [0, -1, -100, True, False, 1.0, 2.5, "2", [2]])
def test_parallel_refuses_bad_caps(cap: Any) -> None:
    """Zero, negative, bool and non-int caps are refused with the fix."""
    with pytest.raises(
        DefinitionError,
        match=rf"^Parallel got max_concurrency={re.escape(repr(cap))}; "
        r"pass a positive int, or None for no cap\.$",
    ):
        Parallel(max_concurrency=cap)


def test_parallel_skip_if_must_be_bool() -> None:
    """Parallel's skip_if is checked like every skip_if."""
    with pytest.raises(DefinitionError, match=rf"^Parallel got skip_if=1; {BOOL_FIX}"):
        Parallel(skip_if=1)  # type: ignore[arg-type]


# -- Branch ------------------------------------------------------------------------------------


def test_branch_keeps_both_sides() -> None:
    """Branch holds its condition and both sides; else_ defaults to None."""
    a, b = task("a"), task("b")
    branch = Branch(if_=True, then=a, else_=b)
    assert (branch.if_, branch.then, branch.else_) == (True, a, b)
    assert Branch(if_=False, then=a).else_ is None
    assert Branch(if_=False, then=None).then is None


@pytest.mark.parametrize("value", [1, 0, None, "", "true", [1]])
def test_branch_condition_must_be_bool(value: Any) -> None:
    """if_ must be exactly True or False."""
    with pytest.raises(
        DefinitionError, match=rf"^Branch got if_={re.escape(repr(value))}; {BOOL_FIX}"
    ):
        Branch(if_=value, then=task())


@pytest.mark.parametrize("side", ["x", 5, [task()], (task(),), Task])
def test_branch_sides_must_be_elements(side: Any) -> None:
    """then and else_ must each be an element or None (lists are not flattened here)."""
    fix = re.escape("pass an element such as Task(...), or None.")
    with pytest.raises(DefinitionError, match=r"^Branch got then=.*; " + fix):
        Branch(if_=True, then=side)
    with pytest.raises(DefinitionError, match=r"^Branch got else_=.*; " + fix):
        Branch(if_=True, then=task(), else_=side)


def test_branch_skip_if_must_be_bool() -> None:
    """Branch's skip_if is checked like every skip_if."""
    with pytest.raises(DefinitionError, match=rf"^Branch got skip_if='no'; {BOOL_FIX}"):
        Branch(if_=True, then=None, skip_if="no")  # type: ignore[arg-type]


# -- Loop --------------------------------------------------------------------------------------


def test_loop_defaults() -> None:
    """A Loop defaults to 5 iterations and return-last."""
    body = task("a")
    loop = Loop(body, id="review", until=False)
    assert loop.children == (body,)
    assert (loop.id, loop.until, loop.max_iterations, loop.on_max_reached) == (
        "review",
        False,
        5,
        "return-last",
    )


def test_loop_accepts_a_callable_until_without_calling_it() -> None:
    """until may be a callable; constructing the loop does not call it."""
    calls: list[object] = []

    def until(ctx: object) -> bool:
        calls.append(ctx)
        return True

    loop = Loop(id="l", until=until, max_iterations=3, on_max_reached="fail")
    assert loop.until is until
    assert (loop.max_iterations, loop.on_max_reached) == (3, "fail")
    assert calls == []


@pytest.mark.parametrize("loop_id", ["", "a b", "x" * 129, None, 7])
def test_loop_refuses_a_bad_id(loop_id: Any) -> None:
    """A loop id must be a valid id."""
    with pytest.raises(DefinitionError, match=r"^Loop got id=.*; ids must match"):
        Loop(id=loop_id, until=True)


@pytest.mark.parametrize("until", [1, 0, None, "done", [True]])
def test_loop_until_must_be_bool_or_callable(until: Any) -> None:
    """until refuses anything that is neither a bool nor callable."""
    with pytest.raises(
        DefinitionError,
        match=rf"^Loop\(id='l'\) got until={re.escape(repr(until))}; "
        r"pass a bool or a callable ctx -> bool\.$",
    ):
        Loop(id="l", until=until)


@pytest.mark.parametrize("bound", [0, -1, True, 2.0, "3", None])
def test_loop_max_iterations_must_be_a_positive_int(bound: Any) -> None:
    """max_iterations refuses zero, negatives, bools and non-ints."""
    with pytest.raises(
        DefinitionError,
        match=rf"^Loop\(id='l'\) got max_iterations={re.escape(repr(bound))}; "
        r"pass a positive int\.$",
    ):
        Loop(id="l", until=True, max_iterations=bound)


def test_loop_max_iterations_of_one_is_allowed() -> None:
    """One iteration is the smallest bound."""
    assert Loop(id="l", until=True, max_iterations=1).max_iterations == 1


@pytest.mark.parametrize("policy", ["stop", "return_last", "", None, "FAIL"])
def test_loop_on_max_reached_is_one_of_two(policy: Any) -> None:
    """on_max_reached is 'return-last' or 'fail' and nothing else."""
    with pytest.raises(
        DefinitionError,
        match=rf"^Loop\(id='l'\) got on_max_reached={re.escape(repr(policy))}; "
        "on_max_reached must be 'return-last' or 'fail'",
    ):
        Loop(id="l", until=True, on_max_reached=policy)


def test_loop_skip_if_must_be_bool() -> None:
    """Loop's skip_if is checked like every skip_if."""
    with pytest.raises(DefinitionError, match=rf"^Loop\(id='l'\) got skip_if=None; {BOOL_FIX}"):
        Loop(id="l", until=True, skip_if=None)  # type: ignore[arg-type]
