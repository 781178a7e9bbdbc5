"""Can a run go on with this definition? The checks resume makes, runnable without writing.

Resume refuses a committed output that no longer decodes into its node's type, and a changed
source under which finished nodes of the last frame no longer mount with the same kind and
output type. `check_resumable` makes the same checks read-only, so a front end can refuse a
decision or a signal before recording it, instead of recording it and then failing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from smithers.compiler.codec import decode_value
from smithers.compiler.graph import Graph
from smithers.components.definition import WorkflowDefinition
from smithers.errors import OutputTypeChangedError, WorkflowChangedError
from smithers.runtime.loader import source_hash
from smithers.runtime.results import last_graph
from smithers.runtime.state import RunState
from smithers.runtime.view import RunView, render_run
from smithers.store.base import NodeKey, Store
from smithers.store.records import NodeRecord, RunRecord

__all__ = [
    "changed_message",
    "changed_refusal",
    "check_outputs",
    "check_resumable",
    "incompatible",
    "source_changed",
]


def source_changed(run: RunRecord) -> str | None:
    """The new source hash when the run's recorded source file changed, else None."""
    ref = run.definition
    current = source_hash(ref.path) if ref is not None else None
    if ref is None or current is None or current == ref.source_hash:
        return None
    return current


def incompatible(old: Graph, new: Graph, nodes: Mapping[NodeKey, NodeRecord]) -> list[str]:
    """The finished nodes of ``old`` that do not mount in ``new`` with the same kind and
    output type, each as a phrase (``"`build` is no longer mounted"``)."""
    changed = []
    for node in old.nodes:
        record = nodes.get((node.id, node.iteration))
        if record is None or record.state != "finished":
            continue
        fresh = new.by_id.get(node.id)
        if fresh is None:
            changed.append(f"`{node.id}` is no longer mounted")
        elif (fresh.kind, fresh.output_type) != (node.kind, node.output_type):
            changed.append(
                f"`{node.id}` was {node.kind} -> {node.output_type}, now "
                f"{fresh.kind} -> {fresh.output_type}"
            )
    return changed


def check_outputs(graph: Graph, outputs: Mapping[NodeKey, bytes], types: Mapping[str, Any]) -> None:
    """Refuse a committed output of a mounted node that no longer decodes into its type.

    Raises:
        OutputTypeChangedError: Naming the node, the type and the fix.
    """
    for node in graph.nodes:
        raw = outputs.get((node.id, node.iteration))
        if raw is None:
            continue
        try:
            decode_value(raw, types.get(node.id))
        except msgspec.ValidationError as exc:
            raise OutputTypeChangedError(
                f"The committed output of `{node.id}` no longer decodes into "
                f"`{node.output_type}` ({exc}); restore the old type or start a new run."
            ) from None


RESUME_FIX = "restore the source, or resume with --accept-workflow-change."


def changed_refusal(run_id: str, changed: list[str], fix: str = RESUME_FIX) -> WorkflowChangedError:
    """The error for an incompatible change (one message everywhere; ``fix`` names the
    options the refused command has)."""
    return WorkflowChangedError(
        f"The workflow source of run `{run_id}` changed and finished nodes no longer match: "
        f"{'; '.join(changed)}; {fix}"
    )


def changed_message(changed: list[str] | None) -> str:
    """The true sentence for a ``workflow.changed`` event: compatible, or accepted anyway."""
    if not changed:
        return (
            "The workflow's source changed since this run started; finished nodes still mount "
            "the same way, so it goes on."
        )
    return (
        "The workflow's source changed since this run started and finished nodes no longer "
        f"mount the same way ({'; '.join(changed)}); the change was accepted, so it goes on."
    )


def check_resumable(
    store: Store,
    run: RunRecord,
    definition: WorkflowDefinition,
    *,
    accept_workflow_change: bool = False,
    fix: str = RESUME_FIX,
) -> Graph | None:
    """Check that resuming ``run`` with ``definition`` would not be refused; write nothing.

    Renders the run's graph against its committed state, as resume does, then makes
    resume's checks: every committed output of a mounted node still decodes, and, when the
    recorded source changed, every finished node of the last frame still mounts with the
    same kind and output type.

    Args:
        store: The store holding the run.
        run: The run's record.
        definition: The definition a resume would use (loaded, or given with --workflow).
        accept_workflow_change: Skip the source-change check, as resume's option does.
        fix: The options to name in a refusal (those of the command that asked).

    Returns:
        The graph it rendered (what `current_graph` gives), or None for an unknown run.

    Raises:
        WorkflowChangedError: When finished nodes no longer match (unless accepted).
        OutputTypeChangedError: When a committed output no longer decodes.
        BuildError, CompileError, DefinitionError: When the build no longer renders.
    """
    snapshot = store.load(run.run_id)
    if snapshot is None:
        return None
    last = last_graph(store, snapshot.run)
    view = RunView(RunState(snapshot), last)
    graph, _ = render_run(definition, view, run.run_id, snapshot.run.input)
    check_outputs(graph, snapshot.outputs, view.types)
    if accept_workflow_change or last is None or source_changed(snapshot.run) is None:
        return graph
    changed = incompatible(last, graph, snapshot.nodes)
    if changed:
        raise changed_refusal(run.run_id, changed, fix)
    return graph
