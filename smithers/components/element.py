"""The `Element` base record and the checks every component shares (ids, children, props)."""

from __future__ import annotations

import re
import types
from collections.abc import Iterable, Iterator, Mapping
from typing import ClassVar, NoReturn

from smithers.errors import DefinitionError

__all__ = [
    "ID_PATTERN",
    "Element",
    "check_bool",
    "check_id",
    "check_needs",
    "flatten_children",
    "is_valid_id",
    "reject",
]

ID_PATTERN = r"[A-Za-z0-9_.:-]{1,128}"
_ID_RE = re.compile(ID_PATTERN)


class Element:
    """An immutable node of a component tree; built-in components and ``@component`` make them.

    Every concrete element is a frozen, slotted attrs class.
    """

    __slots__ = ()
    kind: ClassVar[str] = "element"

    def describe(self) -> str:
        """Return how this element is named in messages, e.g. ``Approval(id='gate')``."""
        return type(self).__name__


def is_valid_id(value: object) -> bool:
    """Return whether ``value`` is a string usable as a node, loop or run id."""
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def reject(owner: str, prop: str, value: object, fix: str) -> NoReturn:
    """Raise the one-sentence `DefinitionError` for a bad prop: who, which prop, what value, fix."""
    raise DefinitionError(f"{owner} got {prop}={_short(value)}; {fix}.")


def check_id(owner: str, prop: str, value: object) -> str:
    """Return ``value`` if it is a valid id, else raise a `DefinitionError` naming the rule."""
    if not is_valid_id(value):
        reject(owner, prop, value, f"ids must match {ID_PATTERN} (letters, digits, _ . : -)")
    assert isinstance(value, str)
    return value


def check_bool(owner: str, prop: str, value: object) -> bool:
    """Return ``value`` if it is a bool; truthy objects are refused so mistakes stay visible."""
    if not isinstance(value, bool):
        reject(owner, prop, value, f"pass True or False (for example {prop}=bool(x))")
    return value


def check_needs(owner: str, needs: object) -> Mapping[str, str]:
    """Return a read-only copy of a ``needs`` mapping of parameter name to node id."""
    if needs is None:
        return types.MappingProxyType({})
    if not isinstance(needs, Mapping):
        reject(owner, "needs", needs, "pass a dict of parameter name to node id")
    checked: dict[str, str] = {}
    for param, node_id in needs.items():
        if not isinstance(param, str) or not param.isidentifier() or param == "task":
            reject(
                owner,
                "needs",
                dict(needs),
                f"the key {param!r} must be a Python identifier other than `task`",
            )
        checked[param] = check_id(owner, f"needs[{param!r}]", node_id)
    return types.MappingProxyType(checked)


def flatten_children(owner: str, children: Iterable[object]) -> tuple[Element, ...]:
    """Flatten lists, tuples and generators; drop None, False and True; refuse anything else."""
    return tuple(_flatten(owner, children, [0]))


def _flatten(owner: str, children: Iterable[object], position: list[int]) -> Iterator[Element]:
    for child in children:
        if child is None or isinstance(child, bool):
            position[0] += 1
            continue
        if isinstance(child, Element):
            position[0] += 1
            yield child
        elif isinstance(child, list | tuple | types.GeneratorType | map | filter):
            yield from _flatten(owner, child, position)
        else:
            raise DefinitionError(
                f"{owner} got a child of type `{type(child).__name__}` ({_short(child)}) at "
                f"position {position[0]}; children must be elements such as Task(...), "
                "or None/False to leave a slot empty."
            )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
