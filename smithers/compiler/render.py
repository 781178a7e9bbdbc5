"""`render`: run a build function against a `Context` and compile the tree it returns.

Pure: no I/O, no clock, no store. ``run`` callables and request functions are never called.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from smithers.compiler.codec import check_value, decode_value, encode_value, type_name
from smithers.compiler.context import Context, MappingSource, OutputSource
from smithers.compiler.graph import Graph
from smithers.compiler.lower import LoweringView, compile_tree
from smithers.compiler.origin import raised_at
from smithers.components.definition import WorkflowDefinition
from smithers.errors import (
    BuildError,
    CompileError,
    DefinitionError,
    InputError,
    SmithersError,
)

__all__ = [
    "RenderSource",
    "encode_input",
    "input_decoder",
    "render",
    "render_once",
    "render_settled",
]

_MAX_PASSES = 4


def encode_input(definition: WorkflowDefinition, value: Any) -> bytes:
    """Validate a run's input into the definition's input type; return its msgpack bytes.

    No input (None) validates as None, or as ``{}`` when the input type is an object whose
    fields all have defaults.

    Raises:
        InputError: Naming the workflow, the type and the field path.
    """
    if definition.input_type is None:
        try:
            return encode_value(value)
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"Input for `{definition.name}` cannot be stored ({exc}); pass JSON-able data."
            ) from None
    expected = type_name(definition.input_type)
    try:
        _, raw = check_value(value, definition.input_type)
    except ValueError as exc:
        if value is None:
            try:
                return check_value({}, definition.input_type)[1]
            except ValueError:
                pass
            raise InputError(
                f"Workflow `{definition.name}` needs input of type `{expected}` ({exc}); pass "
                "--input with a JSON object."
            ) from None
        raise InputError(
            f"Input for `{definition.name}` does not match `{expected}`: {exc}; pass input "
            f"matching `{expected}`."
        ) from None
    return raw


def input_decoder(definition: WorkflowDefinition, raw: bytes | None) -> Callable[[], Any]:
    """Return a function that decodes a fresh copy of the stored input on every call."""
    if raw is None:
        return lambda: None
    tp = definition.input_type
    return lambda: decode_value(raw, tp)


def render_once(
    definition: WorkflowDefinition,
    *,
    source: OutputSource,
    view: LoweringView | None,
    run_id: str,
    input_raw: bytes | None,
) -> tuple[Graph, Context]:
    """Call the build function once with a fresh `Context` and compile what it returns.

    Returns:
        The graph and the (sealed) context, whose ``reads`` are the render's dependencies.

    Raises:
        BuildError: When the build function raises something that is not a smithers error.
        CompileError, DefinitionError: For a bad tree or a bad prop.
    """
    ctx = Context(run_id=run_id, source=source, input_decode=input_decoder(definition, input_raw))
    return _build(definition, ctx, view), ctx


def _build(definition: WorkflowDefinition, ctx: Context, view: LoweringView | None) -> Graph:
    try:
        tree = definition.build(ctx)
    except DefinitionError as exc:
        # Construction errors cannot know where they happened; say which build it was.
        raise DefinitionError(
            f"{str(exc).rstrip('.')} (in the build function of `{definition.name}`)."
        ) from exc
    except SmithersError:
        raise
    except Exception as exc:
        where = raised_at(exc, definition.build)
        raise BuildError(
            f"The build function of `{definition.name}` raised {type(exc).__name__}: {exc}"
            + (f" (at {where})" if where else "")
        ) from exc
    finally:
        ctx.seal()
    if tree is None:
        raise CompileError(
            f"The build function of `{definition.name}` returned None; it must return "
            "Workflow(..., name=...)."
        )
    return compile_tree(tree, view=view)


class RenderSource(OutputSource, Protocol):
    """An `OutputSource` that learns types and loops from renders and can hide outputs."""

    types: dict[str, Any]
    hidden: frozenset[str]

    def learn(self, graph: Graph) -> None:
        """Adopt a render's output types and mounted loops."""


def render_settled(
    definition: WorkflowDefinition,
    *,
    source: RenderSource,
    view: LoweringView | None,
    run_id: str,
    input_raw: bytes | None,
) -> tuple[Graph, Context]:
    """Render until what the render assumed (output types, mounted loops) holds.

    A render may read an output before anything says what type it has (the first render of
    a resumed run, or `render` with plain data). If it then fails, the build is rendered
    once more as the run looked before those outputs existed: the nodes that produced them
    were mounted then, so that graph tells their types, and the real render follows. A
    render that read loop iterations before the loops were known is repeated once they are.

    Raises:
        The render's own error when it cannot be settled (at most a few passes).
    """
    hidden: set[str] = set()
    graph: Graph | None = None
    ctx: Context | None = None
    for _ in range(_MAX_PASSES):
        ctx = Context(
            run_id=run_id, source=source, input_decode=input_decoder(definition, input_raw)
        )
        before = source.iterations()
        source.hidden = frozenset(hidden)
        try:
            graph = _build(definition, ctx, view)
        except SmithersError:
            unknown = {n for n in ctx.untyped_reads if n not in source.types} - hidden
            if not unknown:
                raise
            hidden |= unknown  # render as before those outputs existed, to learn their types
            continue
        finally:
            source.hidden = frozenset()
        source.learn(graph)
        if hidden:
            if not hidden & source.types.keys():
                break  # nothing learned: the real render will raise its own error below
            hidden = set()
            continue
        retype = any(node_id in source.types for node_id in ctx.untyped_reads)
        moved = ctx.read_iterations and (ctx.provisional or source.iterations() != before)
        if not retype and not moved:
            return graph, ctx
    if hidden or graph is None or ctx is None:
        return render_once(definition, source=source, view=view, run_id=run_id, input_raw=input_raw)
    return graph, ctx


def render(
    definition: WorkflowDefinition,
    input: Any = None,
    *,
    outputs: Mapping[Any, Any] | None = None,
    run_id: str = "preview",
) -> Graph:
    """Render and compile a workflow without running anything.

    Args:
        definition: What ``@smithers`` made.
        input: The run input, validated into the definition's input type.
        outputs: Outputs to render against: node id (iteration ``()``) or
            ``(node_id, iteration)`` to value; plain data is converted into each node's
            output type.
        run_id: What ``ctx.run_id`` returns.

    Returns:
        The graph, with every loop at iteration 0.

    Raises:
        InputError: When ``input`` does not match the input type.
        DefinitionError, CompileError, BuildError: For a bad tree.
    """
    if not isinstance(definition, WorkflowDefinition):
        raise TypeError(f"render() takes what @smithers returns, got {type(definition).__name__}")
    raw = encode_input(definition, input)
    graph, _ = render_settled(
        definition, source=MappingSource(outputs), view=None, run_id=run_id, input_raw=raw
    )
    return graph
