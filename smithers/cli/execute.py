"""``smithers run`` and ``smithers resume``: execute a run in this process."""

from __future__ import annotations

from typing import Any

import click

from smithers.cli.options import EXIT, emit_json, execute, global_options, parse_json, settings
from smithers.cli.options import out_lines as _out_lines

__all__ = ["COMMANDS", "progress", "report"]


def progress(event: Any) -> None:
    """One stderr line per event worth a person's attention while a run executes."""
    from smithers.cli.text import progress_line

    if event.type in ("run.started", "run.resumed"):
        settings().executing = event.run_id
    line = progress_line(event)
    if line is not None:
        click.echo(line, err=True)


def say(line: str) -> None:
    """A use case's line for the person waiting (stderr: stdout carries the document)."""
    click.echo(line, err=True)


def report(result: Any, *, note: str | None = None) -> int:
    """Print a run result (human or JSON) and return its exit code."""
    from smithers.cli.text import result_lines
    from smithers.runtime.documents import result_document

    current = settings()
    document = result_document(result, current.store_flag(), note)
    if current.as_json:
        emit_json(document)
    else:
        _out_lines(result_lines(document))
    return EXIT.get(result.status, 0)


@click.command("run")
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
@click.option(
    "--by", metavar="NAME", help="Who starts the run (default: $SMITHERS_ACTOR, OS user)."
)
@global_options
def run_cmd(
    target: str, input_: str | None, run_id: str | None, max_concurrency: int, by: str | None
) -> int:
    """Run a workflow until it finishes, fails or waits for a person or a signal."""
    from smithers.runtime.api import start_run
    from smithers.runtime.usecases import prepare_start

    value = parse_json(input_, "--input")
    loaded = prepare_start(target, value, run_id)
    store = settings().open(create=True)
    try:
        result = execute(
            start_run(
                loaded.definition,
                value,
                store=store,
                run_id=run_id,
                max_concurrency=max_concurrency,
                on_event=progress,
                handle_signals=True,
                loaded=loaded,
                by=by,
            )
        )
        note = None
        if result.status == "queued":
            from smithers.runtime.concurrency import queued_behind

            note = (
                f"Queued behind run {queued_behind(store, result.run_id)} (same concurrency "
                "key); it starts when that run ends."
            )
    finally:
        store.close()
    return report(result, note=note)


@click.command("resume")
@click.argument("run_id")
@click.option("--workflow", metavar="FILE[:ATTR]", help="Load the definition from here.")
@click.option(
    "--accept-workflow-change",
    is_flag=True,
    help="Go on even if finished nodes no longer mount the same way.",
)
@global_options
def resume_cmd(run_id: str, workflow: str | None, accept_workflow_change: bool) -> int:
    """Continue a run from this process (after a crash, a decision or a signal)."""
    from smithers.runtime.usecases import resume_run

    store = settings().open()
    try:
        result = execute(
            resume_run(
                store,
                run_id,
                workflow=workflow,
                accept_change=accept_workflow_change,
                on_event=progress,
                handle_signals=True,
            )
        )
        return report(result)
    finally:
        store.close()


@click.command("retry")
@click.argument("run_id")
@click.option(
    "--node",
    metavar="NODE",
    help="Also ask again a gate denied under on_deny='fail' (failed tasks always re-run).",
)
@click.option("--workflow", metavar="FILE[:ATTR]", help="Load the definition from here.")
@global_options
def retry_cmd(run_id: str, node: str | None, workflow: str | None) -> int:
    """Re-run the failed nodes of a failed run (after fixing the code), keeping every
    finished output."""
    from smithers.runtime.usecases import retry_run

    store = settings().open()
    try:
        result = execute(
            retry_run(
                store,
                run_id,
                node=node,
                workflow=workflow,
                on_event=progress,
                handle_signals=True,
            )
        )
        return report(result)
    finally:
        store.close()


COMMANDS = [run_cmd, resume_cmd, retry_cmd]
