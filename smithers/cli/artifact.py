"""``smithers artifact get/ls``: the bytes a run's tasks stored (DESIGN §14)."""

from __future__ import annotations

import sys

import click

from smithers.cli.options import emit_json, global_options, out, out_lines, settings

__all__ = ["COMMANDS"]


@click.group("artifact")
def artifact_cmd() -> None:
    """Artifacts: bytes stored once with a run, named ``res://sha256/<hex>``."""


@artifact_cmd.command("get")
@click.argument("ref")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), default=None)
@global_options
def get_cmd(ref: str, output: str | None) -> int:
    """Write the bytes of artifact REF (``res://sha256/<hex>`` or the hex) to stdout, or to
    FILE with -o; they are checked against their digest first."""
    from smithers.runtime.artifacts import read_artifact

    store = settings().open(readonly=True)
    try:
        data = read_artifact(store, ref)
    finally:
        store.close()
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        with open(output, "wb") as file:
            file.write(data)
        out(f"Wrote {len(data)} bytes to {output}.")
    return 0


@artifact_cmd.command("ls")
@click.argument("run_id")
@global_options
def ls_cmd(run_id: str) -> int:
    """List the artifacts of run RUN_ID: ref, size, media type and name."""
    from smithers.runtime.artifacts import run_artifacts

    with settings().reading() as store:
        rows = run_artifacts(store, run_id) if store is not None else []
    if settings().as_json:
        emit_json(rows)
    else:
        lines = [
            f"{row['ref']}  {row['size']:>9}  {row['media_type'] or '-'}  {row['name']}"
            for row in rows
        ]
        out_lines(lines or [f"Run {run_id} has no artifacts."])
    return 0


COMMANDS = [artifact_cmd]
