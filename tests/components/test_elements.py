"""Elements: ids, the children rules and immutability shared by every component."""

from __future__ import annotations

import re

import attrs
import pytest

from smithers import Approval, ApprovalRequest, Loop, Parallel, Sequence, Signal, Task, Workflow
from smithers.components import Element, is_valid_id
from smithers.errors import DefinitionError

ID_RULE = re.escape("ids must match [A-Za-z0-9_.:-]{1,128}")


def task(node_id: str = "t") -> Task:
    """A minimal value task."""
    return Task(id=node_id, output=int, value=1)


# -- ids ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["a", "A", "0", "_", ".", ":", "-", "build-1.2:x_y", "x" * 128],
)
def test_valid_ids_are_accepted(value: str) -> None:
    """Strings of 1-128 characters from [A-Za-z0-9_.:-] are valid ids."""
    assert is_valid_id(value)
    assert Task(id=value, output=int, value=1).id == value


@pytest.mark.parametrize(
    "value",
    ["", "a b", "a/b", "a\n", "\na", "é", "a*", "a\tb", "a,b", "(a)", "a#"],
)
def test_invalid_ids_are_refused(value: str) -> None:
    """Empty or bad-character ids are refused, naming the rule."""
    assert not is_valid_id(value)
    with pytest.raises(DefinitionError, match=rf"^Task got id={re.escape(repr(value))}; {ID_RULE}"):
        Task(id=value, output=int, value=1)


@pytest.mark.parametrize("value", [None, 5, b"abc", ["a"]])
def test_non_string_ids_are_refused(value: object) -> None:
    """An id that is not a string is refused, not coerced."""
    assert not is_valid_id(value)
    with pytest.raises(
        DefinitionError, match=rf"^Signal got id={re.escape(repr(value))}; {ID_RULE}"
    ):
        Signal(id=value, output=int)  # type: ignore[arg-type]


def test_ids_of_every_kind_use_the_same_rule() -> None:
    """Workflow names, loop ids, approval ids and needs targets share the id rule."""
    bad = "has space"
    with pytest.raises(DefinitionError, match=rf"^Workflow got name='has space'; {ID_RULE}"):
        Workflow(name=bad)
    with pytest.raises(DefinitionError, match=rf"^Loop got id='has space'; {ID_RULE}"):
        Loop(id=bad, until=True)
    with pytest.raises(DefinitionError, match=rf"^Approval got id='has space'; {ID_RULE}"):
        Approval(id=bad, request=ApprovalRequest(title="t"))
    with pytest.raises(
        DefinitionError, match=rf"^Task\(id='t'\) got needs\['x'\]='has space'; {ID_RULE}"
    ):
        Task(id="t", output=int, value=1, needs={"x": bad})


def test_id_of_128_characters_is_the_limit() -> None:
    """128 characters is accepted and 129 refused, at every id-taking component."""
    ok, too_long = "a" * 128, "a" * 129
    assert Loop(id=ok, until=True).id == ok
    assert Workflow(name=ok).name == ok
    assert Task(id=ok, output=int, value=1).id == ok
    assert not is_valid_id(too_long)
    with pytest.raises(DefinitionError, match=rf"^Loop got id='a{{56}}\.\.\.; {ID_RULE}"):
        Loop(id=too_long, until=True)
    with pytest.raises(DefinitionError, match=rf"^Task got id='a{{56}}\.\.\.; {ID_RULE}"):
        Task(id=too_long, output=int, value=1)


# -- children ----------------------------------------------------------------------------------


def test_none_false_true_children_are_dropped() -> None:
    """None, False and True children leave no trace in the children tuple."""
    a, b = task("a"), task("b")
    assert Sequence(None, a, False, True, b, None).children == (a, b)


def test_lists_tuples_and_generators_are_flattened_recursively() -> None:
    """Nested lists, tuples and generators flatten in order into one tuple."""
    a, b, c, d = task("a"), task("b"), task("c"), task("d")
    nested = Sequence([a, (b, [None, (x for x in [c])])], [[False]], (y for y in (d,)))
    assert nested.children == (a, b, c, d)


def test_map_and_filter_children_are_flattened() -> None:
    """Lazy map/filter iterators are children sources like generators."""
    ids = ["a", "b", "c"]
    seq = Parallel(map(task, ids), filter(None, [None, task("d")]))
    assert [child.id for child in seq.children] == ["a", "b", "c", "d"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("cond", "mounted"), [(True, True), (False, False), (None, False)])
def test_cond_and_element_idiom_mounts_only_when_true(cond: bool | None, mounted: bool) -> None:
    """`cond and X(...)` mounts X when cond is truthy and drops the slot when False/None."""
    a = task("a")
    assert Sequence(task("first"), cond and a).children == (
        (task("first"), a) if mounted else (task("first"),)
    )


@pytest.mark.parametrize(
    ("children", "type_name", "position"),
    [
        ((5,), "int", 0),
        ((task("a"), "text"), "str", 1),
        ((task("a"), None, {"k": 1}), "dict", 2),
        ((task("a"), [None, (False, 3.5)]), "float", 3),
        ((Task,), "type", 0),
    ],
)
def test_non_element_child_is_refused_naming_type_and_position(
    children: tuple[object, ...], type_name: str, position: int
) -> None:
    """A child that is not an element is refused with its type and flattened position."""
    with pytest.raises(
        DefinitionError,
        match=rf"^Sequence got a child of type `{type_name}` \(.*\) at position {position}; "
        r"children must be elements",
    ):
        Sequence(*children)


def test_bad_child_error_names_the_owner() -> None:
    """The owner in a child error names the component, with its id or name when it has one."""
    with pytest.raises(DefinitionError, match=r"^Workflow\(name='w'\) got a child of type `int`"):
        Workflow(1, name="w")
    with pytest.raises(DefinitionError, match=r"^Loop\(id='l'\) got a child of type `str`"):
        Loop("x", id="l", until=True)
    with pytest.raises(DefinitionError, match=r"^Parallel got a child of type `bytes`"):
        Parallel(b"x")


def test_definition_error_is_a_value_error() -> None:
    """DefinitionError is also a ValueError, so generic handlers still catch it."""
    with pytest.raises(ValueError, match="child of type `int`"):
        Sequence(1)


# -- records -----------------------------------------------------------------------------------


def test_elements_are_frozen() -> None:
    """Elements cannot be mutated after construction."""
    t = task("a")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        t.id = "b"  # type: ignore[misc]
    seq = Sequence(t)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        seq.children = ()  # type: ignore[misc]


def test_needs_are_read_only_copies() -> None:
    """needs is copied at construction and cannot be mutated through the element."""
    needs = {"x": "a"}
    t = Task(id="t", output=int, value=1, needs=needs)
    needs["y"] = "b"
    assert dict(t.needs) == {"x": "a"}
    with pytest.raises(TypeError, match="does not support item assignment"):
        t.needs["z"] = "c"  # type: ignore[index]


def test_equal_props_make_equal_elements() -> None:
    """Two elements built with the same props compare equal; a different prop does not."""
    assert task("a") == task("a")
    assert task("a") != task("b")
    assert Sequence(task("a")) == Sequence([task("a")])


@pytest.mark.parametrize(
    ("element", "text"),
    [
        (Workflow(name="w"), "Workflow(name='w')"),
        (Sequence(), "Sequence"),
        (Parallel(), "Parallel"),
        (Loop(id="l", until=True), "Loop(id='l')"),
        (Task(id="t", output=int, value=1), "Task(id='t')"),
        (Approval(id="g", request=ApprovalRequest(title="x")), "Approval(id='g')"),
        (Signal(id="s", output=int), "Signal(id='s')"),
    ],
)
def test_describe_names_each_element(element: Element, text: str) -> None:
    """describe() is how an element is named in messages."""
    assert element.describe() == text


def test_every_builtin_element_has_its_kind() -> None:
    """Each built-in element class carries its lower-case kind."""
    kinds = {
        type(e).__name__: e.kind
        for e in [
            Workflow(name="w"),
            Sequence(),
            Parallel(),
            Loop(id="l", until=True),
            task(),
            Approval(id="g", request=ApprovalRequest(title="x")),
            Signal(id="s", output=int),
        ]
    }
    assert kinds == {
        "Workflow": "workflow",
        "Sequence": "sequence",
        "Parallel": "parallel",
        "Loop": "loop",
        "Task": "task",
        "Approval": "approval",
        "Signal": "signal",
    }
