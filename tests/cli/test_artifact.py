"""``smithers artifact ls/get``: a run's artifacts listed, their bytes written to stdout or a
file, and a damaged artifact refused on read (exit 4, nothing written)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import smithers
from smithers import Artifact, Context, Task, TaskInfo, Workflow
from smithers.store import open_store
from tests.cli.helpers import invoke, one_error

TEXT = "2 passed in 0.1s\n"
SHA = hashlib.sha256(TEXT.encode()).hexdigest()


def _stored(tmp_path: Path) -> Path:
    def body(task: TaskInfo) -> Artifact:
        return task.artifacts.put(TEXT, name="test.log")

    @smithers.smithers
    def flow(ctx: Context) -> Workflow:
        return Workflow(Task(id="t", output=Artifact, run=body), name="flow")

    store = tmp_path / "store"
    assert smithers.run(flow, store=str(store), run_id="r").status == "finished"
    return store


def test_ls_and_get_show_a_runs_artifacts(tmp_path: Path) -> None:
    """ls lists ref, size, type and name; get prints the bytes or writes them with -o."""
    store = _stored(tmp_path)
    listed = invoke("artifact", "ls", "r", "--store", str(store))
    assert listed.code == 0, listed.err
    assert listed.out.split() == [f"res://sha256/{SHA}", str(len(TEXT)), "text/plain", "test.log"]
    assert invoke("artifact", "ls", "r", "--store", str(store), "--json").json()[0]["size"] == 17
    printed = invoke("artifact", "get", f"res://sha256/{SHA}", "--store", str(store))
    assert (printed.code, printed.out) == (0, TEXT)
    target = tmp_path / "copy.log"
    written = invoke("artifact", "get", SHA, "-o", str(target), "--store", str(store))
    assert written.code == 0, written.err
    assert target.read_text() == TEXT


def test_a_corrupted_artifact_is_refused_on_read(tmp_path: Path) -> None:
    """Bytes changed in the store fail the digest check: exit 4 with a sentence, no output."""
    store = _stored(tmp_path)
    opened = open_store(str(store))
    try:
        opened._kv.write(lambda txn: txn.put("artifacts", SHA.encode(), b"2 failed\n"))
    finally:
        opened.close()
    target = tmp_path / "copy.log"
    result = invoke("artifact", "get", SHA, "-o", str(target), "--store", str(store))
    assert result.code == 4
    assert f"Artifact {SHA} in the store at" in one_error(result)
    assert "is damaged" in one_error(result)
    assert not target.exists()
