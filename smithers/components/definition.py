"""`smithers()`: wrap a build function ``ctx -> Workflow(...)`` into a `WorkflowDefinition`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, overload

import attrs

from smithers.components.element import Element, reject

__all__ = ["BuildFunction", "WorkflowDefinition", "smithers"]

BuildFunction = Callable[[Any], Element]


@attrs.frozen(slots=True)
class WorkflowDefinition:
    """A workflow: its build function and the type its input is validated into.

    Calling it like the build function (``deploy(ctx)``) calls the build function.

    Attributes:
        build: The pure function ``ctx -> Workflow(...)``.
        input_type: The type ``ctx.input`` is validated into, or None for any JSON value.
        name: The build function's name.
    """

    build: BuildFunction = attrs.field(repr=False)
    input_type: Any = None
    name: str = ""

    def __call__(self, ctx: Any) -> Element:
        return self.build(ctx)


@overload
def smithers(build: BuildFunction, /, *, input: Any = None) -> WorkflowDefinition: ...


@overload
def smithers(
    build: None = None, /, *, input: Any = None
) -> Callable[[BuildFunction], WorkflowDefinition]: ...


def smithers(
    build: BuildFunction | None = None, /, *, input: Any = None
) -> WorkflowDefinition | Callable[[BuildFunction], WorkflowDefinition]:
    """Make a `WorkflowDefinition`; usable as ``@smithers`` and ``@smithers(input=T)``.

    Args:
        build: The build function ``ctx -> Workflow(...)``. It must be a pure function of
            ``ctx``: it is re-run whenever something it read changes.
        input: The type ``ctx.input`` is validated into (msgspec Struct, dataclass, TypedDict,
            builtin), or None to accept any JSON value.

    Returns:
        The definition, or a decorator that makes one.

    Raises:
        DefinitionError: When ``build`` is not callable.
    """

    def wrap(fn: BuildFunction) -> WorkflowDefinition:
        if not callable(fn):
            reject("smithers", "build", fn, "decorate a function ctx -> Workflow(...)")
        return WorkflowDefinition(
            build=fn, input_type=input, name=getattr(fn, "__name__", "workflow")
        )

    if build is None:
        return wrap
    return wrap(build)
