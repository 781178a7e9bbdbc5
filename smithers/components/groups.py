"""Structural components: `Workflow`, `Sequence`, `Parallel`, `Branch` and `Loop`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import attrs

from smithers.components.element import (
    Element,
    check_bool,
    check_id,
    flatten_children,
    reject,
)

__all__ = ["Branch", "Loop", "Parallel", "Sequence", "Workflow"]

OnMaxReached = Literal["return-last", "fail"]


@attrs.frozen(slots=True, init=False)
class Workflow(Element):
    """The root of a workflow: its children run in order, like a `Sequence`.

    Args:
        *children: Elements; ``None``/``False``/``True`` are dropped, lists flattened.
        name: The workflow's name, shown in graphs, paths and ``smithers runs``.
    """

    kind: ClassVar[str] = "workflow"
    children: tuple[Element, ...]
    name: str

    def __init__(self, *children: object, name: str) -> None:
        checked = check_id("Workflow", "name", name)
        self.__attrs_init__(
            children=flatten_children(f"Workflow(name={name!r})", children), name=checked
        )

    def describe(self) -> str:
        return f"Workflow(name={self.name!r})"


@attrs.frozen(slots=True, init=False)
class Sequence(Element):
    """Children run one after another: each starts when the previous one is terminal.

    Args:
        *children: Elements; ``None``/``False``/``True`` are dropped, lists flattened.
        skip_if: When True the whole subtree mounts as ``skipped``.
    """

    kind: ClassVar[str] = "sequence"
    children: tuple[Element, ...]
    skip_if: bool

    def __init__(self, *children: object, skip_if: bool = False) -> None:
        self.__attrs_init__(
            children=flatten_children("Sequence", children),
            skip_if=check_bool("Sequence", "skip_if", skip_if),
        )


@attrs.frozen(slots=True, init=False)
class Parallel(Element):
    """Children run concurrently, at most ``max_concurrency`` of its tasks at once.

    Args:
        *children: Elements; ``None``/``False``/``True`` are dropped, lists flattened.
        max_concurrency: A cap on this group's running tasks, or None for no cap of its own
            (enclosing caps and the run-level cap still apply).
        skip_if: When True the whole subtree mounts as ``skipped``.
    """

    kind: ClassVar[str] = "parallel"
    children: tuple[Element, ...]
    max_concurrency: int | None
    skip_if: bool

    def __init__(
        self, *children: object, max_concurrency: int | None = None, skip_if: bool = False
    ) -> None:
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool)
            or not isinstance(max_concurrency, int)
            or max_concurrency < 1
        ):
            reject(
                "Parallel",
                "max_concurrency",
                max_concurrency,
                "pass a positive int, or None for no cap",
            )
        self.__attrs_init__(
            children=flatten_children("Parallel", children),
            max_concurrency=max_concurrency,
            skip_if=check_bool("Parallel", "skip_if", skip_if),
        )


@attrs.frozen(slots=True, init=False)
class Branch(Element):
    """Mounts ``then`` when ``if_`` is True, else ``else_``; only the chosen side exists.

    Once any node under the branch has started, its side is frozen for that run.

    Args:
        if_: The condition, a bool.
        then: The element mounted when ``if_`` is True.
        else_: The element mounted otherwise, or None.
        skip_if: When True the whole subtree mounts as ``skipped``.
    """

    kind: ClassVar[str] = "branch"
    if_: bool
    then: Element | None
    else_: Element | None
    skip_if: bool

    def __init__(
        self,
        *,
        if_: bool,
        then: Element | None,
        else_: Element | None = None,
        skip_if: bool = False,
    ) -> None:
        check_bool("Branch", "if_", if_)
        for prop, side in (("then", then), ("else_", else_)):
            if side is not None and not isinstance(side, Element):
                reject("Branch", prop, side, "pass an element such as Task(...), or None")
        self.__attrs_init__(
            if_=if_, then=then, else_=else_, skip_if=check_bool("Branch", "skip_if", skip_if)
        )


@attrs.frozen(slots=True, init=False)
class Loop(Element):
    """A while-loop: ``until`` is checked before every iteration; the body runs in order.

    Args:
        *children: The body, run in order each iteration.
        id: The loop's id (``ctx.iterations[id]``, ``--iteration``).
        until: A bool, or a callable ``ctx -> bool``; the loop ends once it is true.
        max_iterations: The most iterations the loop runs.
        on_max_reached: ``"return-last"`` ends the loop keeping the last iteration's outputs;
            ``"fail"`` fails the run.
        skip_if: When True the whole subtree mounts as ``skipped``.
    """

    kind: ClassVar[str] = "loop"
    children: tuple[Element, ...]
    id: str
    until: bool | Callable[[Any], bool]
    max_iterations: int
    on_max_reached: OnMaxReached
    skip_if: bool

    def __init__(
        self,
        *children: object,
        id: str,
        until: bool | Callable[[Any], bool],
        max_iterations: int = 5,
        on_max_reached: OnMaxReached = "return-last",
        skip_if: bool = False,
    ) -> None:
        owner = "Loop"
        checked = check_id(owner, "id", id)
        owner = f"Loop(id={checked!r})"
        if not isinstance(until, bool) and not callable(until):
            reject(owner, "until", until, "pass a bool or a callable ctx -> bool")
        if (
            isinstance(max_iterations, bool)
            or not isinstance(max_iterations, int)
            or (max_iterations < 1)
        ):
            reject(owner, "max_iterations", max_iterations, "pass a positive int")
        if on_max_reached not in ("return-last", "fail"):
            reject(
                owner,
                "on_max_reached",
                on_max_reached,
                "on_max_reached must be 'return-last' or 'fail'",
            )
        self.__attrs_init__(
            children=flatten_children(owner, children),
            id=checked,
            until=until,
            max_iterations=max_iterations,
            on_max_reached=on_max_reached,
            skip_if=check_bool(owner, "skip_if", skip_if),
        )

    def describe(self) -> str:
        return f"Loop(id={self.id!r})"
