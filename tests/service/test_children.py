"""The service's child processes, forked from the fork server or started as `python -m
smithers`: either way a child runs the command in the run's directory, with the service's
environment as it is now, in a session of its own, and the service gets its exit code, its
JSON document and its last stderr line; the workflow's own exit handlers run."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import types
from pathlib import Path
from typing import Any

import msgspec
import pytest

from smithers import approve
from smithers.service import children
from smithers.service.children import finish_child, smithers_child, start_child
from tests.integration.helpers import processes, write
from tests.service.helpers import opened_store, park

# A gate, then a task that reports where and how it ran; the module registers an exit handler
# that leaves a file behind, as a workflow flushing its own logs at exit would.
PROBE = """
import atexit
import json
import os
from pathlib import Path

from smithers import Approval, ApprovalRequest, Sequence, Task, Workflow, smithers

HERE = Path(__file__).resolve().parent


def _at_exit():
    (HERE / "exited.txt").write_text(str(os.getpid()))


atexit.register(_at_exit)


def probe():
    return json.dumps(
        {
            "cwd": os.getcwd(),
            "session_leader": os.getsid(0) == os.getpid(),
            "parent": os.getppid(),
            "base_url": os.environ.get("SMITHERS_BASE_URL"),
            "marker": os.environ.get("SMITHERS_CHILD_TEST"),
        }
    )


@smithers
def probed(ctx):
    return Workflow(
        Sequence(
            Approval(id="gate", request=ApprovalRequest(title="Go?")),
            ctx.output_maybe("gate") and Task(id="probe", output=str, run=probe),
        ),
        name="probed",
    )
"""

CRASH = """
from smithers import Approval, ApprovalRequest, Sequence, Workflow, smithers

import os

if os.environ.get("SMITHERS_CRASH_ON_LOAD"):
    raise ZeroDivisionError("the module cannot load")


@smithers
def crashes(ctx):
    return Workflow(Approval(id="gate", request=ApprovalRequest(title="Go?")), name="crashes")
"""


@pytest.fixture(params=["forked", "python -m"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a child starts: forked from the fork server, or a fresh interpreter."""
    if request.param == "python -m":
        monkeypatch.setattr(children, "_FORK_SERVER", [False])
    else:
        assert children._FORK_SERVER[0], "this platform has no fork server"
    return str(request.param)


def _approved(
    folder: Path, ids: list[str], source: str = PROBE, target: str = "probe.py:probed"
) -> Path:
    """Write ``source`` to the file ``target`` names, park a run of it per id and approve
    each gate (not resumed); return the store."""
    write(folder / target.split(":")[0], source)
    store = folder / ".smithers"
    park(folder, store, target, ids)
    for run_id in ids:
        approve(run_id, "gate", store=str(store), by="ann")
    return store


def _resume(store: Path, run_id: str, cwd: Path, base_url: str | None = None) -> children.Child:
    """Resume ``run_id`` in a child, to its end."""

    async def resume() -> children.Child:
        return await smithers_child(str(store), ["resume", run_id], cwd=str(cwd), base_url=base_url)

    return asyncio.run(resume())


def _probed(store: Path, run_id: str) -> dict[str, Any]:
    """What the probe task of run ``run_id`` saw (its directory, session, parent, env)."""
    with opened_store(store) as opened:
        raw = opened.output(run_id, "probe", ())
    assert raw is not None
    seen: dict[str, Any] = json.loads(msgspec.msgpack.decode(raw))
    return seen


def test_a_resume_child_runs_where_and_as_the_run_needs(
    tmp_path: Path, way: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child resumes in the run's directory (not the service's), in its own session, with
    the environment as the service has it when it starts the child plus the base URL; the
    service reads its exit code and run document; the workflow's exit handlers run."""
    store = _approved(tmp_path, ["r"])
    monkeypatch.setenv("SMITHERS_CHILD_TEST", f"set after the service started ({way})")
    elsewhere = tmp_path / "service"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    child = _resume(store, "r", tmp_path, base_url="https://ops.example")
    assert (child.code, child.document["status"]) == (0, "finished"), child
    seen = _probed(store, "r")
    assert seen["cwd"] == str(tmp_path)
    assert seen["session_leader"] is True
    assert seen["base_url"] == "https://ops.example"
    assert seen["marker"] == f"set after the service started ({way})"
    # Forked children are the fork server's, not this process's; the others are ours.
    assert (seen["parent"] != os.getpid()) == (way == "forked")
    assert (tmp_path / "exited.txt").read_text() != str(os.getpid())


def test_a_child_that_cannot_load_reports_its_error(
    tmp_path: Path, way: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module that raises while loading: the child exits 4 with the error as its JSON
    document and its last stderr line, and nothing of it reaches the service process."""
    store = _approved(tmp_path, ["r"], CRASH, "crash.py:crashes")
    monkeypatch.setenv("SMITHERS_CRASH_ON_LOAD", "1")

    async def resume() -> children.Child:
        proc = await start_child(str(store), ["resume", "r"], cwd=str(tmp_path), base_url=None)
        assert proc.returncode is None or proc.returncode == 4
        return await finish_child(proc)

    child = asyncio.run(resume())
    assert child.code == 4, child
    assert child.error_type is not None
    assert "the module cannot load" in child.error_message
    assert "the module cannot load" in child.last_error


def test_a_child_stopped_by_sigterm_is_interrupted_and_says_so(tmp_path: Path, way: str) -> None:
    """SIGTERM (the worker stopping) reaches the child, which records its attempt as
    interrupted, releases the run and exits 130 saying it stays resumable."""
    hanging = PROBE.replace("def probe():", "def probe():\n    hang()") + HANG
    store = _approved(tmp_path, ["r"], hanging)

    async def resume_then_stop() -> children.Child:
        proc = await start_child(str(store), ["resume", "r"], cwd=str(tmp_path), base_url=None)
        ended = asyncio.ensure_future(finish_child(proc))
        for _ in range(3000):  # a hang guard, not a timing assertion
            if (tmp_path / "started").exists():
                break
            await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        return await ended

    child = asyncio.run(resume_then_stop())
    assert child.code == 130, child
    assert child.last_error == (
        "Error: interrupted; run r stays resumable with `smithers resume r`."
    )
    with opened_store(store) as opened:
        run = opened.get_run("r")
        assert run is not None
        assert (run.status, run.lease) == ("running", None)
        assert [a.outcome for a in opened.attempts("r")] == ["interrupted"]


HANG = """

def hang():
    import time

    (HERE / "started").write_text("1")
    time.sleep(60)
"""


def test_a_service_whose_main_module_cannot_be_imported_again_starts_children_plainly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service process read from stdin (its main module is no file): a forked child would
    fail importing it again, so children start as `python -m smithers` and work."""
    store = _approved(tmp_path, ["r"])
    read_from_stdin = types.ModuleType("__main__")
    read_from_stdin.__file__ = "<stdin>"
    monkeypatch.setitem(sys.modules, "__main__", read_from_stdin)
    child = _resume(store, "r", tmp_path)
    assert (child.code, child.document["status"]) == (0, "finished"), child
    assert _probed(store, "r")["parent"] == os.getpid()


def test_children_fork_again_after_the_fork_server_is_killed(tmp_path: Path) -> None:
    """The fork server killed -9 between two children (the OOM killer, an operator): the next
    child is forked from a new fork server and resumes its run to the end."""
    if not children._FORK_SERVER[0]:
        pytest.skip("this platform has no fork server")
    store = _approved(tmp_path, ["a", "b"])
    try:
        assert _resume(store, "a", tmp_path).code == 0
        (server,) = _fork_servers()
        os.kill(server, signal.SIGKILL)
        for _ in range(500):  # a hang guard: wait until it is dead (a zombie)
            if processes().get(server, ("Z",))[0] == "Z":
                break
            time.sleep(0.01)
        child = _resume(store, "b", tmp_path)
        assert (child.code, child.document["status"]) == (0, "finished"), child
        parent = _probed(store, "b")["parent"]
        assert parent in _fork_servers()
        assert parent != server
    finally:
        children._FORK_SERVER[0] = True  # the other tests fork again, whatever happened here


def _fork_servers() -> list[int]:
    """This process's live fork servers."""
    found = []
    for pid, (state, parent, _) in processes().items():
        if state == "Z" or parent != os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if b"multiprocessing.forkserver" in cmdline.read():
                    found.append(pid)
        except OSError:
            continue  # it ended while we looked
    return found


def test_a_fork_server_that_cannot_start_costs_no_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Where the fork server cannot start (a sandbox that forbids it), each child starts as
    `python -m smithers` after one line on stderr; after three failures in a row every
    child does, without trying again."""
    ids = ["a", "b", "c", "d"]
    store = _approved(tmp_path, ids)
    tried: list[str] = []

    class Forbidden:
        def __init__(self, argv: list[str], **_: object) -> None:
            tried.append(argv[-1])
            raise PermissionError("forbidden here")

    monkeypatch.setattr(children, "_Forked", Forbidden)
    monkeypatch.setattr(children, "_FORK_SERVER", [True])
    monkeypatch.setattr(children, "_FAILURES", [0])

    for run_id in ids:
        child = _resume(store, run_id, tmp_path)
        assert (child.code, child.document["status"]) == (0, "finished"), child
    assert tried == ["a", "b", "c"]
    failed = "smithers: the fork server failed (PermissionError: forbidden here); "
    assert capfd.readouterr().err.splitlines() == [
        failed + "this child starts as `python -m smithers`.",
        failed + "this child starts as `python -m smithers`.",
        failed + "children start as `python -m smithers` from now on.",
    ]
