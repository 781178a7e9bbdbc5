"""The ``smithers`` command line (click): the only package that prints or exits.

One module per command family (`execute`: run/resume; `decide`: approve/deny/signal/cancel;
`inspect`: status/runs/approvals/events/output/graph; `store`: store migrate); each command
parses its input, calls one runtime use case and prints its document. Exit codes: 0 done, 1
run failed, 2 cancelled, 3 waiting (approval or signal), 4 user error, 130 interrupted. Every
error is one ``Error: ...`` line on stderr.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from smithers.cli import artifact, decide, execute, group, inspect, serve, store, webhook
from smithers.cli.options import (
    EXIT,
    INTERRUPTED,
    USER_ERROR,
    Fail,
    Settings,
    emit_json,
    error,
    global_options,
)
from smithers.errors import LeaseLostError, SmithersError

__all__ = ["cli", "invoke", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@global_options
@click.version_option(package_name="smithers", prog_name="smithers")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Durable, human-in-the-loop workflows written as component trees."""
    ctx.ensure_object(Settings)


for _module in (execute, decide, inspect, group, store, serve, artifact, webhook):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main(argv: list[str] | None = None) -> NoReturn:
    """Run the CLI and exit with its code."""
    code = invoke(argv)
    sys.stdout.flush()
    sys.exit(code)


def invoke(argv: list[str] | None) -> int:
    """Run the CLI on ``argv`` and return its exit code (every error already printed)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args:  # `smithers` alone: the help, as `smithers --help` prints it
        click.echo(cli.get_help(click.Context(cli, info_name="smithers")))
        return 0
    settings = Settings()

    def fail(exc: BaseException, message: str, code: int) -> int:
        if settings.as_json or "--json" in args:  # agents read stdout
            kind = "UsageError" if isinstance(exc, Fail | click.ClickException) else None
            emit_json({"error": {"type": kind or type(exc).__name__, "message": message}})
        error(message)
        return code

    try:
        result = cli.main(args=args, prog_name="smithers", standalone_mode=False, obj=settings)
    except Fail as exc:
        return fail(exc, str(exc), exc.code)
    except click.exceptions.Abort as exc:
        # With standalone_mode=False click turns Ctrl-C (KeyboardInterrupt) into Abort.
        if settings.executing:
            message = (
                f"interrupted; run {settings.executing} stays resumable with "
                f"`smithers resume {settings.executing}`."
            )
        else:
            message = "interrupted; nothing more was done."
        return fail(exc, message, INTERRUPTED)
    except click.ClickException as exc:
        return fail(exc, _click_message(exc), USER_ERROR)
    except KeyboardInterrupt as exc:  # outside click's own handling (e.g. while shutting down)
        return fail(exc, "interrupted; nothing more was done.", INTERRUPTED)
    except LeaseLostError as exc:
        return fail(exc, str(exc), EXIT["failed"])
    except SmithersError as exc:
        return fail(exc, str(exc), USER_ERROR)
    return result if isinstance(result, int) else 0


def _click_message(exc: click.ClickException) -> str:
    message = exc.format_message()
    if isinstance(exc, click.UsageError) and exc.ctx is not None:
        return f"{message.rstrip('.')} (see `{exc.ctx.command_path} --help`)."
    return message
