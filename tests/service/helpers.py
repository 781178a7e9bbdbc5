"""Helpers of the service tests: a real ``smithers serve`` on 127.0.0.1 with an ephemeral
port (started in a child process, stopped with SIGTERM), workflows, and parked runs made
in this process (fast) that children resume."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx

from smithers.runtime.loader import load_definition
from smithers.store import open_store
from tests.integration.helpers import HANG_GUARD, TASK_KIT, child_env, cli_args, wait_for, write

# Build, a gate, then `after` (which logs that it ran and may be held); a second gate later
# (`later`) that is mounted but not requested while `gate` waits; a Signal in its own file.
GATE_WORKFLOW = (
    TASK_KIT
    + """
from smithers import Approval, ApprovalRequest, Sequence, Task, Workflow, smithers


def after_body(task):
    hold_here("after", task)
    ran("after", task)
    return "applied"


@smithers
def gated(ctx):
    decision = ctx.output_maybe("gate")
    return Workflow(
        Sequence(
            Task(id="build", output=str, value="v1"),
            Approval(
                id="gate",
                request=ApprovalRequest(
                    title="Ship <script>alert(1)</script>?", summary="v1", metadata={"env": "prod"}
                ),
            ),
            decision and Task(id="after", output=str, run=after_body),
            Approval(id="later", request=ApprovalRequest(title="Again?")),
        ),
        name="gated",
    )
"""
)

SIGNAL_WORKFLOW = """
import msgspec
from smithers import Sequence, Signal, Task, Workflow, smithers


class Report(msgspec.Struct):
    ok: bool
    items: list[int]


@smithers
def waits(ctx):
    return Workflow(
        Sequence(
            Signal(id="report", output=Report),
            Task(id="done", output=bool, value=True),
        ),
        name="waits",
    )
"""


@attrs.frozen
class Served:
    """A running ``smithers serve``: its URL, process and store."""

    url: str
    proc: subprocess.Popen[str]
    store: Path

    def client(self, token: str | None = None) -> httpx.Client:
        """An HTTP client for it, with ``token`` as the bearer."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=HANG_GUARD)


@contextmanager
def serving(
    store: Path, cwd: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[Served]:
    """Start ``smithers serve --port 0`` and stop it with SIGTERM afterwards (exit 0)."""
    proc = subprocess.Popen(
        cli_args(store, "serve", "--port", "0", *args),
        cwd=cwd,
        env=env or child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        found = re.search(r"listening on (http://\S+)", line)
        assert found, f"serve did not start: {line}{proc.stderr.read() if not line else ''}"
        yield Served(found.group(1), proc, store)
        stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=HANG_GUARD)


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM a serve/worker process, wait for it, and check it exited 0; its stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 0, f"exited {proc.returncode}: {err}"
    return err or ""


def token(store: Path, cwd: Path, name: str, role: str) -> str:
    """Create a token with the CLI and return its secret."""
    proc = subprocess.run(
        cli_args(store, "token", "create", name, "--role", role),
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=True,
    )
    return proc.stdout.strip()


def park(folder: Path, store: Path, target: str, ids: list[str]) -> None:
    """Start runs of ``target`` (FILE:ATTR inside ``folder``) in this process until each
    parks; a child resumes them later from the recorded file."""
    from smithers import run

    definition = load_definition(str(folder / target)).definition
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        for run_id in ids:
            result = run(definition, store=str(store), run_id=run_id)
            assert result.status.startswith("waiting"), result
    finally:
        os.chdir(cwd)


def workflows(folder: Path) -> None:
    """Write the gate workflow (gate.py:gated) and the signal workflow (sig.py:waits)."""
    write(folder / "gate.py", GATE_WORKFLOW)
    write(folder / "sig.py", SIGNAL_WORKFLOW)


def status_of(store: Path, run_id: str) -> str:
    """A run's status, read from the store."""
    with opened_store(store) as s:
        run = s.get_run(run_id)
        return run.status if run else "absent"


@contextmanager
def opened_store(store: Path) -> Iterator[Any]:
    """The store, opened in this process."""
    handle = open_store(str(store))
    try:
        yield handle
    finally:
        handle.close()


def finished(store: Path, run_id: str, proc: subprocess.Popen[str] | None = None) -> None:
    """Wait (bounded) until the run is finished."""
    wait_for(lambda: status_of(store, run_id) == "finished", f"{run_id} finished", proc=proc)
