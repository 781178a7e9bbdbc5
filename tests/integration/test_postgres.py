"""Whole processes on a PostgreSQL store: a server that goes away mid-run, and a client
killed inside a transaction."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from smithers.store import Batch, open_store
from tests.integration.helpers import (
    bodies,
    finish,
    hold,
    inflight,
    kill9,
    reaping,
    release,
    smithers_cli,
    spawn,
    wait_for,
    write,
)
from tests.integration.test_crash import CHAIN
from tests.postgres_cluster import Cluster, cluster, missing_reason
from tests.store.helpers import event, node, run_record

pytestmark = pytest.mark.slow


@pytest.fixture
def own_server(postgres_cluster: Cluster) -> Iterator[Cluster]:
    """A durable server of this test's own (fsync on: it is stopped as if it crashed), which
    it may stop and start; the session's cluster fixture brings the skip-or-fail rule."""
    assert missing_reason() is None
    with cluster() as running:
        yield running


def test_a_server_lost_mid_run_is_one_error_line_and_the_run_resumes(
    own_server: Cluster, tmp_path: Path
) -> None:
    """The server stops while t1 runs: the run stops with one Error line and no traceback;
    after a restart, resume finishes it, t0's output kept and t1 run again."""
    url = own_server.create_database("lost")
    write(tmp_path / "chain.py", CHAIN)
    hold(tmp_path, "r", "t1")
    proc = spawn(url, "run", "chain.py", "--run-id", "r", cwd=tmp_path)  # type: ignore[arg-type]
    with reaping(proc):
        wait_for(inflight(tmp_path, "r", "t1"), "t1 in flight", proc=proc)
        with open_store(url) as store:
            t0 = store.output("r", "t0", ())
        own_server.stop()
        release(tmp_path, "r")
        stopped = finish(proc)
    assert stopped.code != 0
    assert "Traceback" not in stopped.err
    assert len(stopped.errors) == 1, stopped.err
    assert stopped.errors[0].startswith("Error: The PostgreSQL store at " + url)
    assert "resume" in stopped.errors[0]

    own_server.start()
    resumed = smithers_cli(url, "resume", "r", cwd=tmp_path)  # type: ignore[arg-type]
    assert resumed.code == 0, resumed.err
    assert "Run r finished." in resumed.out
    with open_store(url) as store:
        assert store.output("r", "t0", ()) == t0
        finished = [e.node_id for e in store.events(run_id="r") if e.type == "node.finished"]
    assert sorted(finished) == ["t0", "t1", "t2", "t3"]
    ran = bodies(tmp_path, "r")
    assert ran["t0"] == [1]
    assert len(ran["t1"]) == 2


HOLDER = """
import sys
from smithers.store import Batch, open_store
from smithers.store.records import NewEvent, NodeRecord

store = open_store(sys.argv[1])
original = store._pool.run


def held(fn, *, write):
    def inside(cursor):
        result = fn(cursor)
        print("holding", flush=True)
        sys.stdin.readline()  # never answered: the parent kills us here
        return result

    return original(inside if write else fn, write=write)


store._pool.run = held
store.commit(
    "r",
    Batch(
        run={"status": "finished"},
        nodes=[NodeRecord(node_id="n2", kind="task", state="finished")],
        events=[NewEvent(type="run.finished", at="t")],
    ),
    token=None,
)
"""


def test_a_client_killed_inside_a_transaction_leaves_nothing_and_no_lock(
    postgres_cluster: Cluster, tmp_path: Path
) -> None:
    """kill -9 of a writer holding the run's row and the event counter: none of its writes
    land, and the next writer gets both at once (the server ends the dead session)."""
    url = postgres_cluster.create_database("killed_in_txn")
    with open_store(url) as store:
        store.create_run(run_record("r"), Batch(events=[event("run.started")]))
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    proc = subprocess.Popen(
        [sys.executable, str(script), url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    with reaping(proc):
        assert proc.stdout is not None
        assert proc.stdout.readline() == "holding\n"
        kill9(proc)
    with open_store(url) as store:
        done = store.commit(
            "r", Batch(nodes=[node("n1")], events=[event("node.started")]), token=None
        )
        assert done.seqs == (2,)
        loaded = store.load("r")
        assert loaded is not None
        assert loaded.run.status == "running"
        assert list(loaded.nodes) == [("n1", ())]
        assert [e.type for e in store.events()] == ["run.started", "node.started"]
