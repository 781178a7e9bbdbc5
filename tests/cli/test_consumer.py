"""``smithers events --consumer NAME``: a durable cursor per consumer; a follower killed with
SIGKILL mid-stream and restarted prints every event at least once and in order."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import smithers
from smithers import Context, Sequence, Task, Workflow
from smithers.store import open_store
from tests.cli.helpers import invoke
from tests.integration.helpers import HANG_GUARD, child_env, cli_args


@smithers.smithers
def chain(ctx: Context) -> Workflow:
    """Ten value tasks: about forty events."""
    return Workflow(
        Sequence(*[Task(id=f"t{i}", output=int, value=i) for i in range(10)]), name="chain"
    )


def _last_seq(store: Path) -> int:
    opened = open_store(str(store))
    try:
        return opened.last_seq()
    finally:
        opened.close()


def test_a_consumer_starts_after_what_it_acknowledged(tmp_path: Path) -> None:
    """A second read by the same consumer prints only newer events; another consumer all."""
    store = tmp_path / "store"
    smithers.run(chain, store=str(store), run_id="one")
    first = invoke("events", "--consumer", "chat", "--json", "--store", str(store))
    seqs = [json.loads(line)["seq"] for line in first.out.splitlines()]
    assert seqs == list(range(1, _last_seq(store) + 1))
    assert invoke("events", "--consumer", "chat", "--store", str(store)).out == ""
    smithers.run(chain, store=str(store), run_id="two")
    again = invoke("events", "--consumer", "chat", "--json", "--store", str(store))
    assert [json.loads(line)["run_id"] for line in again.out.splitlines()] == ["two"] * (
        _last_seq(store) - seqs[-1]
    )
    other = invoke("events", "--consumer", "audit", "--store", str(store))
    assert len(other.out.splitlines()) == _last_seq(store)


def _follower(store: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli_args(store, "events", "--follow", "--consumer", "chat", "--json"),
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _read(proc: subprocess.Popen[str], until: int) -> list[int]:
    assert proc.stdout is not None
    seen: list[int] = []
    while not seen or seen[-1] < until:
        line = proc.stdout.readline()
        assert line, "the follower stopped"
        seen.append(json.loads(line)["seq"])
    return seen


def test_a_follower_killed_mid_stream_resumes_without_losing_or_reordering(
    tmp_path: Path,
) -> None:
    """SIGKILL after a few events, new events meanwhile, restart: every seq, in order."""
    store = tmp_path / "store"
    smithers.run(chain, store=str(store), run_id="one")
    proc = _follower(store)
    try:
        before = _read(proc, 5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=HANG_GUARD)
    smithers.run(chain, store=str(store), run_id="two")
    last = _last_seq(store)
    proc = _follower(store)
    try:
        after = _read(proc, last)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=HANG_GUARD)
    assert before == sorted(before)  # in order
    assert after == sorted(after)
    assert after[0] <= before[-1] + 1  # nothing skipped across the kill
    assert sorted(set(before + after)) == list(range(1, last + 1))  # every event
