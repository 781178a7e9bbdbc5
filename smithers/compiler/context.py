"""`Context`: what a build function reads (input, loop iterations, committed outputs).

Reads made while rendering are recorded as the render's dependencies; reads made later
(inside a ``run`` callable) are live reads of committed state. Pure: the data comes from an
`OutputSource` the caller supplies.
"""

from __future__ import annotations

import copy
import enum
import types
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol, TypeVar, overload

import msgspec

from smithers.compiler.codec import type_name
from smithers.compiler.graph import Graph
from smithers.errors import ContextError, MissingOutputError, ValidationError

__all__ = ["MISSING", "Context", "Iteration", "MappingSource", "OutputSource"]

T = TypeVar("T")
Iteration = tuple[int, ...]


class _Missing(enum.Enum):
    MISSING = "MISSING"


MISSING = _Missing.MISSING
"""Returned by an `OutputSource` for an output that does not exist (None is a valid output)."""


class OutputSource(Protocol):
    """Where a `Context` reads outputs and loop state; the runtime reads committed state."""

    def type_of(self, node_id: str) -> Any:
        """The node's declared output type, or MISSING when the source does not know it."""

    def read(self, node_id: str, iteration: Iteration | None, tp: Any) -> Any:
        """One output (a fresh copy) or MISSING; ``iteration=None`` applies the lookup rule."""

    def read_all(self, node_id: str, tp: Any) -> list[Any]:
        """Every iteration's output of the node, in iteration order."""

    def read_latest(self, node_id: str, tp: Any) -> Any:
        """The output of the highest iteration that has one, or MISSING."""

    def iterations(self) -> Mapping[str, int] | None:
        """Loop id to current iteration for the loops mounted now; None while not known yet
        (before the first render of a run)."""


class _Provisional(Mapping[str, int]):
    """Loop iterations before any render has shown which loops mount: every loop is at 0.

    A render that read it is repeated once the loops are known, so this never sticks.
    """

    def __getitem__(self, loop_id: str) -> int:
        return 0

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _as_iteration(iteration: int | Iterable[int] | None) -> Iteration | None:
    if iteration is None:
        return None
    if isinstance(iteration, int):
        return (iteration,)
    return tuple(int(i) for i in iteration)


class Context:
    """The argument of a build function (``ctx``).

    Returned outputs and ``input`` are fresh copies: mutating them changes nothing stored.
    """

    __slots__ = (
        "_input",
        "_input_decode",
        "_provisional",
        "_read_iterations",
        "_reads",
        "_run_id",
        "_source",
        "_tracking",
        "_untyped",
    )

    def __init__(
        self,
        *,
        run_id: str,
        source: OutputSource,
        input: Any = None,
        input_decode: Any = None,
    ) -> None:
        self._run_id = run_id
        self._source = source
        self._input = input
        self._input_decode = input_decode
        self._tracking = True
        self._reads: set[str] = set()
        self._read_iterations = False
        self._provisional = False
        self._untyped: set[str] = set()

    # -- dependencies -------------------------------------------------------------------------

    def seal(self) -> None:
        """End the render: later reads are live and no longer recorded."""
        self._tracking = False

    @property
    def reads(self) -> frozenset[str]:
        """Node ids read while rendering (the render's dependencies)."""
        return frozenset(self._reads)

    @property
    def read_iterations(self) -> bool:
        """Whether the render read loop iterations."""
        return self._read_iterations

    @property
    def provisional(self) -> bool:
        """Whether the render read loop iterations before the loops were known."""
        return self._provisional

    @property
    def untyped_reads(self) -> frozenset[str]:
        """Node ids read while rendering whose output type was not known yet."""
        return frozenset(self._untyped)

    def _note(self, node_id: str) -> None:
        if not isinstance(node_id, str):
            raise TypeError(f"node ids are strings, got {node_id!r}")
        if self._tracking:
            self._reads.add(node_id)

    def _type(self, node_id: str, tp: Any) -> Any:
        if tp is not None:
            return tp
        known = self._source.type_of(node_id)
        if known is MISSING:
            if self._tracking:
                self._untyped.add(node_id)
            return None
        return known

    # -- public API ---------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        """The run's id (``"preview"`` when rendering without a run)."""
        return self._run_id

    @property
    def input(self) -> Any:
        """The run's input, validated into the definition's input type; a fresh copy."""
        if self._input_decode is not None:
            return self._input_decode()
        return copy.deepcopy(self._input)

    @property
    def iterations(self) -> Mapping[str, int]:
        """Loop id to its current iteration, for every mounted loop."""
        if self._tracking:
            self._read_iterations = True
        known = self._source.iterations()
        if known is None:
            self._provisional = True
            return _Provisional()
        return types.MappingProxyType(dict(known))

    @property
    def iteration(self) -> int:
        """The current iteration of the only mounted loop.

        Raises:
            ContextError: When no loop or several loops are mounted.
        """
        its = self.iterations
        if isinstance(its, _Provisional):
            return 0
        if len(its) == 1:
            return next(iter(its.values()))
        if not its:
            raise ContextError(
                "ctx.iteration was read but no Loop is mounted; read it only in workflows "
                "that mount a Loop."
            )
        names = ", ".join(f"`{k}`" for k in sorted(its))
        raise ContextError(
            f"ctx.iteration is ambiguous: loops {names} are mounted; use "
            f"ctx.iterations[{sorted(its)[0]!r}] to name one."
        )

    @overload
    def output(self, node_id: str, type: type[T], *, iteration: Any = None) -> T: ...

    @overload
    def output(self, node_id: str, type: None = None, *, iteration: Any = None) -> Any: ...

    def output(self, node_id: str, type: Any = None, *, iteration: Any = None) -> Any:
        """Return a node's committed output.

        A node of the same loop defaults to the current iteration; a node outside any loop is
        found from inside one; a loop-body node read from outside gives its last iteration.

        Args:
            node_id: The node's id.
            type: Decode into this type instead of the node's declared output type.
            iteration: An iteration tuple (or int for one loop) instead of the default.

        Raises:
            MissingOutputError: When there is no output there yet.
        """
        value = self._read(node_id, type, iteration)
        if value is MISSING:
            where = "" if iteration is None else f" at iteration {_as_iteration(iteration)}"
            raise MissingOutputError(
                f"Node `{node_id}` has no output{where} yet; use ctx.output_maybe({node_id!r}) "
                "to render before it finishes."
            )
        return value

    def output_maybe(self, node_id: str, type: Any = None, *, iteration: Any = None) -> Any:
        """Like `output`, but return None when there is no output yet."""
        value = self._read(node_id, type, iteration)
        return None if value is MISSING else value

    def latest(self, node_id: str, type: Any = None) -> Any:
        """Return the output of the node's highest iteration that has one, or None."""
        self._note(node_id)
        value = self._source.read_latest(node_id, self._type(node_id, type))
        return None if value is MISSING else value

    def outputs(self, node_id: str, type: Any = None) -> list[Any]:
        """Return the node's outputs of every iteration, in iteration order."""
        self._note(node_id)
        return self._source.read_all(node_id, self._type(node_id, type))

    def _read(self, node_id: str, tp: Any, iteration: Any) -> Any:
        self._note(node_id)
        return self._source.read(node_id, _as_iteration(iteration), self._type(node_id, tp))

    def __repr__(self) -> str:
        return f"Context(run_id={self._run_id!r})"


class MappingSource:
    """An `OutputSource` over plain values, for `render` without a run.

    Keys are node ids (iteration ``()``) or ``(node_id, iteration)`` pairs.
    """

    def __init__(
        self,
        outputs: Mapping[Any, Any] | None = None,
        iterations: Mapping[str, int] | None = None,
    ) -> None:
        self._by_node: dict[str, dict[Iteration, Any]] = {}
        for key, value in (outputs or {}).items():
            if isinstance(key, tuple):
                node_id, its = key
                its = _as_iteration(its) or ()
            else:
                node_id, its = key, ()
            self._by_node.setdefault(node_id, {})[its] = value
        self._iterations: dict[str, int] | None = (
            dict(iterations) if iterations is not None else None
        )
        self.types: dict[str, Any] = {}
        self.hidden: frozenset[str] = frozenset()

    def type_of(self, node_id: str) -> Any:
        return self.types.get(node_id, MISSING)

    def read(self, node_id: str, iteration: Iteration | None, tp: Any) -> Any:
        found = self._by_node.get(node_id)
        if not found or node_id in self.hidden:
            return MISSING
        if iteration is None:
            iteration = () if () in found else max(found)
        if iteration not in found:
            return MISSING
        return self._typed(node_id, found[iteration], tp)

    def read_all(self, node_id: str, tp: Any) -> list[Any]:
        found = {} if node_id in self.hidden else self._by_node.get(node_id, {})
        return [self._typed(node_id, found[k], tp) for k in sorted(found)]

    def read_latest(self, node_id: str, tp: Any) -> Any:
        found = None if node_id in self.hidden else self._by_node.get(node_id)
        return self._typed(node_id, found[max(found)], tp) if found else MISSING

    def iterations(self) -> Mapping[str, int] | None:
        return self._iterations

    def learn(self, graph: Graph) -> None:
        """Adopt a render's output types and mounted loops."""
        self.types.update(graph.output_types())
        self._iterations = {
            g.name: g.iteration[-1] for g in graph.groups if g.kind == "loop" and g.name
        }

    @staticmethod
    def _typed(node_id: str, value: Any, tp: Any) -> Any:
        """A fresh copy of a given output, converted into its type (plain data is accepted)."""
        value = copy.deepcopy(value)
        if tp is None:
            return value
        try:
            return msgspec.convert(value, tp)
        except msgspec.ValidationError as exc:
            raise ValidationError(
                f"outputs[{node_id!r}] does not match `{type_name(tp)}`: {exc}; pass a value "
                "of that type or plain data that converts into it."
            ) from None
