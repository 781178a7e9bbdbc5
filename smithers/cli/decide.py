"""``smithers approve``, ``deny``, ``signal`` and ``cancel``: record what a person or an
outside system says, then go on with the run in this process."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click
import msgspec

from smithers.cli.execute import progress, report, say
from smithers.cli.options import (
    Fail,
    emit_json,
    execute,
    global_options,
    parse_iteration,
    parse_json,
    settings,
)

__all__ = ["COMMANDS"]


def _finish(outcome: Any) -> int:
    """Print what happened; the resumed run's exit code, else 0 (recorded)."""
    code = report(outcome.result, note=outcome.note)
    return code if outcome.resumed else 0


def _confirm(run_id: str, approved: bool) -> Callable[[str, tuple[int, ...], Any], None]:
    from smithers.runtime.documents import iteration_text

    def confirm(gate: str, its: tuple[int, ...], record: Any) -> None:
        if record is not None:
            request = record.request
            which = f" iteration {iteration_text(its)}" if its else ""
            click.echo(f"Gate {gate}{which} of run {run_id}", err=True)
            click.echo(f"  {request.get('title', '')}", err=True)
            if request.get("summary"):
                click.echo(f"  {request['summary']}", err=True)
            for key, value in (request.get("metadata") or {}).items():
                click.echo(f"  {key}: {value}", err=True)
            click.echo(f"  waiting since {record.requested_at}", err=True)
            if record.deadline:
                click.echo(f"  deadline {record.deadline}", err=True)
            quorum = (record.policy or {}).get("quorum", 1)
            if quorum > 1:
                yes = sum(1 for vote in record.votes if vote["approved"])
                click.echo(f"  approvals so far: {yes} of {quorum}", err=True)
        if not click.confirm("Approve it?" if approved else "Deny it?", err=True):
            raise Fail("not confirmed; nothing was recorded.")

    return confirm


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
        global_options,
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _decision_command(name: str, approved: bool, help: str) -> click.Command:
    @click.command(name, help=help)
    @_decision_options
    def command(
        run_id: str,
        node: str | None,
        iteration: str | None,
        note: str | None,
        by: str | None,
        no_resume: bool,
        yes: bool,
        workflow: str | None,
    ) -> int:
        from smithers.runtime.usecases import decide

        its = parse_iteration(iteration)
        store = settings().open()
        try:
            outcome = execute(
                decide(
                    store,
                    run_id,
                    approved=approved,
                    node_id=node,
                    iteration=its,
                    note=note,
                    by=by,
                    resume=not no_resume,
                    workflow=workflow,
                    confirm=None if yes or not sys.stdin.isatty() else _confirm(run_id, approved),
                    say=say,
                    on_event=progress,
                    handle_signals=True,
                )
            )
            return _finish(outcome)
        finally:
            store.close()

    return command


approve_cmd = _decision_command(
    "approve", True, "Approve a requested gate, then resume the run in this process."
)
deny_cmd = _decision_command(
    "deny", False, "Deny a requested gate (its on_deny decides what happens), then resume the run."
)


@click.command("signal")
@click.argument("run_id")
@click.option("--node", required=True, metavar="NODE", help="The Signal's id.")
@click.option("--data", metavar="JSON|@FILE", help="The data to deliver.")
@click.option("--schema", is_flag=True, help="Print the JSON Schema the data must match.")
@click.option("--iteration", metavar="I", help="The Signal's loop iteration, e.g. 1.0.")
@click.option("--no-resume", is_flag=True, help="Only record; do not resume the run.")
@click.option("--workflow", metavar="FILE[:ATTR]", help="Resume with this definition.")
@global_options
def signal_cmd(
    run_id: str,
    node: str,
    data: str | None,
    schema: bool,
    iteration: str | None,
    no_resume: bool,
    workflow: str | None,
) -> int:
    """Deliver data to a Signal (even before the run reaches it), then resume the run."""
    from smithers.runtime.usecases import deliver

    if schema:
        return _print_schema(run_id, node, workflow, data)
    if data is None:
        raise Fail("Missing option '--data' (see `smithers signal --help`).")
    value = parse_json(data, "--data")
    its = parse_iteration(iteration)
    store = settings().open()
    try:
        outcome = execute(
            deliver(
                store,
                run_id,
                node,
                value,
                iteration=its,
                resume=not no_resume,
                workflow=workflow,
                say=say,
                on_event=progress,
                handle_signals=True,
            )
        )
        return _finish(outcome)
    finally:
        store.close()


def _print_schema(run_id: str, node: str, workflow: str | None, data: str | None) -> int:
    from smithers.runtime.usecases import expected_data

    if data is not None:
        raise Fail("--schema prints what --data must look like; pass one of them, not both.")
    store = settings().open(readonly=True)
    try:
        schema = expected_data(store, run_id, node, workflow=workflow)
    finally:
        store.close()
    if settings().as_json:
        emit_json(schema)
    else:
        click.echo(msgspec.json.format(msgspec.json.encode(schema), indent=2).decode())
    return 0


@click.command("cancel")
@click.argument("run_id")
@global_options
def cancel_cmd(run_id: str) -> int:
    """Cancel a run: requested gates are withdrawn, waiting nodes cancelled."""
    from smithers.runtime.usecases import cancel_run

    store = settings().open()
    try:
        outcome = cancel_run(store, run_id)
        report(outcome.result, note=outcome.note)
        return 0
    finally:
        store.close()


COMMANDS = [approve_cmd, deny_cmd, signal_cmd, cancel_cmd]
