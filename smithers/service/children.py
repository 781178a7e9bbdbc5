"""Child processes of the service: ``python -m smithers ...`` in a run's working directory.

Workflow code (its module, its tasks, its validation) only ever runs in such a child, never
in the service process, so a crashing workflow cannot take the service down."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import attrs
import msgspec

from smithers.runtime.links import BASE_URL_ENV
from smithers.store.records import RunRecord

__all__ = ["Child", "finish_child", "run_dir", "smithers_child", "start_child"]


@attrs.frozen
class Child:
    """A finished child: exit code, its JSON document (or None) and its last stderr line."""

    code: int
    document: Any
    last_error: str

    @property
    def reported(self) -> bool:
        """Whether it printed a run document (``{"run_id", "status", ...}``)."""
        return isinstance(self.document, dict) and "status" in self.document

    @property
    def error_type(self) -> str | None:
        """The ``error.type`` of a ``--json`` error document, if it printed one."""
        doc = self.document
        if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
            kind = doc["error"].get("type")
            return kind if isinstance(kind, str) else None
        return None

    @property
    def error_message(self) -> str:
        """The error's message, else the last stderr line, else the exit code."""
        doc = self.document
        if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
            return str(doc["error"].get("message"))
        return self.last_error or f"the process exited with code {self.code}"


def run_dir(run: RunRecord | None) -> str | None:
    """The run's recorded working directory when it still exists, else None."""
    cwd = run.definition.cwd if run is not None and run.definition is not None else None
    return cwd if cwd is not None and os.path.isdir(cwd) else None


async def start_child(
    location: str, args: list[str], *, cwd: str | None, base_url: str | None
) -> asyncio.subprocess.Process:
    """Start ``python -m smithers --store LOCATION --json ARGS`` in its own session (a
    Ctrl-C meant for the service reaches it only through the service)."""
    env = dict(os.environ)
    if base_url:
        env[BASE_URL_ENV] = base_url
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "smithers",
        "--store",
        location,
        "--json",
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )


async def finish_child(proc: asyncio.subprocess.Process, data: bytes | None = None) -> Child:
    """Wait for a child, feeding it ``data`` on stdin, and read what it printed."""
    out, err = await proc.communicate(data)
    code = proc.returncode if proc.returncode is not None else -signal.SIGKILL
    document = None
    lines = out.decode(errors="replace").strip().splitlines()
    if lines:
        try:
            document = msgspec.json.decode(lines[-1])
        except msgspec.DecodeError:
            document = None
    errors = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
    return Child(code, document, errors[-1] if errors else "")


async def smithers_child(
    location: str,
    args: list[str],
    *,
    cwd: str | None,
    data: bytes | None = None,
    base_url: str | None = None,
) -> Child:
    """Run one ``smithers`` command in a child process to its end."""
    proc = await start_child(location, args, cwd=cwd, base_url=base_url)
    return await finish_child(proc, data)
