"""Refusals shared by every command: unknown run, a store path that is a file, no store.

Each is exit 4 with exactly one `Error:` line, and writes nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.helpers import GATE, invoke, one_error, store_state, write

# Commands that name a run; RUN is replaced by the run id under test.
RUN_COMMANDS = [
    ["status", "RUN"],
    ["resume", "RUN"],
    ["output", "RUN", "build"],
    ["events", "RUN"],
    ["cancel", "RUN"],
    ["approve", "RUN"],
    ["deny", "RUN", "--node", "gate"],
    ["signal", "RUN", "--node", "callback", "--data", "{}"],
    ["graph", "--run", "RUN"],
]
# Commands that only read the store.
STORE_COMMANDS = [["runs"], ["approvals"], ["events"]]


def _with(command: list[str], run_id: str) -> list[str]:
    return [run_id if arg == "RUN" else arg for arg in command]


def _ids(commands: list[list[str]]) -> list[str]:
    return [" ".join(c) for c in commands]


@pytest.fixture
def parked(tmp_path: Path, store_dir: Path) -> str:
    """A run (r1) of the gated workflow parked at its gate, in store_dir."""
    write(tmp_path, "gate.py", GATE)
    assert invoke("--store", str(store_dir), "run", "gate.py", "--run-id", "r1").code == 3
    return "r1"


@pytest.mark.parametrize("command", RUN_COMMANDS, ids=_ids(RUN_COMMANDS))
def test_unknown_run_is_refused(
    tmp_path: Path, store_dir: Path, parked: str, command: list[str]
) -> None:
    """An unknown run id names the store and how to list runs; nothing is written."""
    before = store_state(store_dir)
    result = invoke("--store", str(store_dir), *_with(command, "nope"))
    assert one_error(result) == (
        f"Error: No run `nope` in the store at {store_dir}; list runs with `smithers runs`."
    )
    assert store_state(store_dir) == before


@pytest.mark.parametrize("command", RUN_COMMANDS, ids=_ids(RUN_COMMANDS))
def test_unknown_run_with_json_prints_an_error_document(
    tmp_path: Path, store_dir: Path, parked: str, command: list[str]
) -> None:
    """With --json (after the command) a refusal prints the error document on stdout (agents
    read stdout) and the one `Error:` line on stderr."""
    result = invoke(*_with(command, "nope"), "--json", "--store", str(store_dir))
    message = f"No run `nope` in the store at {store_dir}; list runs with `smithers runs`."
    assert result.code == 4
    document = result.json()["error"]
    assert document["message"] == message
    assert document["type"] in ("RunNotFoundError", "UnknownRunError")  # approve/deny: the latter
    assert result.err_lines == [f"Error: {message}"]


@pytest.mark.parametrize(
    "command", RUN_COMMANDS + STORE_COMMANDS, ids=_ids(RUN_COMMANDS + STORE_COMMANDS)
)
def test_store_path_that_is_a_file(tmp_path: Path, command: list[str]) -> None:
    """--store naming a file is refused and the file is left as it was."""
    file = tmp_path / "not-a-store"
    file.write_text("keep me", encoding="utf-8")
    result = invoke("--store", str(file), *_with(command, "r1"))
    assert one_error(result) == (
        f"Error: The store path {file} is a file; pass a directory (for example --store .smithers)."
    )
    assert file.read_text(encoding="utf-8") == "keep me"


@pytest.mark.parametrize("command", RUN_COMMANDS, ids=_ids(RUN_COMMANDS))
def test_missing_store_is_not_created(tmp_path: Path, command: list[str]) -> None:
    """A command about a run refuses a missing store and does not create it (listings of a
    missing store are empty: tests/cli/test_new_user.py)."""
    missing = tmp_path / "missing"
    result = invoke("--store", str(missing), *_with(command, "r1"))
    assert one_error(result) == (
        f"Error: No smithers store at {missing}; run a workflow first, or pass --store with the "
        "directory that holds one."
    )
    assert not missing.exists()


@pytest.mark.parametrize("command", [["status", "r1"], ["events", "r1"], ["output", "r1", "n"]])
def test_missing_default_store_is_not_created(tmp_path: Path, command: list[str]) -> None:
    """Without --store, commands about a run refuse a missing ./.smithers and do not create
    it."""
    above = [p / ".smithers" for p in tmp_path.parents if (p / ".smithers").is_dir()]
    assert above == [], "a .smithers/ above the test directory would be found first"
    result = invoke(*command)
    assert one_error(result) == (
        f"Error: No smithers store at {tmp_path / '.smithers'}; run a workflow first, or pass "
        "--store with the directory that holds one."
    )
    assert not (tmp_path / ".smithers").exists()


def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    """Click usage errors become one `Error:` line pointing at --help, with exit 4."""
    assert one_error(invoke("frobnicate")) == (
        "Error: No such command 'frobnicate' (see `smithers --help`)."
    )
    assert one_error(invoke("approve")) == (
        "Error: Missing argument 'RUN_ID' (see `smithers approve --help`)."
    )
    assert one_error(invoke("signal", "r1", "--node", "x")) == (
        "Error: Missing option '--data' (see `smithers signal --help`)."
    )
    assert not (tmp_path / ".smithers").exists()
