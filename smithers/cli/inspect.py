"""``smithers status``, ``output``, ``runs``, ``approvals``, ``events`` and ``graph``:
read-only views of the store (and of a workflow file). They exit 0 whatever a run's state."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any, get_args

import click
import msgspec

from smithers.cli.options import (
    Fail,
    emit_json,
    global_options,
    out,
    out_lines,
    parse_iteration,
    parse_json,
    settings,
)
from smithers.store.records import RunStatus

__all__ = ["COMMANDS"]

_JSON = msgspec.json.Encoder()
_STATUSES = list(get_args(RunStatus))


def _shown(document: Any) -> str:
    """JSON for a person (indented), compact under --json (for programs)."""
    raw = _JSON.encode(document)
    return raw.decode() if settings().as_json else msgspec.json.format(raw, indent=2).decode()


@click.command("status")
@click.argument("run_id")
@global_options
def status_cmd(run_id: str) -> int:
    """Show a run: graph with node states, attempts, pending gates and past decisions."""
    from smithers.cli.text import status_lines
    from smithers.runtime.documents import status_document, status_view

    store = settings().open(readonly=True)
    try:
        view = status_view(store, run_id)
        flag = settings().store_flag()
        if settings().as_json:
            emit_json(status_document(view, flag))
        else:
            out_lines(status_lines(view, flag))
        return 0
    finally:
        store.close()


@click.command("output")
@click.argument("run_id")
@click.argument("node")
@click.option("--iteration", metavar="I", help="The loop iteration, e.g. 1.0.")
@global_options
def output_cmd(run_id: str, node: str, iteration: str | None) -> int:
    """Print a node's committed output as JSON."""
    from smithers.runtime.documents import output_value

    its = parse_iteration(iteration)
    store = settings().open(readonly=True)
    try:
        click.echo(_shown(output_value(store, run_id, node, its)))
        return 0
    finally:
        store.close()


@click.command("runs")
@click.option("--status", type=click.Choice(_STATUSES))
@global_options
def runs_cmd(status: str | None) -> int:
    """List runs (from the status index with --status)."""
    from smithers.runtime.documents import resume_command, runs_document, stranded

    with settings().reading() as store:
        runs = store.runs(status) if store is not None else []
        if settings().as_json:
            emit_json(runs_document(runs, settings().store_flag()))
            return 0
        if not runs:
            out("No runs" + (f" with status {status}." if status else "."))
            return 0
        width = max(len(r.run_id) for r in runs)
        lines = []
        for r in runs:
            shown = "running*" if stranded(r) else r.status
            lines.append(f"{r.run_id:<{width}}  {shown:<16}  {r.workflow:<16}  {r.updated_at}")
        stopped = [r.run_id for r in runs if stranded(r)]
        if stopped:
            lines.append(
                "* interrupted: no process is running it; go on with "
                + ", ".join(f"`{resume_command(rid, settings().store_flag())}`" for rid in stopped)
            )
        out_lines(lines)
        return 0


@click.command("approvals")
@global_options
def approvals_cmd() -> int:
    """List every requested gate across runs, with its request and the commands to decide."""
    from smithers.cli.text import gate_lines
    from smithers.runtime.documents import inbox_document

    with settings().reading() as store:
        rows = inbox_document(store, settings().store_flag()) if store is not None else []
        if settings().as_json:
            emit_json(rows)
        else:
            out_lines(gate_lines(rows))
        return 0


def _follow(store: Any, run_id: str | None, after: int) -> Iterator[Any]:
    while True:
        events = store.events(after=after, run_id=run_id, limit=1000)
        yield from events
        if events:
            after = events[-1].seq
        else:
            time.sleep(0.2)


@click.command("events")
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
@click.option(
    "--consumer",
    metavar="NAME",
    help="Start after the last event NAME acknowledged and record its position as events "
    "are printed (at-least-once, in order, across restarts).",
)
@global_options
def events_cmd(run_id: str | None, after: int, follow: bool, consumer: str | None) -> int:
    """Print the durable event log (of one run, or all)."""
    from smithers.cli.text import event_line
    from smithers.runtime.documents import event_document
    from smithers.store.base import need_run

    if consumer is not None:
        return _consume(run_id, consumer, follow)
    store = settings().open_if_any()
    if store is None and run_id is None and not follow:  # nothing has happened yet
        if settings().as_json:
            emit_json([])
        return 0
    if store is None:
        store = settings().open(readonly=True)  # says why it cannot
    try:
        if run_id is not None:
            need_run(store, run_id)
        as_json = settings().as_json
        if follow:
            for event in _follow(store, run_id, after):
                click.echo(
                    _JSON.encode(event_document(event)).decode() if as_json else event_line(event)
                )
            return 0
        events = store.events(after=after, run_id=run_id)
        if as_json:
            emit_json([event_document(e) for e in events])
        elif events:
            out_lines([event_line(event) for event in events])
        return 0
    finally:
        store.close()


def _consume(run_id: str | None, consumer: str, follow: bool) -> int:
    """``events --consumer``: print from the consumer's cursor, moving it after each line."""
    from smithers.cli.text import event_line
    from smithers.runtime.documents import event_document
    from smithers.store.base import need_run

    store = settings().open(create=True)
    try:
        if run_id is not None:
            need_run(store, run_id)
        as_json = settings().as_json
        start = store.cursor(consumer)
        found = (
            _follow(store, run_id, start) if follow else store.events(after=start, run_id=run_id)
        )
        for event in found:
            line = _JSON.encode(event_document(event)).decode() if as_json else event_line(event)
            click.echo(line)
            sys.stdout.flush()  # printed before acknowledged: at-least-once
            store.set_cursor(consumer, event.seq)
        return 0
    finally:
        store.close()


@click.command("graph")
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
@global_options
def graph_cmd(target: str | None, input_: str | None, run_id: str | None, fmt: str) -> int:
    """Render a workflow's graph without running anything."""
    from smithers.runtime.loader import load_definition

    states = None
    if run_id is not None:
        from smithers.runtime.documents import run_graph

        store = settings().open(readonly=True)
        try:
            definition = load_definition(target).definition if target is not None else None
            graph, states = run_graph(store, run_id, definition)
        finally:
            store.close()
    else:
        if target is None:
            raise Fail("graph needs FILE[:ATTR], or --run RUN_ID (see `smithers graph --help`).")
        from smithers.compiler.render import render

        graph = render(load_definition(target).definition, parse_json(input_, "--input"))
    if fmt == "json" or settings().as_json:
        document = graph.to_dict()
        if states is not None:
            document["states"] = states
        click.echo(_shown(document))
    elif fmt == "mermaid":
        click.echo(graph.to_mermaid(states=states), nl=False)
    elif fmt == "dot":
        click.echo(graph.to_dot(states=states), nl=False)
    else:
        out(graph.to_text(states=states))
    return 0


COMMANDS = [status_cmd, output_cmd, runs_cmd, approvals_cmd, events_cmd, graph_cmd]
