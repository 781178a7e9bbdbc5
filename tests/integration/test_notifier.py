"""``examples/notifier.py``: events become chat messages posted to the example's chat server;
the notifier killed with SIGKILL mid-stream and restarted delivers every message at least
once and in order, with approve/deny links for a gate."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import smithers
from smithers import Approval, ApprovalRequest, Context, Sequence, Task, Workflow
from smithers.store import open_store
from tests.integration.helpers import HANG_GUARD, child_env, wait_for

pytestmark = pytest.mark.slow

NOTIFIER = str(Path(__file__).resolve().parents[2] / "examples" / "notifier.py")
INTERESTING = {"run.started", "run.finished", "approval.requested", "approval.decided"}


@smithers.smithers
def gated(ctx: Context) -> Workflow:
    """Five tasks, then a gate."""
    return Workflow(
        Sequence(
            *[Task(id=f"t{i}", output=int, value=i) for i in range(5)],
            Approval(id="gate", request=ApprovalRequest(title="Ship it?")),
        ),
        name="gated",
    )


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, NOTIFIER, *args],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=HANG_GUARD)


def _seqs(chat: Path) -> list[int]:
    if not chat.exists():
        return []
    return [json.loads(line)["seq"] for line in chat.read_text().splitlines()]


def test_the_notifier_survives_a_kill_without_losing_or_reordering(tmp_path: Path) -> None:
    """Messages for runs started before and during the outage all arrive, in order."""
    store, chat = tmp_path / "store", tmp_path / "chat.log"
    for run_id in ("a", "b", "c"):
        smithers.run(gated, store=str(store), run_id=run_id)
    receiver = _start("receive", "--port", "0", "--out", str(chat))
    try:
        assert receiver.stdout is not None
        url = receiver.stdout.readline().split()[-1]
        args = ("run", "--to", url, "--store", str(store), "--base-url", "http://smithers.test")
        notifier = _start(*args)
        wait_for(lambda: len(_seqs(chat)) >= 3, "the first messages", proc=notifier)
        _kill(notifier)
        smithers.approve("a", "gate", store=str(store), by="lead")
        smithers.resume("a", store=str(store), definition=gated)
        opened = open_store(str(store))
        try:
            wanted = [e.seq for e in opened.events() if e.type in INTERESTING]
        finally:
            opened.close()
        notifier = _start(*args)
        wait_for(lambda: _seqs(chat)[-1:] == wanted[-1:], "every message", proc=notifier)
        _kill(notifier)
    finally:
        _kill(receiver)
    seqs = _seqs(chat)
    assert seqs == sorted(seqs)  # in order (a repeat can only follow itself)
    assert sorted(set(seqs)) == wanted  # every one, at least once
    messages = [json.loads(line)["text"] for line in chat.read_text().splitlines()]
    gate = next(m for m in messages if "needs a decision" in m)
    assert "approve: http://smithers.test/hooks/" in gate
    assert "Run a: `gate` approved by lead" in messages
