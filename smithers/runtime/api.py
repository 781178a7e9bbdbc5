"""The Python API for executing runs: `run`, `resume`, `arun`, `aresume` and `RunResult`."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from smithers.compiler.graph import Graph
from smithers.compiler.render import encode_input, input_decoder
from smithers.components.definition import WorkflowDefinition
from smithers.components.element import is_valid_id
from smithers.errors import ConcurrencyLimitError, InputError, SmithersError
from smithers.runtime.committer import committer_for
from smithers.runtime.concurrency import admit, key_of, promote_queued
from smithers.runtime.engine import Engine
from smithers.runtime.lease import is_dead, new_lease, now_iso, os_user
from smithers.runtime.loader import Loaded, load_ref, source_hash
from smithers.runtime.results import (
    PendingNode,
    RunError,
    RunResult,
    last_graph,
    resolve_store,
    result_of,
)
from smithers.runtime.state import RunState
from smithers.runtime.view import RunView, render_run
from smithers.store.base import Batch, Store, need_run, run_not_found
from smithers.store.records import (
    TERMINAL_RUN_STATUSES,
    DefinitionRef,
    EventRecord,
    NewEvent,
    RunRecord,
)

__all__ = [
    "EventSink",
    "PendingNode",
    "RunError",
    "RunResult",
    "aresume",
    "arun",
    "check_run_id",
    "current_graph",
    "resolve_store",
    "result_of",
    "resume",
    "resume_loaded",
    "run",
    "run_in_loop",
    "start_run",
    "working_directory",
]

EventSink = Callable[[EventRecord], None]


def current_graph(store: Store, run_id: str, definition: WorkflowDefinition) -> Graph:
    """Render a run's graph now, against its committed state, with its callables."""
    snapshot = store.load(run_id)
    if snapshot is None:
        raise run_not_found(store, run_id)
    view = RunView(RunState(snapshot), last_graph(store, snapshot.run))
    return render_run(definition, view, run_id, snapshot.run.input)[0]


def check_run_id(run_id: str, what: str) -> None:
    """Refuse a run id that is malformed, or that a command line would read as an option.

    Raises:
        InputError: Naming the id, ``what`` gave it, and the rule.
    """
    if not is_valid_id(run_id):
        raise InputError(
            f"{what} {run_id!r} is invalid; run ids must match [A-Za-z0-9_.:-]{{1,128}}."
        )
    if run_id.startswith("-"):
        raise InputError(
            f"{what} {run_id!r} is invalid; a run id may not begin with `-` (commands would "
            "read it as an option)."
        )


def _check_render() -> bool:
    return os.environ.get("SMITHERS_CHECK_RENDER", "") not in ("", "0")


def _ref_of(definition: WorkflowDefinition) -> DefinitionRef:
    """Where a definition passed from Python lives, so a later resume can find it."""
    module = inspect.getmodule(definition.build)
    path = inspect.getsourcefile(definition.build) if module else None
    attr = None
    if module is not None:
        attr = next((k for k, v in vars(module).items() if v is definition), None)
    name = module.__name__ if module is not None else None
    if name is not None and (name == "__main__" or name.startswith("_smithers_workflow_")):
        name = None  # not importable by name: resume loads the file
    return DefinitionRef(
        path=path, attr=attr, module=name, cwd=os.getcwd(), source_hash=source_hash(path)
    )


def run_in_loop(coro: Any, what: str) -> Any:
    """Run a coroutine of a sync API function (`run`, `resume`, `retry`) to its end; refuse
    inside a running event loop, naming the async twin."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    coro.close()
    raise RuntimeError(f"{what}() was called inside a running event loop; await a{what}(...).")


def run(
    definition: WorkflowDefinition,
    input: Any = None,
    *,
    store: Store | str | None = None,
    run_id: str | None = None,
    max_concurrency: int = 8,
    on_event: EventSink | None = None,
    by: str | None = None,
) -> RunResult:
    """Start a run and execute it until it finishes, fails or waits for a person or signal.

    Every output is committed as it is produced; SIGINT/SIGTERM stop starting nodes, record
    in-flight attempts as interrupted and leave the run resumable (``KeyboardInterrupt``).

    Args:
        definition: What ``@smithers`` made.
        input: The run input, validated into the definition's input type.
        store: A store, a store directory, or None for the default store.
        run_id: The run's id (``[A-Za-z0-9_.:-]{1,128}``); generated when None.
        max_concurrency: The most tasks running at once in this run.
        on_event: Called with every event after it is committed (progress output).
        by: Who starts the run (recorded; ``forbid_self`` gates refuse them); defaults to
            ``$SMITHERS_ACTOR``, else the OS user.

    Returns:
        The run's result.

    Raises:
        InputError: Bad input, a bad or taken run id, or a bad max_concurrency.
        RuntimeError: When called inside a running event loop (use `arun`).
    """
    return run_in_loop(  # type: ignore[no-any-return]
        start_run(
            definition,
            input,
            store=store,
            run_id=run_id,
            max_concurrency=max_concurrency,
            on_event=on_event,
            handle_signals=True,
            loaded=None,
            by=by,
        ),
        "run",
    )


async def arun(
    definition: WorkflowDefinition,
    input: Any = None,
    *,
    store: Store | str | None = None,
    run_id: str | None = None,
    max_concurrency: int = 8,
    on_event: EventSink | None = None,
    by: str | None = None,
) -> RunResult:
    """`run` for callers inside an event loop (signal handlers are left alone)."""
    return await start_run(
        definition,
        input,
        store=store,
        run_id=run_id,
        max_concurrency=max_concurrency,
        on_event=on_event,
        handle_signals=False,
        loaded=None,
        by=by,
    )


async def start_run(
    definition: WorkflowDefinition,
    input: Any,
    *,
    store: Store | str | None,
    run_id: str | None,
    max_concurrency: int,
    on_event: EventSink | None,
    handle_signals: bool,
    loaded: Loaded | None,
    by: str | None = None,
) -> RunResult:
    """Create a run and drive it: what `run`, `arun` and every front end's start share.

    ``loaded`` says where the definition came from (the CLI loads it from a file); without
    it the definition's module is recorded so a later resume can find it.
    """
    if not isinstance(definition, WorkflowDefinition):
        raise TypeError(f"run() takes what @smithers returns, got {type(definition).__name__}")
    if run_id is not None:
        check_run_id(run_id, "Run id")
    if (
        isinstance(max_concurrency, bool)
        or not isinstance(max_concurrency, int)
        or (max_concurrency < 1)
    ):
        raise InputError(f"max_concurrency={max_concurrency!r} is invalid; pass an int >= 1.")
    raw = encode_input(definition, input)
    with resolve_store(store) as opened:
        rid = run_id or f"{definition.name}-{secrets.token_hex(3)}"
        key = key_of(definition, input_decoder(definition, raw)())
        behind = None if key is None else admit(opened, definition, key, rid)
        if behind is not None:
            return await _queue(opened, definition, rid, raw, key, behind, loaded, by)
        lease = msgspec.structs.replace(new_lease(), epoch=1)
        now = now_iso()
        record = RunRecord(
            run_id=rid,
            workflow=definition.name,
            status="running",
            created_at=now,
            updated_at=now,
            definition=loaded.ref if loaded else _ref_of(definition),
            input=raw,
            max_concurrency=max_concurrency,
            lease=lease,
            epoch=1,
            started_by=by or os.environ.get("SMITHERS_ACTOR") or os_user(),
            concurrency_key=key,
            concurrency_limit=definition.concurrency_limit,
        )
        batch = Batch(
            events=[
                NewEvent(
                    type="run.started",
                    at=now,
                    data={
                        "workflow": definition.name,
                        "pid": lease.pid,
                        "by": record.started_by,
                    },
                )
            ]
        )
        try:
            await committer_for(opened).create(record, batch)  # grouped when others run
        except ConcurrencyLimitError as exc:  # another process took the last slot meanwhile
            if definition.on_limit == "reject" or exc.ahead is None:
                raise
            return await _queue(opened, definition, rid, raw, key, exc.ahead, loaded, by)
        if on_event is not None:
            for event in opened.events(run_id=rid):
                on_event(event)
        return await _drive(
            opened, definition, rid, lease, on_event=on_event, handle_signals=handle_signals
        )


async def _queue(
    store: Store,
    definition: WorkflowDefinition,
    run_id: str,
    raw: bytes,
    key: str | None,
    behind: str,
    loaded: Loaded | None,
    by: str | None,
) -> RunResult:
    """Create a ``queued`` run (no owner) behind run ``behind`` on concurrency key ``key``."""
    now = now_iso()
    record = RunRecord(
        run_id=run_id,
        workflow=definition.name,
        status="queued",
        created_at=now,
        updated_at=now,
        definition=loaded.ref if loaded else _ref_of(definition),
        input=raw,
        started_by=by or os.environ.get("SMITHERS_ACTOR") or os_user(),
        concurrency_key=key,
        concurrency_limit=definition.concurrency_limit,
    )
    data = {"workflow": definition.name, "key": key, "behind": behind}
    store.create_run(record, Batch(events=[NewEvent(type="run.queued", at=now, data=data)]))
    return result_of(store, run_id)


async def _start_next(store: Store, key: str) -> None:
    """The run just ended: start the queued runs on its key that now fit, in this process."""
    from smithers.runtime.usecases import resume_run

    for run_id in promote_queued(store, key):
        with contextlib.suppress(SmithersError):  # another process took it: it goes on there
            await resume_run(store, run_id)


async def _drive(
    store: Store,
    definition: WorkflowDefinition,
    run_id: str,
    lease: Any,
    *,
    on_event: EventSink | None,
    handle_signals: bool,
    previous: Graph | None = None,
    resumed: bool = False,
    accept_change: bool = False,
) -> RunResult:
    snapshot = store.load(run_id)
    assert snapshot is not None
    engine = Engine(
        store=store,
        definition=definition,
        state=RunState(snapshot),
        lease=lease,
        last_graph=previous,
        attempts=store.attempts(run_id) if resumed else None,
        check_render=_check_render(),
        on_event=on_event,
        handle_signals=handle_signals,
        verify_resume=resumed,
        accept_change=accept_change,
    )
    state = await engine.drive()
    # Everything is committed when drive returns: the mirror is what a fresh load would read.
    assert not state.has_changes()
    result = result_of(store, run_id, engine.graph, state.snapshot())
    ended = store.get_run(run_id)
    if ended is not None and ended.concurrency_key and ended.status in TERMINAL_RUN_STATUSES:
        await _start_next(store, ended.concurrency_key)
    return result


def resume(
    run_id: str,
    *,
    store: Store | str | None = None,
    definition: WorkflowDefinition | None = None,
    accept_workflow_change: bool = False,
    on_event: EventSink | None = None,
) -> RunResult:
    """Continue a run from a new process: only its id is needed.

    Loads the definition the run recorded (or uses ``definition``) and runs in the run's
    working directory. A finished or failed run's result is returned and nothing runs.

    Args:
        run_id: The run's id.
        store: A store, a store directory, or None for the default store.
        definition: Use this definition instead of the recorded one.
        accept_workflow_change: Go on even if finished nodes no longer mount the same way.
        on_event: Called with every event after it is committed.

    Raises:
        RunNotFoundError: For an unknown run id.
        RunLockedError: When a live process owns the run.
        LoadError: When the recorded definition cannot be loaded.
        WorkflowChangedError: When the source changed incompatibly.
        OutputTypeChangedError: When a committed output no longer decodes.
    """
    return run_in_loop(  # type: ignore[no-any-return]
        _resume(
            run_id,
            store=store,
            definition=definition,
            accept_change=accept_workflow_change,
            on_event=on_event,
            handle_signals=True,
        ),
        "resume",
    )


async def aresume(
    run_id: str,
    *,
    store: Store | str | None = None,
    definition: WorkflowDefinition | None = None,
    accept_workflow_change: bool = False,
    on_event: EventSink | None = None,
) -> RunResult:
    """`resume` for callers inside an event loop."""
    return await _resume(
        run_id,
        store=store,
        definition=definition,
        accept_change=accept_workflow_change,
        on_event=on_event,
        handle_signals=False,
    )


@contextlib.contextmanager
def working_directory(path: str | None) -> Iterator[None]:
    """Run the body in ``path`` (a run's recorded working directory), then change back."""
    if not path or not os.path.isdir(path) or os.path.abspath(path) == os.getcwd():
        yield
        return
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


async def _resume(
    run_id: str,
    *,
    store: Store | str | None,
    definition: WorkflowDefinition | None,
    accept_change: bool,
    on_event: EventSink | None,
    handle_signals: bool,
) -> RunResult:
    with resolve_store(store) as opened:
        run = need_run(opened, run_id)
        if run.status in TERMINAL_RUN_STATUSES:
            return result_of(opened, run_id)
        ref = run.definition
        with working_directory(ref.cwd if ref else None):
            if definition is None:
                if ref is None:
                    raise InputError(f"Run `{run_id}` recorded no definition; pass one.")
                definition = load_ref(ref).definition
            return await resume_loaded(
                opened,
                run,
                definition,
                accept_change=accept_change,
                on_event=on_event,
                handle_signals=handle_signals,
            )


async def resume_loaded(
    store: Store,
    run: RunRecord,
    definition: WorkflowDefinition,
    *,
    accept_change: bool,
    on_event: EventSink | None,
    handle_signals: bool,
) -> RunResult:
    """Take the run's lease and drive it with an already loaded definition.

    Raises:
        RunLockedError: When a live process owns the run.
        WorkflowChangedError, OutputTypeChangedError: When the definition no longer fits.
    """
    run_id = run.run_id
    if run.status == "queued":  # it waits for its concurrency key; promotion starts it
        return result_of(store, run_id)
    # Only the lease is taken here; the run turns `running` (with `run.resumed`) in the
    # engine's first commit, after the resume checks, so a refused resume changes nothing.
    claimed = store.acquire(run_id, new_lease(), is_dead=is_dead, batch=Batch())
    if claimed.status in TERMINAL_RUN_STATUSES:
        return result_of(store, run_id)
    assert claimed.lease is not None
    return await _drive(
        store,
        definition,
        run_id,
        claimed.lease,
        on_event=on_event,
        handle_signals=handle_signals,
        previous=last_graph(store, claimed),
        resumed=True,
        accept_change=accept_change,
    )
