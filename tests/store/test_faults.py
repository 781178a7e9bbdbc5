"""Store faults (truncated file, garbage pages, full disk) are one `Error:` line, never a crash.

Each damaged store is read by a new process (a truncated map would SIGBUS it, not pytest).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest

import smithers.store.kv.lmdb_kv as lmdb_kv
from smithers.errors import StoreError
from smithers.store import Batch, open_store
from tests.integration.helpers import EXAMPLES, HANG_GUARD, child_env, smithers_cli
from tests.store.helpers import run_record

PAGE = 4096
DAMAGED = "restore it from a backup, or move it aside to start a new store."


@pytest.fixture
def parked(tmp_path: Path) -> Path:
    """A store holding run `d1` of the deploy example, parked at its approval gate."""
    store = tmp_path / "store"
    done = smithers_cli(store, "run", str(EXAMPLES / "deploy.py"), "--run-id", "d1", cwd=tmp_path)
    assert done.code == 3, done.err
    return store


def no_crash(err: str, code: int) -> None:
    """The process exited by itself, printed no traceback and offered no wrong fix."""
    assert code >= 0, f"killed by signal {-code}"
    assert "Traceback" not in err
    assert "writable directory" not in err


@pytest.mark.parametrize("command", [["status", "d1"], ["runs"], ["approve", "d1", "--yes"]])
def test_a_truncated_store_is_refused_before_it_is_mapped(parked: Path, command: list[str]) -> None:
    """data.mdb cut to half its size gives one `Error:` line naming the sizes, exit 4."""
    data = parked / "data.mdb"
    size = data.stat().st_size
    os.truncate(data, size // 2)
    done = smithers_cli(parked, *command, cwd=parked.parent)
    no_crash(done.err, done.code)
    assert done.code == 4
    assert done.err.splitlines() == [
        f"Error: The store at {parked} is damaged (data.mdb is {size // 2} bytes but its "
        f"last page ends at byte {size}); {DAMAGED}"
    ]


def test_a_store_whose_pages_are_garbage_is_damaged(parked: Path) -> None:
    """Every page after the two meta pages overwritten: one `Error:` line saying damaged."""
    data = parked / "data.mdb"
    size = data.stat().st_size
    with open(data, "r+b") as file:
        file.seek(2 * PAGE)
        file.write(b"\xff" * (size - 2 * PAGE))
    done = smithers_cli(parked, "status", "d1", cwd=parked.parent)
    no_crash(done.err, done.code)
    assert done.code == 4
    assert re.fullmatch(
        rf"Error: The store at {re.escape(str(parked))} is damaged \(.*MDB_CORRUPTED.*\); "
        + re.escape(DAMAGED),
        done.err.strip(),
    )


_READ_EVERYTHING = """
import sys
from smithers.errors import StoreError
from smithers.store import open_store
for path in sys.argv[1:]:
    try:
        store = open_store(path, readonly=True)
        store.load("d1"), store.runs(), store.events(), store.requested_gates()
        store.attempts("d1"), store.approvals("d1")
        print("ok")
    except StoreError as exc:
        print(str(exc))
"""


def test_garbage_in_any_one_page_reads_as_data_or_as_damage(parked: Path) -> None:
    """Whichever page is garbage, every read either works or raises a damaged-store error."""
    pages = (parked / "data.mdb").stat().st_size // PAGE
    copies = []
    for page in range(2, pages):
        copy = parked.parent / f"page-{page}"
        shutil.copytree(parked, copy)
        with open(copy / "data.mdb", "r+b") as file:
            file.seek(page * PAGE)
            file.write(b"\xff" * PAGE)
        copies.append(str(copy))
    proc = subprocess.run(
        [sys.executable, "-c", _READ_EVERYTHING, *copies],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
    )
    no_crash(proc.stderr, proc.returncode)
    outcomes = proc.stdout.splitlines()
    assert len(outcomes) == len(copies)
    for copy, outcome in zip(copies, outcomes, strict=True):
        assert outcome == "ok" or (
            outcome.startswith(f"The store at {copy} is damaged (") and outcome.endswith(DAMAGED)
        ), outcome
    assert any(outcome != "ok" for outcome in outcomes)


def test_a_record_that_does_not_decode_is_damage(tmp_path: Path) -> None:
    """A run record holding bytes that are not a record reads as a damaged store."""
    path = str(tmp_path / "store")
    with open_store(path) as store:
        created = store.create_run(run_record("r"), Batch())
        kv = store._kv  # below the record layer, as a bad disk would write
        kv.write(lambda txn: txn.put("runs", created.key.to_bytes(8, "big"), b"\xc1garbage"))
        with pytest.raises(
            StoreError,
            match=re.escape(f"The store at {path} is damaged (a record does not decode: "),
        ):
            store.get_run("r")


def test_an_lmdb_error_at_commit_is_a_store_error(tmp_path: Path) -> None:
    """An LMDB failure while writing becomes one StoreError naming the store and the cause."""
    path = str(tmp_path / "store")
    with open_store(path) as store:
        kv = store._kv

        def fail(_: object) -> None:
            raise lmdb.Error("mdb_txn_commit: Input/output error")

        with pytest.raises(StoreError, match=re.escape(f"The store at {path} could not commit ")):
            kv.write(fail)
        assert store.create_run(run_record("r"), Batch()).key == 1


def test_a_short_data_file_is_damaged(tmp_path: Path) -> None:
    """A data.mdb shorter than one meta page is refused by the size check."""
    (tmp_path / "data.mdb").write_bytes(b"\x00" * 100)
    with pytest.raises(StoreError, match=re.escape("is damaged (data.mdb is only 100 bytes)")):
        lmdb_kv.check_file_size(str(tmp_path))


_FILL = '''
"""Each task's output is 300 kB: eight of them do not fit a 1.2 MB disk."""

from smithers import Sequence, Task, Workflow, smithers


@smithers()
def fill(ctx):
    tasks = [Task(id=f"t{i}", output=str, run=lambda: "x" * 300_000) for i in range(8)]
    return Workflow(Sequence(*tasks), name="fill")
'''


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1.2 MB tmpfs (needs root; skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_mid_run_is_one_error_and_the_run_resumes(
    tmp_path: Path, small_disk: Path
) -> None:
    """A commit failing on a full disk is one `Error:` line, exit 4; with space, resume finishes."""
    workflow = tmp_path / "fill.py"
    workflow.write_text(textwrap.dedent(_FILL))
    store = small_disk / "store"
    done = smithers_cli(store, "run", str(workflow), "--run-id", "f1", cwd=tmp_path)
    no_crash(done.err, done.code)
    assert done.code == 4
    assert done.errors == [
        f"Error: The store at {store} could not commit (mdb_txn_commit: Input/output error), "
        "so nothing of this step was written; check the disk (free space, errors), then "
        "resume the run."
    ]
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    resumed = smithers_cli(store, "resume", "f1", cwd=tmp_path)
    assert resumed.code == 0, resumed.err
    assert "Run f1 finished." in resumed.out
