"""Whole-process helpers: run ``python -m smithers`` in real subprocesses, coordinate with
them through files (never sleeps as assertions), and read the store they write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from smithers.store import KVStore, open_store

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
HANG_GUARD = 60.0  # seconds: only ever reached when something hangs


@attrs.frozen
class Done:
    """A finished CLI process: exit code and both streams."""

    code: int
    out: str
    err: str

    @property
    def errors(self) -> list[str]:
        """The ``Error: ...`` lines on stderr."""
        return [line for line in self.err.splitlines() if line.startswith("Error:")]


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child process: no developer store or actor leaks in."""
    env = {k: v for k, v in os.environ.items() if k not in ("SMITHERS_STORE", "SMITHERS_ACTOR")}
    env.pop("SMITHERS_CHECK_RENDER", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def cli_args(store: Path, *args: str) -> list[str]:
    """The argv of ``python -m smithers --store STORE ARGS``."""
    return [sys.executable, "-m", "smithers", "--store", str(store), *args]


def smithers_cli(store: Path, *args: str, cwd: Path, env: dict[str, str] | None = None) -> Done:
    """Run one CLI command to completion in a new process."""
    proc = subprocess.run(
        cli_args(store, *args),
        cwd=cwd,
        env=env or child_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )
    return Done(proc.returncode, proc.stdout, proc.stderr)


def spawn(
    store: Path, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start a CLI command in a new process and return at once."""
    return subprocess.Popen(
        cli_args(store, *args),
        cwd=cwd,
        env=env or child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> Done:
    """Wait for a spawned process and collect what it printed."""
    out, err = proc.communicate(timeout=HANG_GUARD)
    return Done(proc.returncode, out, err)


def kill9(proc: subprocess.Popen[str]) -> None:
    """SIGKILL a spawned process and reap it."""
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == -signal.SIGKILL


@contextmanager
def reaping(*procs: subprocess.Popen[str]) -> Iterator[None]:
    """Kill (by pid) whatever a failing test leaves running."""
    try:
        yield
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=HANG_GUARD)


def wait_for(
    check: Callable[[], Any], what: str, *, proc: subprocess.Popen[str] | None = None
) -> Any:
    """Poll ``check`` until it returns something truthy (a hang guard, not a timing check).

    Fails at once, with the process's output, if ``proc`` exits first.
    """
    deadline = time.monotonic() + HANG_GUARD
    while True:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process exited {proc.returncode} before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def processes() -> dict[int, tuple[str, int, int]]:
    """Every process's (state letter, parent pid, session id), from Linux /proc."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    raw = stat.read()
            except OSError:
                continue  # it ended while we looked
            fields = raw[raw.rindex(b")") + 2 :].split()
            found[int(entry)] = (fields[0].decode(), int(fields[1]), int(fields[3]))
    return found


def write(path: Path, source: str) -> Path:
    """Write a workflow file (dedented)."""
    path.write_text(textwrap.dedent(source).lstrip())
    return path


@contextmanager
def opened(store: Path) -> Iterator[KVStore]:
    """The LMDB store the children write, opened in this process for reading."""
    handle = open_store(str(store))
    try:
        yield handle
    finally:
        handle.close()


def event_types(store: Path, run_id: str) -> list[tuple[str, str | None]]:
    """A run's event log as (type, node_id)."""
    with opened(store) as s:
        return [(e.type, e.node_id) for e in s.events(run_id=run_id)]


def has_event(store: Path, run_id: str, kind: str, node_id: str | None = None) -> bool:
    """Whether the run's log holds an event of that type (for that node)."""
    if not (store / "data.mdb").exists():
        return False
    with opened(store) as s:
        return any(
            e.type == kind and (node_id is None or e.node_id == node_id)
            for e in s.events(run_id=run_id)
        )


def node_states(store: Path, run_id: str) -> dict[str, str]:
    """Node id (with @iteration) -> state."""
    with opened(store) as s:
        snapshot = s.load(run_id)
        assert snapshot is not None
        return {
            n + (f"@{'.'.join(map(str, it))}" if it else ""): r.state
            for (n, it), r in sorted(snapshot.nodes.items())
        }


def executions(log: Path) -> list[str]:
    """Lines of an append-only execution log (one per task body run)."""
    return log.read_text().splitlines() if log.exists() else []


def bodies(folder: Path, run_id: str) -> dict[str, list[int]]:
    """Task id -> the attempt numbers whose body ran, in order, for one run (see TASK_KIT)."""
    found: dict[str, list[int]] = {}
    for line in executions(folder / "executions.log"):
        rid, name, attempt, _pid = line.split()
        if rid == run_id:
            found.setdefault(name, []).append(int(attempt))
    return found


# Task bodies shared by the whole-process workflows: each records that it ran in an
# append-only log, and the one named in HOLD-<run_id> writes a marker and blocks until
# RELEASE-<run_id> appears, so a test can kill or interrupt it mid-flight.
TASK_KIT = '''
import os
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def ran(name, task):
    with open(os.path.join(HERE, "executions.log"), "a") as log:
        log.write(f"{task.run_id} {name} {task.attempt} {os.getpid()}\\n")


def hold_here(name, task):
    """Block while this task is the one to hold for this run, until RELEASE-<run> exists."""
    hold = os.path.join(HERE, f"HOLD-{task.run_id}")
    if not os.path.exists(hold) or open(hold).read().strip() != name:
        return
    open(os.path.join(HERE, f"INFLIGHT-{task.run_id}-{name}-{task.attempt}"), "w").close()
    while not os.path.exists(os.path.join(HERE, f"RELEASE-{task.run_id}")):
        time.sleep(0.01)
'''


def hold(folder: Path, run_id: str, node_id: str) -> None:
    """Make ``node_id`` of ``run_id`` block once it starts (see TASK_KIT)."""
    (folder / f"HOLD-{run_id}").write_text(node_id)


def release(folder: Path, run_id: str) -> None:
    """Let a held task of ``run_id`` go on."""
    (folder / f"RELEASE-{run_id}").write_text("")


def inflight(folder: Path, run_id: str, node_id: str, attempt: int = 1) -> Callable[[], bool]:
    """A check: the held task has started (and now blocks)."""
    marker = folder / f"INFLIGHT-{run_id}-{node_id}-{attempt}"
    return marker.exists
