"""The ``smithers`` command line (click). The only module that prints or exits.

Exit codes: 0 done, 1 run failed, 2 cancelled, 3 waiting (approval or signal), 4 user error,
130 interrupted. Every error is one ``Error: ...`` line on stderr.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import click
import msgspec

from smithers.errors import (
    InputError,
    LeaseLostError,
    LoadError,
    RunLockedError,
    SmithersError,
)
from smithers.runtime.lease import describe_owner
from smithers.runtime.report import iteration_text, plain
from smithers.store.base import need_run

EXIT = {
    "finished": 0,
    "failed": 1,
    "cancelled": 2,
    "waiting-approval": 3,
    "waiting-signal": 3,
    "running": 0,
}
USER_ERROR = 4
INTERRUPTED = 130
_JSON = msgspec.json.Encoder()


class _Fail(Exception):
    """Leave with one ``Error:`` line and an exit code."""

    def __init__(self, message: str, code: int = USER_ERROR) -> None:
        super().__init__(message)
        self.code = code


# -- shared options ----------------------------------------------------------------------------


class _Settings:
    def __init__(self) -> None:
        self.store: str | None = None
        self.as_json = False
        self.executing: str | None = None  # the run this process is executing, if any

    def store_path(self) -> tuple[str, bool]:
        """The store directory and whether the default rule found it (commands we print for
        other people then need no --store)."""
        from smithers.store.base import default_store_path

        if self.store:
            return os.path.abspath(self.store), False
        return default_store_path()

    def open(self, *, create: bool = False, readonly: bool = False) -> Any:
        from smithers.store import open_store

        path, _ = self.store_path()
        return open_store(path, create=create, readonly=readonly)

    def store_flag(self) -> str:
        path, by_default = self.store_path()
        return "" if by_default else f" --store {shlex.quote(path)}"


def _settings() -> _Settings:
    ctx = click.get_current_context()
    obj = ctx.find_root().obj
    assert isinstance(obj, _Settings)
    return obj


def _global_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--store and --json, accepted before or after the subcommand."""

    def remember_store(ctx: click.Context, _: click.Parameter, value: str | None) -> None:
        if value is not None:
            ctx.find_root().ensure_object(_Settings).store = value

    def remember_json(ctx: click.Context, _: click.Parameter, value: bool) -> None:
        if value:
            ctx.find_root().ensure_object(_Settings).as_json = True

    fn = click.option(
        "--json",
        "as_json_flag",
        is_flag=True,
        expose_value=False,
        callback=remember_json,
        help="Print one JSON document on stdout.",
    )(fn)
    return click.option(
        "--store",
        "store_opt",
        metavar="PATH",
        expose_value=False,
        callback=remember_store,
        envvar="SMITHERS_STORE",
        help="Store directory (default: nearest .smithers/ upwards).",
    )(fn)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@_global_options
@click.version_option(package_name="smithers", prog_name="smithers")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Durable, human-in-the-loop workflows written as component trees."""
    ctx.ensure_object(_Settings)


def main(argv: list[str] | None = None) -> NoReturn:
    """Run the CLI and exit with its code."""
    code = _invoke(argv)
    sys.stdout.flush()
    sys.exit(code)


def _invoke(argv: list[str] | None) -> int:
    settings = _Settings()
    try:
        result = cli.main(args=argv, prog_name="smithers", standalone_mode=False, obj=settings)
    except _Fail as exc:
        _error(str(exc))
        return exc.code
    except click.exceptions.Abort:
        # With standalone_mode=False click turns Ctrl-C (KeyboardInterrupt) into Abort.
        if settings.executing:
            _error(
                f"interrupted; run {settings.executing} stays resumable with "
                f"`smithers resume {settings.executing}`."
            )
        else:
            _error("interrupted; nothing more was done.")
        return INTERRUPTED
    except click.ClickException as exc:
        _error(_click_message(exc))
        return USER_ERROR
    except KeyboardInterrupt:  # outside click's own handling (e.g. while shutting down)
        _error("interrupted; nothing more was done.")
        return INTERRUPTED
    except RunLockedError as exc:
        _error(str(exc))
        return USER_ERROR
    except LeaseLostError as exc:
        _error(str(exc))
        return EXIT["failed"]
    except SmithersError as exc:
        _error(str(exc))
        return USER_ERROR
    return result if isinstance(result, int) else 0


def _click_message(exc: click.ClickException) -> str:
    message = exc.format_message()
    if isinstance(exc, click.UsageError) and exc.ctx is not None:
        return f"{message.rstrip('.')} (see `{exc.ctx.command_path} --help`)."
    return message


def _error(message: str) -> None:
    click.echo(f"Error: {' '.join(message.split())}", err=True)


def _out(text: str = "") -> None:
    click.echo(text)


def _out_lines(lines: list[str]) -> None:
    """Print many lines with one write (one echo per line is slow for a long inbox)."""
    click.echo("\n".join(lines))


def _emit_json(document: Any) -> None:
    click.echo(_JSON.encode(document).decode())


# -- parsing -----------------------------------------------------------------------------------


def _parse_json(value: str | None, what: str) -> Any:
    if value is None:
        return None
    text = value
    if value.startswith("@"):
        path = value[1:]
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise InputError(
                f"{what} file `{path}` cannot be read ({exc.strerror}); pass an existing JSON "
                "file as @file.json."
            ) from None
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise InputError(
            f"{what} {shown!r} is not valid JSON ({exc}); pass a JSON document or @file.json."
        ) from None


def _parse_iteration(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    if value == "":
        return ()
    try:
        parts = tuple(int(p) for p in value.split("."))
    except ValueError:
        parts = (-1,)
    if any(p < 0 for p in parts):
        raise _Fail(f"--iteration {value!r} is invalid; pass dot-separated numbers such as 1.0.")
    return parts


# -- progress ----------------------------------------------------------------------------------


def _progress(event: Any) -> None:
    """One stderr line per event worth a person's attention while a run executes."""
    from smithers.runtime.report import progress_line

    if event.type in ("run.started", "run.resumed"):
        _settings().executing = event.run_id
    line = progress_line(event)
    if line is not None:
        click.echo(line, err=True)


# -- results -----------------------------------------------------------------------------------


def _report(result: Any, *, note: str | None = None) -> int:
    """Print a run result (human or JSON) and return its exit code."""
    from smithers.runtime.report import result_document, result_lines

    settings = _settings()
    document = result_document(result, settings.store_flag(), note)
    if settings.as_json:
        _emit_json(document)
    else:
        _out_lines(result_lines(document))
    return EXIT.get(result.status, 0)


def _execute(coro: Any) -> Any:
    import asyncio  # only commands that execute a run pay for it

    return asyncio.run(coro)


# -- run / resume --------------------------------------------------------------------------------


@cli.command("run")
@click.argument("target", metavar="FILE[:ATTR]")
@click.option("--input", "input_", metavar="JSON|@FILE", help="The run's input.")
@click.option("--run-id", metavar="ID", help="The run's id (default: generated).")
@click.option(
    "--max-concurrency",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="The most tasks running at once.",
)
@_global_options
def run_cmd(target: str, input_: str | None, run_id: str | None, max_concurrency: int) -> int:
    """Run a workflow until it finishes, fails or waits for a person or a signal."""
    from smithers.compiler.render import render
    from smithers.components.element import is_valid_id
    from smithers.runtime.api import _start
    from smithers.runtime.loader import load_definition

    loaded = load_definition(target)
    value = _parse_json(input_, "--input")
    # A bad input or a tree that does not compile is refused before anything is written.
    render(loaded.definition, value)
    if run_id is not None and not is_valid_id(run_id):
        raise InputError(
            f"--run-id {run_id!r} is invalid; run ids must match [A-Za-z0-9_.:-]{{1,128}}."
        )
    store = _settings().open(create=True)
    try:
        result = _execute(
            _start(
                loaded.definition,
                value,
                store=store,
                run_id=run_id,
                max_concurrency=max_concurrency,
                on_event=_progress,
                handle_signals=True,
                loaded=loaded,
            )
        )
    finally:
        store.close()
    return _report(result)


def _load_for(run: Any, workflow: str | None, *, hint: str) -> Any:
    """The definition to resume a run with: --workflow, else what the run recorded."""
    from smithers.runtime.loader import load_definition, load_ref

    if workflow:
        return load_definition(workflow).definition  # the user's own FILE: its error as is
    try:
        if run.definition is None:
            raise LoadError("it recorded no definition")
        return load_ref(run.definition).definition
    except LoadError as exc:
        reason = str(exc).split("; ")[0].rstrip(".")  # keep the cause; the fix is below
        reason = reason[:1].lower() + reason[1:]
        raise _Fail(
            f"Cannot load the workflow run `{run.run_id}` was started from ({reason}); {hint}"
        ) from None


def _enter(run: Any) -> None:
    cwd = run.definition.cwd if run.definition is not None else None
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)


def _resume(store: Any, run: Any, definition: Any, *, accept: bool = False) -> Any:
    from smithers.runtime.api import _resume_loaded

    return _execute(
        _resume_loaded(
            store, run, definition, accept_change=accept, on_event=_progress, handle_signals=True
        )
    )


@cli.command("resume")
@click.argument("run_id")
@click.option("--workflow", metavar="FILE[:ATTR]", help="Load the definition from here.")
@click.option(
    "--accept-workflow-change",
    is_flag=True,
    help="Go on even if finished nodes no longer mount the same way.",
)
@_global_options
def resume_cmd(run_id: str, workflow: str | None, accept_workflow_change: bool) -> int:
    """Continue a run from this process (after a crash, a decision or a signal)."""
    from smithers.runtime.api import result_of
    from smithers.store.records import TERMINAL_RUN_STATUSES

    store = _settings().open()
    try:
        run = need_run(store, run_id)
        if run.status in TERMINAL_RUN_STATUSES:
            return _report(result_of(store, run_id))
        definition = _load_for(run, workflow, hint="pass --workflow FILE[:ATTR].")
        _enter(run)
        return _report(_resume(store, run, definition, accept=accept_workflow_change))
    finally:
        store.close()


# -- approve / deny / signal -------------------------------------------------------------------


def _decide_cmd(
    approved: bool,
    run_id: str,
    node: str | None,
    iteration: str | None,
    note: str | None,
    by: str | None,
    no_resume: bool,
    yes: bool,
    workflow: str | None,
) -> int:
    from smithers.errors import UnknownRunError
    from smithers.runtime.decisions import approve, deny, find_gate

    store = _settings().open()
    try:
        run = need_run(store, run_id, UnknownRunError)
        definition = None
        if not no_resume:
            definition = _load_for(
                run,
                workflow,
                hint="pass --no-resume to only record the decision, or --workflow FILE[:ATTR].",
            )
        gate, its = find_gate(store, run, node, _parse_iteration(iteration))
        if not yes and sys.stdin.isatty():
            _confirm(store, run_id, gate, its, approved)
        decide = approve if approved else deny
        record = decide(run_id, gate, note=note, by=by, iteration=its, store=store)
        verb = "Approved" if approved else "Denied"
        told = (
            f"{verb} `{gate}`{' iteration ' + iteration_text(its) if its else ''} of run {run_id} "
            f"as {record.decided_by}."
        )
        _enter(run)
        return _go_on(store, run_id, told, definition, no_resume=no_resume)
    finally:
        store.close()


def _go_on(store: Any, run_id: str, told: str, definition: Any, *, no_resume: bool) -> int:
    """After recording a decision or signal: stop (--no-resume), leave it to the live owner,
    or resume the run here and exit with its code."""
    from smithers.runtime.lease import is_dead

    fresh = store.get_run(run_id)
    if not no_resume and fresh.lease is not None and not is_dead(fresh.lease):
        told = f"{told} Its owner ({describe_owner(fresh.lease)}) will apply it."
    elif not no_resume:
        click.echo(told, err=True)
        try:
            return _report(_resume(store, fresh, definition))
        except RunLockedError as exc:  # another process started it a moment ago
            told = f"{told} {exc}"
    from smithers.runtime.api import result_of

    _report(result_of(store, run_id), note=told)
    return 0


def _confirm(store: Any, run_id: str, gate: str, its: tuple[int, ...], approved: bool) -> None:
    record = next(
        (a for a in store.approvals(run_id) if a.node_id == gate and a.iteration == its), None
    )
    if record is not None:
        request = record.request
        click.echo(
            f"Gate {gate}{' iteration ' + iteration_text(its) if its else ''} of run {run_id}",
            err=True,
        )
        click.echo(f"  {request.get('title', '')}", err=True)
        if request.get("summary"):
            click.echo(f"  {request['summary']}", err=True)
        for key, value in (request.get("metadata") or {}).items():
            click.echo(f"  {key}: {value}", err=True)
        click.echo(f"  waiting since {record.requested_at}", err=True)
    if not click.confirm("Approve it?" if approved else "Deny it?", err=True):
        raise _Fail("not confirmed; nothing was recorded.")


def _decision_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
        click.argument("run_id"),
        click.option("--node", metavar="NODE", help="The gate (optional with one requested)."),
        click.option("--iteration", metavar="I", help="The gate's loop iteration, e.g. 1.0."),
        click.option("--note", metavar="TEXT", help="Why; kept in the audit record."),
        click.option(
            "--by",
            metavar="NAME",
            help="Who decides (default $SMITHERS_ACTOR, else the OS user).",
        ),
        click.option("--no-resume", is_flag=True, help="Only record; do not resume the run."),
        click.option("--yes", is_flag=True, help="Do not ask for confirmation."),
        click.option("--workflow", metavar="FILE[:ATTR]", help="Resume with this definition."),
        _global_options,
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@cli.command("approve")
@_decision_options
def approve_cmd(
    run_id: str,
    node: str | None,
    iteration: str | None,
    note: str | None,
    by: str | None,
    no_resume: bool,
    yes: bool,
    workflow: str | None,
) -> int:
    """Approve a requested gate, then resume the run in this process."""
    return _decide_cmd(True, run_id, node, iteration, note, by, no_resume, yes, workflow)


@cli.command("deny")
@_decision_options
def deny_cmd(
    run_id: str,
    node: str | None,
    iteration: str | None,
    note: str | None,
    by: str | None,
    no_resume: bool,
    yes: bool,
    workflow: str | None,
) -> int:
    """Deny a requested gate (its on_deny decides what happens), then resume the run."""
    return _decide_cmd(False, run_id, node, iteration, note, by, no_resume, yes, workflow)


@cli.command("signal")
@click.argument("run_id")
@click.option("--node", required=True, metavar="NODE", help="The Signal's id.")
@click.option("--data", required=True, metavar="JSON|@FILE", help="The data to deliver.")
@click.option("--iteration", metavar="I", help="The Signal's loop iteration, e.g. 1.0.")
@click.option("--no-resume", is_flag=True, help="Only record; do not resume the run.")
@click.option("--workflow", metavar="FILE[:ATTR]", help="Resume with this definition.")
@_global_options
def signal_cmd(
    run_id: str, node: str, data: str, iteration: str | None, no_resume: bool, workflow: str | None
) -> int:
    """Deliver data to a Signal (even before the run reaches it), then resume the run."""
    from smithers.runtime.api import current_graph
    from smithers.runtime.decisions import signal

    value = _parse_json(data, "--data")
    store = _settings().open()
    try:
        run = need_run(store, run_id)
        graph = definition = None
        try:
            definition = _load_for(
                run,
                workflow,
                hint="pass --no-resume to only record the data, or --workflow FILE[:ATTR].",
            )
        except _Fail:
            if not no_resume:
                raise
        if definition is not None:  # validate the data before anything is written
            _enter(run)
            graph = current_graph(store, run_id, definition)
        signal(run_id, node, value, store=store, iteration=_parse_iteration(iteration), graph=graph)
        told = f"Delivered data to `{node}` of run {run_id}."
        if graph is None:
            click.echo(
                "Warning: the workflow could not be loaded, so the data was not validated; the "
                "run checks it when it reaches the signal and refuses it if it does not match.",
                err=True,
            )
        return _go_on(store, run_id, told, definition, no_resume=no_resume)
    finally:
        store.close()


@cli.command("cancel")
@click.argument("run_id")
@_global_options
def cancel_cmd(run_id: str) -> int:
    """Cancel a run: requested gates are withdrawn, waiting nodes cancelled."""
    from smithers.runtime.decisions import cancel

    store = _settings().open()
    try:
        result = cancel(run_id, store=store)
        note = None
        if result.status not in ("cancelled", "finished", "failed"):
            run = store.get_run(run_id)
            owner = describe_owner(run.lease) if run and run.lease else "its owner"
            note = f"Cancel requested; {owner} will stop run {run_id}."
        _report(result, note=note)
        return 0
    finally:
        store.close()


# -- inspection --------------------------------------------------------------------------------


def _frame(store: Any, run: Any) -> Any:
    from smithers.runtime.decisions import last_graph

    return last_graph(store, run)


@cli.command("status")
@click.argument("run_id")
@_global_options
def status_cmd(run_id: str) -> int:
    """Show a run: graph with node states, attempts, pending gates and past decisions."""
    from smithers.runtime.report import status_document, status_lines

    store = _settings().open(readonly=True)
    try:
        run = need_run(store, run_id)
        snapshot = store.load(run_id)
        graph = _frame(store, run)
        attempts = store.attempts(run_id)
        approvals = store.approvals(run_id)
        flag = _settings().store_flag()
        if _settings().as_json:
            _emit_json(status_document(run, snapshot, graph, attempts, approvals, flag))
        else:
            _out_lines(status_lines(run, snapshot, graph, attempts, approvals, flag))
        return 0
    finally:
        store.close()


@cli.command("output")
@click.argument("run_id")
@click.argument("node")
@click.option("--iteration", metavar="I", help="The loop iteration, e.g. 1.0.")
@_global_options
def output_cmd(run_id: str, node: str, iteration: str | None) -> int:
    """Print a node's committed output as JSON."""
    from smithers.compiler.codec import decode_value

    store = _settings().open(readonly=True)
    try:
        run = need_run(store, run_id)
        snapshot = store.load(run_id)
        its = _parse_iteration(iteration)
        found = sorted(k for k in snapshot.outputs if k[0] == node)
        graph = _frame(store, run)
        current = graph.by_id.get(node) if graph is not None else None
        if current is None and not found and not any(k[0] == node for k in snapshot.nodes):
            known = ", ".join(f"`{n.id}`" for n in (graph.nodes if graph else ()))
            raise _Fail(
                f"Run `{run_id}` has no node `{node}`"
                + (f"; its nodes: {known}." if known else ".")
            )
        if its is None:
            if current is not None and (node, current.iteration) in snapshot.outputs:
                its = current.iteration
            elif found:
                its = found[-1][1]
        if its is None or (node, its) not in snapshot.outputs:
            where = f" at iteration {iteration_text(its)}" if its else ""
            have = ", ".join(iteration_text(k[1]) or "()" for k in found)
            hint = (
                f"; it has outputs at iterations {have}"
                if found
                else f"; see `smithers status {run_id}`"
            )
            raise _Fail(f"Node `{node}` of run `{run_id}` has no output{where}{hint}.")
        value = decode_value(snapshot.outputs[(node, its)])
        click.echo(msgspec.json.format(_JSON.encode(value), indent=2).decode())
        return 0
    finally:
        store.close()


@cli.command("runs")
@click.option(
    "--status",
    type=click.Choice(
        ["running", "waiting-approval", "waiting-signal", "finished", "failed", "cancelled"]
    ),
)
@_global_options
def runs_cmd(status: str | None) -> int:
    """List runs (from the status index with --status)."""
    store = _settings().open(readonly=True)
    try:
        runs = store.runs(status)
        if _settings().as_json:
            _emit_json(
                [
                    {
                        "run_id": r.run_id,
                        "status": r.status,
                        "workflow": r.workflow,
                        "created_at": r.created_at,
                        "updated_at": r.updated_at,
                        "error": plain(r.error) if r.error else None,
                    }
                    for r in runs
                ]
            )
            return 0
        if not runs:
            _out("No runs" + (f" with status {status}." if status else "."))
            return 0
        width = max(len(r.run_id) for r in runs)
        for r in runs:
            _out(f"{r.run_id:<{width}}  {r.status:<16}  {r.workflow:<16}  {r.updated_at}")
        return 0
    finally:
        store.close()


@cli.command("approvals")
@_global_options
def approvals_cmd() -> int:
    """List every requested gate across runs, with its request and the commands to decide."""
    from smithers.runtime.report import gate_lines, gate_rows

    store = _settings().open(readonly=True)
    try:
        rows = gate_rows(store.requested_gates(), _settings().store_flag())
        if _settings().as_json:
            _emit_json(rows)
        else:
            _out_lines(gate_lines(rows))
        return 0
    finally:
        store.close()


def _follow(store: Any, run_id: str | None, after: int) -> Iterator[Any]:
    while True:
        events = store.events(after=after, run_id=run_id, limit=1000)
        yield from events
        if events:
            after = events[-1].seq
        else:
            time.sleep(0.2)


@cli.command("events")
@click.argument("run_id", required=False)
@click.option(
    "--after",
    type=int,
    default=0,
    show_default=True,
    metavar="SEQ",
    help="Only events after this sequence number.",
)
@click.option("--follow", is_flag=True, help="Keep printing new events (one per line).")
@_global_options
def events_cmd(run_id: str | None, after: int, follow: bool) -> int:
    """Print the durable event log (of one run, or all)."""
    from smithers.runtime.report import event_document, event_line

    store = _settings().open(readonly=True)
    try:
        if run_id is not None:
            need_run(store, run_id)
        as_json = _settings().as_json
        if follow:
            for event in _follow(store, run_id, after):
                click.echo(
                    _JSON.encode(event_document(event)).decode() if as_json else event_line(event)
                )
            return 0
        events = store.events(after=after, run_id=run_id)
        if as_json:
            _emit_json([event_document(e) for e in events])
        else:
            if events:
                _out_lines([event_line(event) for event in events])
        return 0
    finally:
        store.close()


@cli.command("graph")
@click.argument("target", metavar="FILE[:ATTR]", required=False)
@click.option("--input", "input_", metavar="JSON|@FILE", help="Render with this input.")
@click.option(
    "--run",
    "run_id",
    metavar="RUN_ID",
    help="Show that run's latest graph with node states (with FILE: render FILE "
    "against the run's outputs).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["tree", "json", "mermaid", "dot"]),
    default="tree",
    show_default=True,
)
@_global_options
def graph_cmd(target: str | None, input_: str | None, run_id: str | None, fmt: str) -> int:
    """Render a workflow's graph without running anything."""
    from smithers.runtime.report import node_states

    states = None
    if run_id is not None:
        store = _settings().open(readonly=True)
        try:
            run = need_run(store, run_id)
            snapshot = store.load(run_id)
            if target is not None:
                from smithers.runtime.api import current_graph
                from smithers.runtime.loader import load_definition

                graph = current_graph(store, run_id, load_definition(target).definition)
            else:
                graph = _frame(store, run)
                if graph is None:
                    raise _Fail(f"Run {run_id} has no graph yet.")
            states = node_states(snapshot, graph)
        finally:
            store.close()
    else:
        if target is None:
            raise _Fail("graph needs FILE[:ATTR], or --run RUN_ID (see `smithers graph --help`).")
        from smithers.compiler.render import render
        from smithers.runtime.loader import load_definition

        loaded = load_definition(target)
        graph = render(loaded.definition, _parse_json(input_, "--input"))
    if fmt == "json" or _settings().as_json:
        document = graph.to_dict()
        if states is not None:
            document["states"] = states
        click.echo(msgspec.json.format(_JSON.encode(document), indent=2).decode())
    elif fmt == "mermaid":
        click.echo(graph.to_mermaid(), nl=False)
    elif fmt == "dot":
        click.echo(graph.to_dot(), nl=False)
    else:
        _out(graph.to_text(states=states))
    return 0
