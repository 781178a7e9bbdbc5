"""The CLI in real processes: exit codes, and a decision resuming the run in a new process."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.helpers import FAILING, GATE, write

pytestmark = pytest.mark.slow


def _smithers(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m smithers ARGS` in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "smithers", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_run_waits_then_the_printed_approve_command_finishes_it(tmp_path: Path) -> None:
    """`run` exits 3; running the approve command it printed exits 0 and finishes the run."""
    store = tmp_path / "store"
    write(tmp_path, "gate.py", GATE)
    started = _smithers(tmp_path, "run", "gate.py", "--run-id", "r1", "--store", str(store))
    assert started.returncode == 3, started.stderr
    approve_line = next(
        line for line in started.stdout.splitlines() if line.startswith("  approve: ")
    )
    command = shlex.split(approve_line.removeprefix("  approve: "))
    assert command[:2] == ["smithers", "approve"]
    assert not (tmp_path / "shipped.txt").exists()
    approved = _smithers(tmp_path, *command[1:], "--note", "ship it")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout == "Run r1 finished.\n"
    assert (tmp_path / "shipped.txt").read_text() == "plan-1.0"
    status = _smithers(tmp_path, "--store", str(store), "--json", "status", "r1")
    assert status.returncode == 0
    assert json.loads(status.stdout)["run"]["status"] == "finished"


def test_failing_workflow_exits_1(tmp_path: Path) -> None:
    """A run whose task raises exits 1 from a real process, with the error on stdout."""
    write(tmp_path, "fail.py", FAILING)
    failed = _smithers(tmp_path, "--store", "s", "run", "fail.py", "--run-id", "f1")
    assert failed.returncode == 1, failed.stderr
    assert failed.stdout.splitlines()[0] == "Run f1 failed."
    assert not [line for line in failed.stderr.splitlines() if line.startswith("Error:")]


def test_user_error_exits_4_with_one_line(tmp_path: Path) -> None:
    """A refused command exits 4 from a real process with exactly one stderr line."""
    result = _smithers(tmp_path, "--store", "s", "run", "missing.py")
    assert result.returncode == 4
    assert result.stdout == ""
    assert result.stderr == (
        "Error: No workflow file at `missing.py`; pass an existing .py file as FILE[:ATTR].\n"
    )
    assert not (tmp_path / "s").exists()
