"""The ``smithers`` command line (click). The only module that prints or exits.

Exit codes: 0 done, 1 run failed, 2 cancelled, 3 waiting (approval or signal), 4 user error,
130 interrupted. Every error is one ``Error: ...`` line on stderr.
"""

from __future__ import annotations

import asyncio
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
    RunNotFoundError,
    SmithersError,
)

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


def _plain(value: Any) -> Any:
    """A record as JSON-able builtins under its Python field names (not its wire names)."""
    if isinstance(value, msgspec.Struct):
        return {name: _plain(getattr(value, name)) for name in value.__struct_fields__}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


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


def _its(iteration: tuple[int, ...] | None) -> str:
    return ".".join(map(str, iteration)) if iteration else ""


# -- progress ----------------------------------------------------------------------------------


def _progress(event: Any) -> None:
    """One stderr line per event worth a person's attention while a run executes."""
    if event.type in ("run.started", "run.resumed"):
        _settings().executing = event.run_id
    data = event.data
    node = (event.node_id or "") + (f"@{_its(event.iteration)}" if event.iteration else "")
    line = None
    if event.type == "node.started":
        line = f"  started   {node} (attempt {data.get('attempt', 1)})"
    elif event.type == "node.finished":
        ms = data.get("duration_ms")
        took = f" in {ms:.0f} ms" if isinstance(ms, int | float) else ""
        line = f"  finished  {node}{took}"
    elif event.type == "node.failed":
        line = f"  failed    {node}: {data.get('error', '')}"
    elif event.type == "node.retrying":
        line = (
            f"  retrying  {node} in {data.get('delay', 0):g} s (attempt "
            f"{data.get('attempt')} failed: {data.get('error', '')})"
        )
    elif event.type == "node.skipped":
        line = f"  skipped   {node} ({data.get('reason', '')})"
    elif event.type == "node.cancelled":
        line = f"  cancelled {node} ({data.get('reason', '')})"
    elif event.type == "node.interrupted":
        line = f"  interrupted {node} (attempt {data.get('attempt')}); it will run again"
    elif event.type == "approval.requested":
        title = (data.get("request") or {}).get("title", "")
        line = f"  waiting   {node} for approval: {title}"
    elif event.type == "signal.waiting":
        line = f"  waiting   {node} for a signal"
    elif event.type == "workflow.changed":
        line = (
            "Warning: the workflow's source changed since this run started; finished "
            "nodes still mount the same way, so it goes on."
        )
    elif event.type in ("run.started", "run.resumed"):
        verb = "started" if event.type == "run.started" else "resumed"
        line = f"Run {event.run_id} {verb} (pid {data.get('pid')})"
    if line is not None:
        click.echo(line, err=True)


# -- results -----------------------------------------------------------------------------------


def _commands(
    run_id: str, node_id: str, iteration: tuple[int, ...], kind: str, flag: str
) -> dict[str, str | None]:
    """The exact commands that decide a gate or feed a signal."""
    its = f" --iteration {_its(iteration)}" if iteration else ""
    base = f"{shlex.quote(run_id)} --node {shlex.quote(node_id)}{its}{flag}"
    if kind == "approval":
        return {
            "approve_command": f"smithers approve {base}",
            "deny_command": f"smithers deny {base}",
            "signal_command": None,
        }
    return {
        "approve_command": None,
        "deny_command": None,
        "signal_command": f"smithers signal {base} --data '<json>'",
    }


def _report(result: Any, *, note: str | None = None) -> int:
    """Print a run result (human or JSON) and return its exit code."""
    settings = _settings()
    flag = settings.store_flag()
    pending = [
        {
            "node_id": p.node_id,
            "iteration": list(p.iteration),
            "kind": p.kind,
            "request": msgspec.to_builtins(p.request) if p.request is not None else None,
            "waiting_since": p.waiting_since,
            "decision": msgspec.to_builtins(p.decision) if p.decision is not None else None,
            **(
                _commands(result.run_id, p.node_id, p.iteration, p.kind, flag)
                if p.decision is None  # a decided gate takes no second decision
                else {"approve_command": None, "deny_command": None, "signal_command": None}
            ),
        }
        for p in result.pending
    ]
    if settings.as_json:
        error = None
        if result.error is not None:
            error = {
                "type": result.error.type,
                "message": result.error.message,
                "node_id": result.error.node_id,
            }
        document = {
            "run_id": result.run_id,
            "status": result.status,
            "error": error,
            "pending": pending,
        }
        if note:
            document["note"] = note
        _emit_json(document)
    else:
        if note:
            _out(note)
        _out(f"Run {result.run_id} {_status_words(result.status)}.")
        if result.error is not None:
            where = f" at `{result.error.node_id}`" if result.error.node_id else ""
            _out(f"  {result.error.type}{where}: {result.error.message}")
        for item in pending:
            node = item["node_id"] + (
                f" (iteration {_its(tuple(item['iteration']))})" if item["iteration"] else ""
            )
            if item["kind"] == "approval":
                request = item["request"] or {}
                _out(f"  {node}: {request.get('title', '')}")
                if request.get("summary"):
                    _out(f"    {request['summary']}")
                decision = item["decision"]
                if decision is not None:
                    verb = "approved" if decision["approved"] else "denied"
                    _out(
                        f"  {verb} by {decision['decided_by']}; the run applies it when it goes on"
                    )
                    continue
                _out(f'  approve: {item["approve_command"]} --note "..."')
                _out(f'  deny:    {item["deny_command"]} --note "..."')
            else:
                _out(f"  {node}: waiting for a signal")
                _out(f"  deliver: {item['signal_command']}")
    return EXIT.get(result.status, 0)


def _status_words(status: str) -> str:
    return {
        "finished": "finished",
        "failed": "failed",
        "cancelled": "was cancelled",
        "waiting-approval": "is waiting for approval",
        "waiting-signal": "is waiting for a signal",
        "running": "is running",
    }.get(status, status)


def _execute(coro: Any) -> Any:
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


def _need_run(store: Any, run_id: str) -> Any:
    run = store.get_run(run_id)
    if run is None:
        raise RunNotFoundError(
            f"No run `{run_id}` in the store at {store.path}; list runs with `smithers runs`."
        )
    return run


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
        run = _need_run(store, run_id)
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
    from smithers.runtime.lease import is_dead

    store = _settings().open()
    try:
        run = store.get_run(run_id)
        if run is None:
            raise UnknownRunError(
                f"No run `{run_id}` in the store at {store.path}; list runs with `smithers runs`."
            )
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
            f"{verb} `{gate}`{' iteration ' + _its(its) if its else ''} of run {run_id} "
            f"as {record.decided_by}."
        )
        if no_resume:
            return _report_recorded(store, run_id, told)
        fresh = store.get_run(run_id)
        if fresh.lease is not None and not is_dead(fresh.lease):
            owner = f"pid {fresh.lease.pid} on {fresh.lease.host}"
            return _report_recorded(store, run_id, f"{told} Its owner ({owner}) will apply it.")
        click.echo(told, err=True)
        _enter(run)
        try:
            return _report(_resume(store, fresh, definition))
        except RunLockedError as exc:
            return _report_recorded(store, run_id, f"{told} {exc}")
    finally:
        store.close()


def _report_recorded(store: Any, run_id: str, told: str) -> int:
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
            f"Gate {gate}{' iteration ' + _its(its) if its else ''} of run {run_id}", err=True
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
    from smithers.runtime.lease import is_dead

    value = _parse_json(data, "--data")
    store = _settings().open()
    try:
        run = _need_run(store, run_id)
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
        fresh = store.get_run(run_id)
        if no_resume:
            return _report_recorded(store, run_id, told)
        if fresh.lease is not None and not is_dead(fresh.lease):
            owner = f"pid {fresh.lease.pid} on {fresh.lease.host}"
            return _report_recorded(store, run_id, f"{told} Its owner ({owner}) will apply it.")
        click.echo(told, err=True)
        try:
            return _report(_resume(store, fresh, definition))
        except RunLockedError as exc:
            return _report_recorded(store, run_id, f"{told} {exc}")
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
            owner = f"pid {run.lease.pid} on {run.lease.host}" if run and run.lease else "its owner"
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
    store = _settings().open(readonly=True)
    try:
        run = _need_run(store, run_id)
        snapshot = store.load(run_id)
        graph = _frame(store, run)
        attempts = store.attempts(run_id)
        approvals = store.approvals(run_id)
        if _settings().as_json:
            _emit_json(_status_document(run, snapshot, graph, attempts, approvals))
            return 0
        _print_status(run, snapshot, graph, attempts, approvals)
        return 0
    finally:
        store.close()


def _states(snapshot: Any, graph: Any) -> dict[str, str]:
    states = {}
    if graph is not None:
        for node in graph.nodes:
            record = snapshot.nodes.get((node.id, node.iteration))
            states[node.id] = (
                record.state if record is not None else ("skipped" if node.skipped else "pending")
            )
    return states


def _status_document(
    run: Any, snapshot: Any, graph: Any, attempts: list[Any], approvals: list[Any]
) -> dict[str, Any]:
    flag = _settings().store_flag()
    pending = []
    for a in approvals:
        if a.status == "requested":
            pending.append(
                {
                    "node_id": a.node_id,
                    "iteration": list(a.iteration),
                    "request": a.request,
                    "requested_at": a.requested_at,
                    **_commands(run.run_id, a.node_id, a.iteration, "approval", flag),
                }
            )
    run_doc = _plain(run)
    run_doc.pop("input", None)
    return {
        "run": run_doc,
        "nodes": [_plain(r) for _, r in sorted(snapshot.nodes.items())],
        "attempts": [_plain(a) for a in attempts],
        "pending": pending,
        "decisions": [_plain(a) for a in approvals if a.decision is not None],
        "approvals": [_plain(a) for a in approvals],
        "graph": graph.to_dict() if graph is not None else None,
    }


def _print_status(
    run: Any, snapshot: Any, graph: Any, attempts: list[Any], approvals: list[Any]
) -> None:
    ref = run.definition
    where = ""
    if ref is not None:
        where = f" ({ref.module or os.path.relpath(ref.path or '?', ref.cwd)}:{ref.attr})"
    _out(f"Run {run.run_id}  {run.status}")
    _out(f"  workflow: {run.workflow}{where}")
    _out(f"  created:  {run.created_at}   updated: {run.updated_at}")
    if run.lease is not None:
        _out(f"  owner:    pid {run.lease.pid} on {run.lease.host} since {run.lease.acquired_at}")
    if run.error is not None:
        at = f" at `{run.error.node_id}`" if run.error.node_id else ""
        _out(f"  error:    {run.error.type}{at}: {run.error.message}")
    if graph is not None:
        _out("")
        _out(graph.to_text(states=_states(snapshot, graph)))
    failed = [a for a in attempts if a.outcome != "ok"]
    counts: dict[str, int] = {}
    for a in attempts:
        counts[a.node_id] = counts.get(a.node_id, 0) + 1
    if attempts:
        _out("")
        _out(
            f"Attempts: {len(attempts)} recorded" + (f", {len(failed)} not ok:" if failed else ".")
        )
        for a in failed:
            its = f"@{_its(a.iteration)}" if a.iteration else ""
            first = (a.error or "").strip().splitlines()
            _out(f"  {a.node_id}{its} attempt {a.number} {a.outcome}: {first[-1] if first else ''}")
    pending = [a for a in approvals if a.status == "requested"]
    flag = _settings().store_flag()
    if pending:
        _out("")
        _out("Pending gates:")
        for a in pending:
            its = f" --iteration {_its(a.iteration)}" if a.iteration else ""
            _out(
                f"  {a.node_id}{' iteration ' + _its(a.iteration) if a.iteration else ''}: "
                f"{a.request.get('title', '')} (requested {a.requested_at})"
            )
            if a.request.get("summary"):
                _out(f"    {a.request['summary']}")
            for key, value in (a.request.get("metadata") or {}).items():
                _out(f"    {key}: {value}")
            _out(f"    approve: smithers approve {run.run_id} --node {a.node_id}{its}{flag}")
            _out(f"    deny:    smithers deny {run.run_id} --node {a.node_id}{its}{flag}")
    decided = [a for a in approvals if a.decision is not None]
    if decided:
        _out("")
        _out("Decisions:")
        for a in decided:
            note = a.decision.get("note")
            _out(
                f"  {a.node_id}{' iteration ' + _its(a.iteration) if a.iteration else ''}: "
                f"{a.status} by {a.decided_by} at {a.decided_at}"
                + (f" - {note!r}" if note else "")
                + f" (recorded by {a.recorded_by} on {a.recorded_on})"
            )


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
        run = _need_run(store, run_id)
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
            where = f" at iteration {_its(its)}" if its else ""
            have = ", ".join(_its(k[1]) or "()" for k in found)
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
                        "error": _plain(r.error) if r.error else None,
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
    store = _settings().open(readonly=True)
    try:
        gates = store.requested_gates()
        flag = _settings().store_flag()
        rows = []
        for run, a in gates:
            its = f" --iteration {_its(a.iteration)}" if a.iteration else ""
            base = f"{shlex.quote(run.run_id)} --node {shlex.quote(a.node_id)}{its}{flag}"
            rows.append(
                {
                    "run_id": run.run_id,
                    "node_id": a.node_id,
                    "iteration": list(a.iteration),
                    "workflow": run.workflow,
                    "title": a.request.get("title"),
                    "summary": a.request.get("summary"),
                    "metadata": a.request.get("metadata", {}),
                    "waiting_since": a.requested_at,
                    "on_deny": a.on_deny,
                    "approve_command": f"smithers approve {base}",
                    "deny_command": f"smithers deny {base}",
                }
            )
        if _settings().as_json:
            _emit_json(rows)
            return 0
        if not rows:
            _out("No gates are waiting for a decision.")
            return 0
        for row in rows:
            its = f" iteration {_its(tuple(row['iteration']))}" if row["iteration"] else ""
            _out(
                f"{row['run_id']}  {row['node_id']}{its}  ({row['workflow']}, waiting since "
                f"{row['waiting_since']})"
            )
            _out(f"  {row['title']}")
            if row["summary"]:
                _out(f"  {row['summary']}")
            for key, value in row["metadata"].items():
                _out(f"  {key}: {value}")
            _out(f"  approve: {row['approve_command']}")
            _out(f"  deny:    {row['deny_command']}")
        return 0
    finally:
        store.close()


def _event_doc(event: Any) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "type": event.type,
        "run_id": event.run_id,
        "node_id": event.node_id,
        "iteration": list(event.iteration) if event.iteration is not None else None,
        "at": event.at,
        "data": event.data,
    }


def _event_line(event: Any) -> str:
    node = f" {event.node_id}" if event.node_id else ""
    its = f"@{_its(event.iteration)}" if event.iteration else ""
    data = f" {_JSON.encode(event.data).decode()}" if event.data else ""
    return f"{event.seq:>6}  {event.at}  {event.type:<20} {event.run_id}{node}{its}{data}"


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
    store = _settings().open(readonly=True)
    try:
        if run_id is not None:
            _need_run(store, run_id)
        as_json = _settings().as_json
        if follow:
            for event in _follow(store, run_id, after):
                click.echo(
                    _JSON.encode(_event_doc(event)).decode() if as_json else _event_line(event)
                )
            return 0
        events = store.events(after=after, run_id=run_id)
        if as_json:
            _emit_json([_event_doc(e) for e in events])
        else:
            for event in events:
                _out(_event_line(event))
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
    states = None
    if run_id is not None:
        store = _settings().open(readonly=True)
        try:
            run = _need_run(store, run_id)
            snapshot = store.load(run_id)
            if target is not None:
                from smithers.runtime.api import current_graph
                from smithers.runtime.loader import load_definition

                graph = current_graph(store, run_id, load_definition(target).definition)
            else:
                graph = _frame(store, run)
                if graph is None:
                    raise _Fail(f"Run {run_id} has no graph yet.")
            states = _states(snapshot, graph)
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
