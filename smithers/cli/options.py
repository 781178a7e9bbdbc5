"""What every command shares: ``--store`` and ``--json`` (before or after the subcommand),
the store it opens, exit codes, the one ``Error:`` line, JSON output and input parsing."""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Callable, Iterator
from typing import Any

import click
import msgspec

from smithers.errors import InputError
from smithers.store.records import RunStatus

__all__ = [
    "EXIT",
    "INTERRUPTED",
    "USER_ERROR",
    "Fail",
    "Settings",
    "emit_json",
    "error",
    "execute",
    "global_options",
    "out",
    "out_lines",
    "parse_iteration",
    "parse_json",
    "settings",
]

EXIT: dict[RunStatus, int] = {
    "queued": 3,
    "finished": 0,
    "failed": 1,
    "cancelled": 2,
    "waiting-approval": 3,
    "waiting-signal": 3,
    "waiting-timer": 3,
    "running": 0,
}
USER_ERROR = 4
INTERRUPTED = 130
_JSON = msgspec.json.Encoder()


class Fail(Exception):
    """Leave with one ``Error:`` line and an exit code."""

    def __init__(self, message: str, code: int = USER_ERROR) -> None:
        super().__init__(message)
        self.code = code


class Settings:
    """The options given before or after the subcommand, and what this process executes."""

    def __init__(self) -> None:
        self.store: str | None = None  # --store, wherever it was given
        self.as_json = False
        self.executing: str | None = None  # the run this process is executing, if any

    def store_path(self) -> tuple[str, bool]:
        """The store location and whether the default rule found it (commands we print for
        other people then need no --store). An explicit --store wins over
        ``$SMITHERS_STORE``, which wins over the default rule."""
        from smithers.store.base import default_store_path

        explicit = self.store or os.environ.get("SMITHERS_STORE")
        if explicit:  # a URL (postgresql://...) is a location as it stands
            return (explicit if "://" in explicit else os.path.abspath(explicit)), False
        return default_store_path()

    def open(self, *, create: bool = False, readonly: bool = False) -> Any:
        """Open the store this command works on."""
        from smithers.store import open_store

        path, _ = self.store_path()
        return open_store(path, create=create, readonly=readonly)

    @contextlib.contextmanager
    def reading(self) -> Iterator[Any]:
        """The store opened to read it, closed afterwards; None when nothing exists at its
        location yet (a listing of an absent store is empty, not an error)."""
        store = self.open_if_any()
        try:
            yield store
        finally:
            if store is not None:
                store.close()

    def open_if_any(self) -> Any:
        """Open the store to read it, or None when nothing exists at its location yet (a
        listing of an absent store is empty, not an error)."""
        path, _ = self.store_path()
        if "://" not in path and not os.path.exists(path):
            return None
        return self.open(readonly=True)

    def store_flag(self) -> str:
        """`` --store PATH`` for commands printed for other people, or ``""``. A URL's
        password is shown as ``***``: printed commands never carry a secret."""
        from smithers.store import redacted

        path, by_default = self.store_path()
        return "" if by_default else f" --store {shlex.quote(redacted(path))}"


def settings() -> Settings:
    """The settings of the command being run."""
    obj = click.get_current_context().find_root().obj
    assert isinstance(obj, Settings)
    return obj


def global_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--store and --json, accepted before or after the subcommand."""

    def remember_store(ctx: click.Context, _: click.Parameter, value: str | None) -> None:
        if value is not None:
            ctx.find_root().ensure_object(Settings).store = value

    def remember_json(ctx: click.Context, _: click.Parameter, value: bool) -> None:
        if value:
            ctx.find_root().ensure_object(Settings).as_json = True

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
        help="Store location (default: $SMITHERS_STORE, else the nearest .smithers/ upwards).",
    )(fn)


def error(message: str) -> None:
    """Print the one ``Error:`` line."""
    click.echo(f"Error: {' '.join(message.split())}", err=True)


def out(text: str = "") -> None:
    """Print a line on stdout."""
    click.echo(text)


def out_lines(lines: list[str]) -> None:
    """Print many lines with one write (one echo per line is slow for a long inbox)."""
    click.echo("\n".join(lines))


def emit_json(document: Any) -> None:
    """Print one JSON document on stdout."""
    click.echo(_JSON.encode(document).decode())


def execute(coro: Any) -> Any:
    """Run a use case's coroutine to its end."""
    import asyncio  # only commands that execute a run pay for it

    return asyncio.run(coro)


def parse_json(value: str | None, what: str) -> Any:
    """A JSON option's value: inline JSON, or ``@file.json``."""
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


def parse_iteration(value: str | None) -> tuple[int, ...] | None:
    """``--iteration 1.0`` -> ``(1, 0)``; ``""`` -> ``()``; absent -> None.

    Raises:
        InputError: For a malformed or out-of-range value (one sentence with the fix).
    """
    from smithers.compiler.iterations import parse_iteration as parse

    return None if value is None else parse(value)
