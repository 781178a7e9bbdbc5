"""`@component`: user-written components, evaluated when the tree is rendered."""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, ParamSpec

import attrs

from smithers.components.element import Element, flatten_children, is_valid_id, reject

__all__ = ["ComponentElement", "component"]

P = ParamSpec("P")


@attrs.frozen(slots=True)
class ComponentElement(Element):
    """A call of a ``@component`` function, expanded by the compiler at render time."""

    kind: ClassVar[str] = "component"
    func: Callable[..., Element] = attrs.field(repr=False)
    props: Mapping[str, Any]
    name: str

    @property
    def id(self) -> str | None:
        """The ``id`` prop when it is a valid id; it names the element in paths."""
        value = self.props.get("id")
        return value if is_valid_id(value) else None

    def describe(self) -> str:
        return f"{self.name}(id={self.id!r})" if self.id else self.name


def component(func: Callable[P, Element]) -> Callable[P, ComponentElement]:
    """Turn a function ``(**props) -> element`` into a user component.

    Calling the component makes an element that the compiler evaluates at render time; it is
    named in graph paths (``Workflow(x)/ReleaseGate[1]/Approval(gate)``) and error messages.
    Positional arguments become the ``children`` prop, flattened like any children.

    Args:
        func: The function; it must return an element.

    Returns:
        A callable with the same signature that returns a `ComponentElement`.

    Raises:
        DefinitionError: When called with props the function does not accept.
    """
    name = func.__name__
    signature = inspect.signature(func)

    @functools.wraps(func)
    def make(*children: P.args, **props: P.kwargs) -> ComponentElement:
        if children:
            props["children"] = flatten_children(name, children)
        try:
            signature.bind(**props)
        except TypeError as exc:
            reject(name, "props", dict(props), f"{exc}; call it with the function's parameters")
        return ComponentElement(func=func, props=types.MappingProxyType(dict(props)), name=name)

    return make
