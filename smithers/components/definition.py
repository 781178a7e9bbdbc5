"""`smithers()`: wrap a build function ``ctx -> Workflow(...)`` into a `WorkflowDefinition`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, overload

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
        concurrency_key: ``input -> str``: runs with the same key share
            ``concurrency_limit`` active slots (DESIGN §14), or None.
        concurrency_limit: Active runs allowed per key.
        on_limit: ``"queue"`` (the new run is ``queued`` and starts when a slot frees) or
            ``"reject"`` (`ConcurrencyLimitError`, nothing written).
    """

    build: BuildFunction = attrs.field(repr=False)
    input_type: Any = None
    name: str = ""
    concurrency_key: Callable[[Any], Any] | None = attrs.field(default=None, repr=False)
    concurrency_limit: int = 1
    on_limit: Literal["queue", "reject"] = "queue"

    def __call__(self, ctx: Any) -> Element:
        return self.build(ctx)


@overload
def smithers(
    build: BuildFunction,
    /,
    *,
    input: Any = None,
    concurrency_key: Callable[[Any], Any] | None = None,
    concurrency_limit: int = 1,
    on_limit: Literal["queue", "reject"] = "queue",
) -> WorkflowDefinition: ...


@overload
def smithers(
    build: None = None,
    /,
    *,
    input: Any = None,
    concurrency_key: Callable[[Any], Any] | None = None,
    concurrency_limit: int = 1,
    on_limit: Literal["queue", "reject"] = "queue",
) -> Callable[[BuildFunction], WorkflowDefinition]: ...


def smithers(
    build: BuildFunction | None = None,
    /,
    *,
    input: Any = None,
    concurrency_key: Callable[[Any], Any] | None = None,
    concurrency_limit: int = 1,
    on_limit: Literal["queue", "reject"] = "queue",
) -> WorkflowDefinition | Callable[[BuildFunction], WorkflowDefinition]:
    """Make a `WorkflowDefinition`; usable as ``@smithers`` and ``@smithers(input=T)``.

    Args:
        build: The build function ``ctx -> Workflow(...)``. It must be a pure function of
            ``ctx``: it is re-run whenever something it read changes.
        input: The type ``ctx.input`` is validated into (msgspec Struct, dataclass, TypedDict,
            builtin), or None to accept any JSON value.
        concurrency_key: ``input -> key``: at most ``concurrency_limit`` active runs per key.
        concurrency_limit: Active runs allowed per key (an int >= 1).
        on_limit: ``"queue"``: a run over the limit is ``queued`` and started in order when
            the key frees; ``"reject"``: `ConcurrencyLimitError` and nothing is written.

    Returns:
        The definition, or a decorator that makes one.

    Raises:
        DefinitionError: When ``build`` is not callable, or a concurrency option is invalid.
    """
    if concurrency_key is not None and not callable(concurrency_key):
        reject("smithers", "concurrency_key", concurrency_key, "pass a function input -> key")
    if isinstance(concurrency_limit, bool) or not isinstance(concurrency_limit, int):
        reject("smithers", "concurrency_limit", concurrency_limit, "pass an int >= 1")
    if concurrency_limit < 1:
        reject("smithers", "concurrency_limit", concurrency_limit, "pass an int >= 1")
    if on_limit not in ("queue", "reject"):
        reject("smithers", "on_limit", on_limit, 'pass "queue" or "reject"')

    def wrap(fn: BuildFunction) -> WorkflowDefinition:
        if not callable(fn):
            reject("smithers", "build", fn, "decorate a function ctx -> Workflow(...)")
        return WorkflowDefinition(
            build=fn,
            input_type=input,
            name=getattr(fn, "__name__", "workflow"),
            concurrency_key=concurrency_key,
            concurrency_limit=concurrency_limit,
            on_limit=on_limit,
        )

    if build is None:
        return wrap
    return wrap(build)
