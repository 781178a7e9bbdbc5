"""Helpers for the CLI tests: invoke the CLI in-process, write workflow files, read a store."""

from __future__ import annotations

import importlib
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import attrs
import msgspec
from click.testing import CliRunner

from smithers.cli import invoke as run_cli
from smithers.store import open_store

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@attrs.frozen
class Result:
    """What one CLI invocation did: its exit code and what it printed on each stream."""

    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        """The stderr lines, without the trailing newline."""
        return self.err.splitlines()

    @property
    def errors(self) -> list[str]:
        """The ``Error: ...`` lines on stderr."""
        return [line for line in self.err_lines if line.startswith("Error:")]

    def json(self) -> Any:
        """Stdout parsed as exactly one JSON document."""
        return json.loads(self.out)


def invoke(*args: str, env: dict[str, str | None] | None = None, stdin: str = "") -> Result:
    """Run ``smithers ARGS`` in this process (as `main` would, minus ``sys.exit``).

    The working directory is restored afterwards: approve/deny/resume enter the run's
    recorded working directory.
    """
    cwd = os.getcwd()
    importlib.invalidate_caches()  # files written this second must be importable
    try:
        with CliRunner().isolation(input=stdin, env=env) as (out, err, _):
            code = run_cli(list(args))
            sys.stdout.flush()
            sys.stderr.flush()
            return Result(code, out.getvalue().decode(), err.getvalue().decode())
    finally:
        os.chdir(cwd)


def one_error(result: Result) -> str:
    """The single stderr line of a refused command, after checking it exited 4 and printed
    nothing on stdout."""
    assert result.code == 4, result
    assert result.out == "", result
    assert len(result.err_lines) == 1, result.err_lines
    return result.err_lines[0]


def write(folder: Path, name: str, source: str) -> Path:
    """Write a (dedented) Python source file and return its path."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")
    return path


def store_state(path: Path) -> Any:
    """Everything a store at ``path`` holds, as builtins; None when no store is there.

    Compared before and after a refused command to prove that nothing was written.
    """
    if not (path / "data.mdb").exists():
        return None
    store = open_store(str(path), create=False)
    try:
        runs = store.runs()
        state: dict[str, Any] = {
            "last_seq": store.last_seq(),
            "runs": msgspec.to_builtins(runs),
            "events": msgspec.to_builtins(store.events()),
            "requested": [
                (run.run_id, a.node_id, list(a.iteration)) for run, a in store.requested_gates()
            ],
        }
        for run in runs:
            snapshot = store.load(run.run_id)
            assert snapshot is not None
            state[run.run_id] = {
                "nodes": msgspec.to_builtins(sorted(snapshot.nodes.items())),
                "outputs": msgspec.to_builtins(sorted(snapshot.outputs.items())),
                "approvals": msgspec.to_builtins(store.approvals(run.run_id)),
                "signals": msgspec.to_builtins(store.signals(run.run_id)),
                "attempts": msgspec.to_builtins(store.attempts(run.run_id)),
            }
        return state
    finally:
        store.close()


def read_store(path: Path) -> Any:
    """Open the store at ``path`` (which must exist) for a test to read."""
    return open_store(str(path), create=False)


# -- workflow sources ----------------------------------------------------------------------------

OK = """
    from smithers import Task, Workflow, smithers

    @smithers
    def ok(ctx):
        return Workflow(
            Task(id="first", output=int, value=1),
            Task(id="second", output=str, needs={"n": "first"}, run=lambda n: f"got {n}"),
            name="ok",
        )
"""

FAILING = """
    from smithers import Task, Workflow, smithers

    def explode() -> int:
        raise ValueError("the disk is full")

    @smithers
    def failing(ctx):
        return Workflow(
            Task(id="fine", output=int, value=1),
            Task(id="explode", output=int, run=explode),
            name="failing",
        )
"""

# build -> gate (on_deny="fail") -> ship; `ship` writes a marker file when it runs.
GATE = """
    import msgspec
    from smithers import Approval, ApprovalRequest, Task, Workflow, smithers

    class In(msgspec.Struct):
        version: str = "1.0"

    def ship(plan: str) -> str:
        with open("shipped.txt", "w") as handle:
            handle.write(plan)
        return "shipped " + plan

    @smithers(input=In)
    def gated(ctx):
        return Workflow(
            Task(id="build", output=str, value="plan-" + ctx.input.version),
            Approval(
                id="gate",
                needs={"plan": "build"},
                request=lambda plan: ApprovalRequest(
                    title=f"Ship {plan}?", summary="One region.", metadata={"risk": "low"}
                ),
            ),
            Task(id="ship", output=str, needs={"plan": "build"}, run=ship),
            name="gated",
        )
"""

TWO_GATES = """
    from smithers import Approval, ApprovalRequest, Parallel, Task, Workflow, smithers

    @smithers
    def two(ctx):
        return Workflow(
            Parallel(
                Approval(id="left", request=ApprovalRequest(title="Left?"), on_deny="continue"),
                Approval(id="right", request=ApprovalRequest(title="Right?"), on_deny="continue"),
            ),
            Task(id="after", output=int, value=1),
            name="two",
        )
"""

# A gate inside two nested loops: it is requested at iteration 0.0, then 1.0.
LOOP_GATE = """
    from smithers import Approval, ApprovalRequest, Loop, Task, Workflow, smithers

    @smithers
    def looped(ctx):
        return Workflow(
            Loop(
                Loop(
                    Approval(
                        id="gate",
                        request=ApprovalRequest(title="Round?"),
                        on_deny="continue",
                    ),
                    id="inner",
                    until=False,
                    max_iterations=1,
                ),
                id="outer",
                until=lambda ctx: len(ctx.outputs("gate")) >= 2,
                max_iterations=3,
            ),
            Task(id="done", output=int, value=1),
            name="looped",
        )
"""

SIGNAL = """
    import msgspec
    from smithers import Signal, Task, Workflow, smithers

    class Callback(msgspec.Struct):
        ok: bool
        log: str

    @smithers
    def waits(ctx):
        return Workflow(
            Task(id="start", output=int, value=1),
            Signal(id="callback", output=Callback),
            Task(
                id="report",
                output=str,
                needs={"cb": "callback"},
                run=lambda cb: f"ok={cb.ok} log={cb.log}",
            ),
            name="waits",
        )
"""

# A gate first, then a signal: a signal can be delivered while the run waits on the gate.
GATE_THEN_SIGNAL = """
    import msgspec
    from smithers import Approval, ApprovalRequest, Signal, Task, Workflow, smithers

    class Callback(msgspec.Struct):
        ok: bool

    @smithers
    def both(ctx):
        return Workflow(
            Approval(id="gate", request=ApprovalRequest(title="Go?")),
            Signal(id="callback", output=Callback),
            Task(id="report", output=bool, needs={"cb": "callback"}, run=lambda cb: cb.ok),
            name="both",
        )
"""
