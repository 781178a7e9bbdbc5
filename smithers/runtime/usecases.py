"""The use cases every front end shares (the CLI today, the HTTP API next): start a run,
resume it, decide or signal and then go on, cancel. Each takes plain arguments and returns a
record; none prints, exits, or leaves the process in another working directory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from smithers.compiler.graph import Graph
from smithers.compiler.render import render
from smithers.components.definition import WorkflowDefinition
from smithers.errors import AlreadyDecidedError, LoadError, RunLockedError, UnknownRunError
from smithers.runtime.api import (
    EventSink,
    check_run_id,
    current_graph,
    resume_loaded,
    working_directory,
)
from smithers.runtime.compat import check_resumable
from smithers.runtime.decisions import cancel, find_gate, record_decision, signal
from smithers.runtime.documents import iteration_text, needs_resume, unapplied
from smithers.runtime.lease import describe_owner, is_dead
from smithers.runtime.loader import Loaded, load_definition, load_ref
from smithers.runtime.results import RunResult, result_of
from smithers.runtime.retry import retry_loaded
from smithers.runtime.schema import signal_schema
from smithers.store.base import Store, need_run
from smithers.store.records import TERMINAL_RUN_STATUSES, ApprovalRecord, Iteration, RunRecord

__all__ = [
    "Outcome",
    "cancel_run",
    "decide",
    "deliver",
    "expected_data",
    "load_for",
    "prepare_start",
    "resume_run",
    "retry_run",
]

Say = Callable[[str], None]
"""Where a use case sends a line for the person waiting (a front end prints it at once)."""

RESUME_HINT = "pass --workflow FILE[:ATTR]."
DECIDE_HINT = "pass --no-resume to only record the decision, or --workflow FILE[:ATTR]."
SIGNAL_HINT = "pass --no-resume to only record the data, or --workflow FILE[:ATTR]."
DECIDE_FIX = (
    "restore the source, pass --workflow FILE[:ATTR] with a definition that still fits, or "
    "pass --no-resume to only record the decision (then `smithers resume {run_id} "
    "--accept-workflow-change`)."
)
SIGNAL_FIX = DECIDE_FIX.replace("the decision", "the data")


@attrs.frozen
class Outcome:
    """What recording a decision, a signal or a cancel led to.

    Attributes:
        result: The run as it stands now.
        note: What was recorded and who applies it, for the person who asked.
        resumed: Whether this process went on with the run (its status is then final for
            this call: finished, failed, waiting again...).
    """

    result: RunResult
    note: str | None
    resumed: bool


def _quiet(_: str) -> None:
    return None


def load_for(run: RunRecord, workflow: str | None, *, hint: str) -> WorkflowDefinition:
    """The definition to go on with: ``workflow`` (FILE[:ATTR]), else what the run recorded.

    Raises:
        LoadError: Naming the cause and ``hint`` (the fix).
    """
    if workflow:
        return load_definition(workflow).definition  # the user's own FILE: its error as is
    try:
        if run.definition is None:
            raise LoadError("it recorded no definition")
        return load_ref(run.definition).definition
    except LoadError as exc:
        reason = str(exc).split("; ")[0].rstrip(".")  # keep the cause; the fix is the hint
        reason = reason[:1].lower() + reason[1:]
        raise LoadError(
            f"Cannot load the workflow run `{run.run_id}` was started from ({reason}); {hint}"
        ) from None


def _cwd(run: RunRecord) -> str | None:
    return run.definition.cwd if run.definition is not None else None


def _check_goes_on(
    store: Store, run: RunRecord, definition: WorkflowDefinition, fix: str
) -> Graph | None:
    """Refuse, before anything is recorded, a definition the resume that follows would
    refuse (a decision is final: a command that exits 4 must have written nothing); the
    run's graph as rendered for the check."""
    with working_directory(_cwd(run)):
        fix = f"nothing was recorded; {fix.format(run_id=run.run_id)}"
        return check_resumable(store, run, definition, fix=fix)


# -- start / resume ----------------------------------------------------------------------------


def prepare_start(target: str, input: Any, run_id: str | None) -> Loaded:
    """Load FILE[:ATTR] and refuse a bad input, tree or run id before anything is written.

    Raises:
        LoadError, InputError, DefinitionError, CompileError, BuildError.
    """
    loaded = load_definition(target)
    render(loaded.definition, input)
    if run_id is not None:
        check_run_id(run_id, "--run-id")
    return loaded


async def resume_run(
    store: Store,
    run_id: str,
    *,
    workflow: str | None = None,
    accept_change: bool = False,
    on_event: EventSink | None = None,
    handle_signals: bool = False,
) -> RunResult:
    """Go on with a run in this process, in its working directory; an ended run's result is
    returned and nothing runs.

    Raises:
        RunNotFoundError, LoadError, RunLockedError, WorkflowChangedError,
        OutputTypeChangedError.
    """
    run = need_run(store, run_id)
    if run.status in TERMINAL_RUN_STATUSES:
        return result_of(store, run_id)
    definition = load_for(run, workflow, hint=RESUME_HINT)
    with working_directory(_cwd(run)):
        return await resume_loaded(
            store,
            run,
            definition,
            accept_change=accept_change,
            on_event=on_event,
            handle_signals=handle_signals,
        )


async def retry_run(
    store: Store,
    run_id: str,
    *,
    node: str | None = None,
    workflow: str | None = None,
    on_event: EventSink | None = None,
    handle_signals: bool = False,
) -> RunResult:
    """Re-run a failed run's failed nodes, keeping every finished output (see `retry`).

    Raises:
        RunNotFoundError, InputError, LoadError, WorkflowChangedError, RunLockedError:
        nothing was written.
    """
    run = need_run(store, run_id)
    definition = load_for(run, workflow, hint=RESUME_HINT)
    return await retry_loaded(
        run_id,
        node=node,
        store=store,
        definition=definition,
        on_event=on_event,
        handle_signals=handle_signals,
    )


async def _go_on(
    store: Store,
    run: RunRecord,
    told: str,
    definition: WorkflowDefinition | None,
    *,
    say: Say,
    on_event: EventSink | None,
    handle_signals: bool,
) -> Outcome:
    """After recording a decision or signal (``run`` as the recording left it): stop (no
    definition: record only), leave it to the live owner, or resume the run here."""
    run_id = run.run_id
    if definition is not None:
        fresh = run
        if fresh.lease is not None and not is_dead(fresh.lease):
            told = f"{told} Its owner ({describe_owner(fresh.lease)}) will apply it."
        else:
            say(told)
            try:
                with working_directory(_cwd(fresh)):
                    result = await resume_loaded(
                        store,
                        fresh,
                        definition,
                        accept_change=False,
                        on_event=on_event,
                        handle_signals=handle_signals,
                    )
                return Outcome(result, None, True)
            except RunLockedError as exc:  # another process started it a moment ago
                told = f"{told} {exc}"
    return Outcome(result_of(store, run_id), told, False)


# -- decide / signal / cancel ------------------------------------------------------------------


async def decide(
    store: Store,
    run_id: str,
    *,
    approved: bool,
    node_id: str | None,
    iteration: Iteration | None,
    note: str | None = None,
    by: str | None = None,
    resume: bool = True,
    workflow: str | None = None,
    confirm: Callable[[str, Iteration, ApprovalRecord | None], None] | None = None,
    say: Say = _quiet,
    on_event: EventSink | None = None,
    handle_signals: bool = False,
) -> Outcome:
    """Approve or deny a requested gate, then go on with the run (unless ``resume`` is
    False, or a live owner will apply it).

    ``confirm(gate, iteration, record)`` is called before anything is written; it raises to
    stop (a front end asking a person).

    Raises:
        UnknownRunError, LoadError, and the `ApprovalError` family: nothing was written.
    """
    run = need_run(store, run_id, UnknownRunError)
    definition = None
    if resume:
        definition = load_for(run, workflow, hint=DECIDE_HINT)
        _check_goes_on(store, run, definition, DECIDE_FIX)
    gate, its = find_gate(store, run, node_id, iteration)
    if confirm is not None:
        record = next(
            (a for a in store.approvals(run_id) if a.node_id == gate and a.iteration == its),
            None,
        )
        confirm(gate, its, record)
    try:
        decided, fresh = record_decision(store, run_id, gate, its, approved, note=note, by=by)
    except AlreadyDecidedError as exc:
        raise _with_resume_hint(store, run_id, gate, its, exc) from None
    verb = "Approved" if approved else "Denied"
    where = f" iteration {iteration_text(its)}" if its else ""
    if decided.status == "requested":  # a vote short of the quorum: nothing to apply yet
        votes = sum(1 for v in decided.votes if v["approved"])
        quorum = (decided.policy or {}).get("quorum", 1)
        voter = decided.votes[-1]["by"]
        told = (
            f"Recorded {voter}'s approval of `{gate}`{where} of run {run_id} ({votes} of "
            f"{quorum} approvals); the gate waits for more."
        )
        return Outcome(result_of(store, run_id), told, False)
    told = f"{verb} `{gate}`{where} of run {run_id} as {decided.decided_by}."
    return await _go_on(
        store,
        fresh,
        told,
        definition,
        say=say,
        on_event=on_event,
        handle_signals=handle_signals,
    )


def _with_resume_hint(
    store: Store, run_id: str, gate: str, its: Iteration, exc: AlreadyDecidedError
) -> AlreadyDecidedError:
    """An "already decided" refusal that also says when the decision waits to be applied
    (its recorder stopped before resuming) and how to apply it."""
    snapshot = store.load(run_id)
    if snapshot is None or not needs_resume(snapshot.run, snapshot):
        return exc
    if (gate, its) not in {(a.node_id, a.iteration) for a in unapplied(snapshot)}:
        return exc
    message = str(exc).rstrip(".")
    return AlreadyDecidedError(
        f"{message}; that decision is not applied yet: go on with `smithers resume {run_id}`."
    )


async def deliver(
    store: Store,
    run_id: str,
    node_id: str,
    data: Any,
    *,
    iteration: Iteration | None = None,
    resume: bool = True,
    workflow: str | None = None,
    say: Say = _quiet,
    on_event: EventSink | None = None,
    handle_signals: bool = False,
) -> Outcome:
    """Deliver data to a Signal (validated first whenever the definition loads), then go on
    with the run (unless ``resume`` is False, or a live owner will apply it).

    Raises:
        RunNotFoundError, LoadError (only when resuming), and the `SignalError` family:
        nothing was written.
    """
    run = need_run(store, run_id)
    graph = definition = None
    try:
        definition = load_for(run, workflow, hint=SIGNAL_HINT)
    except LoadError:
        if resume:
            raise
    if definition is not None:  # validate the data before anything is written
        if resume:  # the check renders the graph the data is validated against
            graph = _check_goes_on(store, run, definition, SIGNAL_FIX)
        if graph is None:
            with working_directory(_cwd(run)):
                graph = current_graph(store, run_id, definition)
    signal(run_id, node_id, data, store=store, iteration=iteration, graph=graph)
    run = need_run(store, run_id)  # as the delivery left it: who owns it now
    if graph is None:
        say(
            "Warning: the workflow could not be loaded, so the data was not validated; the "
            "run checks it when it reaches the signal and refuses it if it does not match."
        )
    told = f"Delivered data to `{node_id}` of run {run_id}."
    return await _go_on(
        store,
        run,
        told,
        definition if resume else None,
        say=say,
        on_event=on_event,
        handle_signals=handle_signals,
    )


def expected_data(
    store: Store, run_id: str, node_id: str, *, workflow: str | None = None
) -> dict[str, Any]:
    """The JSON Schema of the data a Signal of the run takes (``signal --schema``).

    Raises:
        RunNotFoundError, LoadError, UnknownNodeError, NotASignalError.
    """
    run = need_run(store, run_id)
    definition = load_for(run, workflow, hint=RESUME_HINT)
    with working_directory(_cwd(run)):
        return signal_schema(current_graph(store, run_id, definition), node_id)


def cancel_run(store: Store, run_id: str) -> Outcome:
    """Cancel a run: at once with no live owner, else its owner stops it.

    Raises:
        RunNotFoundError: For an unknown run.
    """
    result = cancel(run_id, store=store)
    note = None
    if result.status not in TERMINAL_RUN_STATUSES:
        run = store.get_run(run_id)
        owner = describe_owner(run.lease) if run and run.lease else "its owner"
        note = f"Cancel requested; {owner} will stop run {run_id}."
    return Outcome(result, note, False)
