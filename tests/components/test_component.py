"""`@component` user components and `smithers()` workflow definitions."""

from __future__ import annotations

import msgspec
import pytest

from smithers import Sequence, Task, Workflow, WorkflowDefinition, component, smithers
from smithers.components import ComponentElement, Element
from smithers.errors import DefinitionError


def task(node_id: str = "t") -> Task:
    """A minimal value task."""
    return Task(id=node_id, output=int, value=1)


# -- @component --------------------------------------------------------------------------------


def test_component_call_makes_an_element_without_calling_the_function() -> None:
    """Calling a component records its props; the function runs only at render."""
    calls: list[str] = []

    @component
    def ReleaseGate(*, version: str) -> Element:
        calls.append(version)
        return Sequence()

    element = ReleaseGate(version="1.0")
    assert isinstance(element, ComponentElement)
    assert isinstance(element, Element)
    assert element.name == "ReleaseGate"
    assert dict(element.props) == {"version": "1.0"}
    assert calls == []
    assert element.describe() == "ReleaseGate"


def test_component_keeps_the_function_name_and_doc() -> None:
    """The decorated callable keeps the function's name and docstring (functools.wraps)."""

    @component
    def Notify(*, channel: str) -> Element:
        """Tell the channel."""
        return Sequence()

    assert Notify.__name__ == "Notify"
    assert Notify.__doc__ == "Tell the channel."


def test_component_id_prop_names_it() -> None:
    """A valid `id` prop is the component element's id; an invalid one is not."""

    @component
    def Gate(*, id: str) -> Element:
        return Sequence()

    assert Gate(id="release").id == "release"
    assert Gate(id="release").describe() == "Gate(id='release')"
    assert Gate(id="not valid").id is None


def test_component_refuses_props_the_function_does_not_take() -> None:
    """Unknown or missing props are refused at the call, naming the component."""

    @component
    def Gate(*, version: str) -> Element:
        return Sequence()

    with pytest.raises(
        DefinitionError,
        match=r"^Gate got props=\{'version': '1', 'other': 1\}; got an unexpected keyword "
        "argument 'other'; call it with the function's parameters",
    ):
        Gate(version="1", other=1)  # type: ignore[call-arg]
    with pytest.raises(
        DefinitionError, match=r"^Gate got props=\{\}; missing a required argument: 'version'"
    ):
        Gate()  # type: ignore[call-arg]


def test_positional_children_become_the_children_prop() -> None:
    """Positional arguments arrive flattened as `children`, dropping None/False/True."""
    a, b, c = task("a"), task("b"), task("c")

    @component
    def Stage(*, children: tuple[Element, ...] = (), name: str = "") -> Element:
        return Sequence(children)

    element = Stage(a, None, [b, (False, c)], True, name="s")
    assert element.props["children"] == (a, b, c)
    assert element.props["name"] == "s"
    assert "children" not in Stage(name="s").props


def test_positional_children_are_refused_without_a_children_param() -> None:
    """A component that takes no `children` refuses positional children."""

    @component
    def Leaf(*, value: int) -> Element:
        return Sequence()

    with pytest.raises(
        DefinitionError, match=r"^Leaf got props=.*unexpected keyword argument 'children'"
    ):
        Leaf(task("a"), value=1)  # type: ignore[call-arg]


def test_positional_children_must_be_elements() -> None:
    """A bad positional child is refused naming the component, type and position."""

    @component
    def Stage(*, children: tuple[Element, ...] = ()) -> Element:
        return Sequence(children)

    with pytest.raises(
        DefinitionError, match=r"^Stage got a child of type `str` \('x'\) at position 1;"
    ):
        Stage(task("a"), "x")


def test_component_props_are_read_only() -> None:
    """The props mapping of a component element cannot be changed."""

    @component
    def Gate(*, version: str) -> Element:
        return Sequence()

    element = Gate(version="1")
    with pytest.raises(TypeError, match="does not support item assignment"):
        element.props["version"] = "2"  # type: ignore[index]


# -- smithers() --------------------------------------------------------------------------------


def test_smithers_as_bare_decorator() -> None:
    """`@smithers` wraps the build function with no input type."""

    @smithers
    def deploy(ctx: object) -> Element:
        return Workflow(task(), name="deploy")

    assert isinstance(deploy, WorkflowDefinition)
    assert (deploy.name, deploy.input_type) == ("deploy", None)
    assert deploy(None) == Workflow(task(), name="deploy")


def test_smithers_with_input_type() -> None:
    """`@smithers(input=T)` records the input type."""

    class DeployInput(msgspec.Struct):
        version: str

    @smithers(input=DeployInput)
    def deploy(ctx: object) -> Element:
        return Workflow(name="deploy")

    assert isinstance(deploy, WorkflowDefinition)
    assert (deploy.name, deploy.input_type) == ("deploy", DeployInput)


def test_smithers_called_directly() -> None:
    """`smithers(fn)` and `smithers(fn, input=T)` make definitions without decorator syntax."""

    def build(ctx: object) -> Element:
        return Workflow(name="w")

    assert smithers(build).build is build
    assert smithers(build, input=dict).input_type is dict
    assert smithers(input=int)(build).input_type is int


def test_smithers_does_not_call_the_build_function() -> None:
    """Defining a workflow does not run its build function."""
    calls: list[object] = []

    @smithers
    def wf(ctx: object) -> Element:
        calls.append(ctx)
        return Workflow(name="w")

    assert calls == []
    assert wf.name == "wf"


@pytest.mark.parametrize("build", [5, "wf", None])
def test_smithers_refuses_a_non_callable(build: object) -> None:
    """A non-callable build is refused (None counts when passed to the decorator it returns)."""
    with pytest.raises(
        DefinitionError,
        match=rf"^smithers got build={build!r}; decorate a function ctx -> Workflow\(\.\.\.\)\.$",
    ):
        smithers(input=int)(build)  # type: ignore[arg-type]
