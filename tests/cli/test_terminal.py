"""Behaviour that needs a real terminal or a long-lived process: `events --follow`, and the
confirmation `approve`/`deny` ask for in an interactive terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import smithers
from smithers import Sequence, Task, Workflow
from smithers.store import open_store

GATE = """
from smithers import Approval, ApprovalRequest, Sequence, Task, Workflow, smithers


@smithers
def gated(ctx):
    return Workflow(
        Sequence(
            Task(id="build", output=int, value=1),
            Approval(
                id="gate",
                request=ApprovalRequest(title="Ship it?", summary="3 regions",
                                        metadata={"risk": "low"}),
            ),
        ),
        name="gated",
    )
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SMITHERS_STORE", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _read_until(fd: int, needle: bytes, limit: float = 30.0) -> bytes:
    """Read from ``fd`` until ``needle`` shows up (a hang guard, not a timing assertion)."""
    seen = b""
    deadline = time.monotonic() + limit
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"never saw {needle!r}; got {seen!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            assert chunk, f"stream closed before {needle!r}; got {seen!r}"
            seen += chunk
    return seen


def _workflow() -> smithers.WorkflowDefinition:
    @smithers.smithers
    def chain(ctx: smithers.Context) -> smithers.Element:
        return Workflow(
            Sequence(Task(id="a", output=int, value=1), Task(id="b", output=int, value=2)),
            name="chain",
        )

    return chain


def test_events_follow_prints_each_new_event_as_one_json_line(tmp_path: Path) -> None:
    """`events --follow --json` prints one JSON event per line, gap-free, including events
    committed after it started; SIGINT ends it."""
    store_dir = tmp_path / "store"
    with open_store(str(store_dir)) as store:
        smithers.run(_workflow(), store=store, run_id="first")
    lines: list[dict[str, object]] = []
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "smithers",
            "--store",
            str(store_dir),
            "events",
            "--follow",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=_env(),
    ) as follower:
        assert follower.stdout is not None
        out = follower.stdout

        def take_until(kind: str, run_id: str) -> None:
            while not any(e["type"] == kind and e["run_id"] == run_id for e in lines):
                line = out.readline()
                assert line, "the follower stopped early"
                lines.append(json.loads(line))

        try:
            take_until("run.finished", "first")
            with open_store(str(store_dir)) as store:
                smithers.run(_workflow(), store=store, run_id="second")
            take_until("run.finished", "second")
        finally:
            follower.send_signal(signal.SIGINT)
            follower.wait(timeout=30)
    seqs = [e["seq"] for e in lines]
    assert seqs == list(range(1, len(seqs) + 1))
    assert set(lines[0]) == {"seq", "type", "run_id", "node_id", "iteration", "at", "data"}
    assert [e["type"] for e in lines if e["run_id"] == "second"][:2] == [
        "run.started",
        "node.started",
    ]


def _approve_in_a_terminal(tmp_path: Path, answer: bytes) -> tuple[int, bytes]:
    """Run `smithers approve` with a pseudo-terminal as stdin; answer its question."""
    controller, terminal = pty.openpty()
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "smithers",
            "--store",
            str(tmp_path / "store"),
            "approve",
            "g1",
            "--node",
            "gate",
            "--no-resume",
            "--by",
            "alice",
        ],
        stdin=terminal,
        stdout=subprocess.DEVNULL,
        stderr=terminal,
        env=_env(),
        cwd=tmp_path,
    ) as proc:
        os.close(terminal)
        try:
            shown = _read_until(controller, b"Approve it?")
            os.write(controller, answer + b"\n")
            proc.wait(timeout=60)
        finally:
            os.close(controller)
            if proc.poll() is None:
                proc.kill()
    return proc.returncode, shown


def test_approve_in_a_terminal_shows_the_request_and_refuses_without_a_yes(
    tmp_path: Path,
) -> None:
    """In a terminal, approve shows the title, summary, metadata and waiting time, asks, and
    writes nothing when the answer is no."""
    (tmp_path / "gated.py").write_text(GATE)
    with open_store(str(tmp_path / "store")) as store:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "smithers",
                "--store",
                str(tmp_path / "store"),
                "run",
                "gated.py",
                "--run-id",
                "g1",
            ],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            check=False,
        )
        before = store.last_seq()
    code, shown = _approve_in_a_terminal(tmp_path, b"n")
    text = shown.decode()
    assert "Gate gate of run g1" in text
    assert "Ship it?" in text
    assert "3 regions" in text
    assert "risk: low" in text
    assert "waiting since" in text
    assert code == 4
    with open_store(str(tmp_path / "store")) as store:
        assert store.last_seq() == before
        assert [a.status for a in store.approvals("g1")] == ["requested"]


def test_approve_in_a_terminal_records_after_a_yes(tmp_path: Path) -> None:
    """In a terminal, answering yes records the decision."""
    (tmp_path / "gated.py").write_text(GATE)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "smithers",
            "--store",
            str(tmp_path / "store"),
            "run",
            "gated.py",
            "--run-id",
            "g1",
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        check=False,
    )
    code, _ = _approve_in_a_terminal(tmp_path, b"y")
    assert code == 0
    with open_store(str(tmp_path / "store")) as store:
        (record,) = store.approvals("g1")
        assert (record.status, record.decided_by) == ("approved", "alice")
