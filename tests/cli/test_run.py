"""`smithers run` and `smithers resume`: exit codes, output, progress, JSON and refusals."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from tests.cli.helpers import (
    EXAMPLES,
    FAILING,
    GATE,
    OK,
    invoke,
    one_error,
    store_state,
    write,
)

# Two workflows that measure how many tasks run at once (per run, across worker threads).
CONCURRENCY = """
    import threading
    import time
    from smithers import Parallel, Task, TaskInfo, Workflow, smithers

    lock = threading.Lock()
    gauges = {}
    together_barrier = threading.Barrier(3, timeout=20)

    def enter(run_id):
        with lock:
            gauge = gauges.setdefault(run_id, [0, 0])
            gauge[0] += 1
            gauge[1] = max(gauge[1], gauge[0])

    def leave(run_id):
        with lock:
            gauges[run_id][0] -= 1

    def sleepy(task: TaskInfo) -> int:
        enter(task.run_id)
        time.sleep(0.05)  # room for other tasks to overlap if the cap were ignored
        leave(task.run_id)
        return 1

    def meet(task: TaskInfo) -> int:
        enter(task.run_id)
        together_barrier.wait()  # only passes when three tasks run at once
        leave(task.run_id)
        return 1

    def peak(task: TaskInfo) -> int:
        return gauges[task.run_id][1]

    @smithers
    def capped(ctx):
        return Workflow(
            Parallel(*[Task(id=f"t{i}", output=int, run=sleepy) for i in range(4)]),
            Task(id="peak", output=int, run=peak),
            name="capped",
        )

    @smithers
    def together(ctx):
        return Workflow(
            Parallel(*[Task(id=f"t{i}", output=int, run=meet) for i in range(3)]),
            Task(id="peak", output=int, run=peak),
            name="together",
        )
"""

FLAKY = """
    import os
    from smithers import Task, Workflow, smithers

    def flaky() -> int:
        if not os.path.exists("tried"):
            open("tried", "w").close()
            raise RuntimeError("first try")
        return 2

    @smithers
    def flaky_workflow(ctx):
        return Workflow(Task(id="flaky", output=int, run=flaky, retries=1), name="flaky")
"""


def _approve_deny(run_id: str, node: str, flag: str) -> list[str]:
    return [
        f'  approve: smithers approve {run_id} --node {node}{flag} --note "..."',
        f'  deny:    smithers deny {run_id} --node {node}{flag} --note "..."',
    ]


# -- exit codes and output -----------------------------------------------------------------------


def test_run_finished_exits_0(tmp_path: Path, store_dir: Path) -> None:
    """A run that finishes prints one line and exits 0."""
    write(tmp_path, "ok.py", OK)
    result = invoke("--store", str(store_dir), "run", "ok.py", "--run-id", "o1")
    assert result.code == 0
    assert result.out == "Run o1 finished.\n"


def test_run_prints_progress_on_stderr(tmp_path: Path, store_dir: Path) -> None:
    """Progress goes to stderr: start with the pid, then each node start and finish."""
    write(tmp_path, "ok.py", OK)
    result = invoke("--store", str(store_dir), "run", "ok.py", "--run-id", "o1")
    lines = result.err_lines
    assert lines[0] == f"Run o1 started (pid {os.getpid()})"
    assert lines[1] == "  started   first (attempt 1)"
    assert re.fullmatch(r"  finished  first in \d+ ms", lines[2])
    assert lines[3] == "  started   second (attempt 1)"
    assert re.fullmatch(r"  finished  second in \d+ ms", lines[4])
    assert len(lines) == 5


def test_run_reports_a_retry_on_stderr(tmp_path: Path, store_dir: Path) -> None:
    """A failed attempt that will be retried prints a `retrying` line with its error."""
    write(tmp_path, "flaky.py", FLAKY)
    result = invoke("--store", str(store_dir), "run", "flaky.py", "--run-id", "x")
    assert result.code == 0
    assert result.err_lines[1:4] == [
        "  started   flaky (attempt 1)",
        "  retrying  flaky in 0 s (attempt 1 failed: RuntimeError: first try)",
        "  started   flaky (attempt 2)",
    ]


def test_run_failed_exits_1_and_names_the_node(tmp_path: Path, store_dir: Path) -> None:
    """A failing task fails the run: exit 1, the error and its node on stdout and stderr."""
    write(tmp_path, "fail.py", FAILING)
    result = invoke("--store", str(store_dir), "run", "fail.py", "--run-id", "f1")
    assert result.code == 1
    lines = result.out.splitlines()
    assert lines[0] == "Run f1 failed."
    assert lines[1].startswith("  ValueError at `explode`: ")
    assert lines[1].endswith("the disk is full")
    assert len(lines) == 2
    assert result.err_lines[-1] == "  failed    explode: ValueError: the disk is full"


def test_run_waiting_exits_3_and_prints_the_commands(tmp_path: Path, store_dir: Path) -> None:
    """A run parked at a gate prints its request and the exact approve/deny commands."""
    write(tmp_path, "gate.py", GATE)
    result = invoke("--store", str(store_dir), "run", "gate.py", "--run-id", "r1")
    assert result.code == 3
    flag = f" --store {store_dir}"
    assert result.out.splitlines() == [
        "Run r1 is waiting for approval.",
        "  gate: Ship plan-1.0?",
        "    One region.",
        *_approve_deny("r1", "gate", flag),
    ]
    assert result.err_lines[-1] == "  waiting   gate for approval: Ship plan-1.0?"


def test_run_waiting_for_a_signal_prints_the_signal_command(
    tmp_path: Path, store_dir: Path
) -> None:
    """A run parked at a Signal exits 3 and prints the command that delivers its data."""
    result = invoke(
        "--store", str(store_dir), "run", str(EXAMPLES / "review_sketch.py"), "--run-id", "d1"
    )
    assert result.code == 3
    assert result.out.splitlines() == [
        "Run d1 is waiting for a signal.",
        "  agent-done: waiting for a signal",
        f"  deliver: smithers signal d1 --node agent-done --store {store_dir} --data '<json>'",
    ]
    assert result.err_lines[-1] == "  waiting   agent-done for a signal"


def test_printed_store_flag_is_shell_quoted(tmp_path: Path) -> None:
    """A store path with a space is quoted so the printed command can be pasted."""
    store = tmp_path / "my store"
    write(tmp_path, "gate.py", GATE)
    result = invoke("--store", str(store), "run", "gate.py", "--run-id", "r1")
    assert result.code == 3
    quoted = shlex.quote(str(store))
    assert quoted.startswith("'")
    assert result.out.splitlines()[3:] == _approve_deny("r1", "gate", f" --store {quoted}")


def test_store_found_by_walking_up_is_left_out_of_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --store the nearest .smithers/ upwards is used and the commands omit --store."""
    project = tmp_path / "project"
    (project / ".smithers").mkdir(parents=True)
    (project / "deep" / "er").mkdir(parents=True)
    write(project, "gate.py", GATE)
    monkeypatch.chdir(project / "deep" / "er")
    result = invoke("run", "../../gate.py", "--run-id", "r1")
    assert result.code == 3
    assert result.out.splitlines()[3:] == _approve_deny("r1", "gate", "")
    assert (project / ".smithers" / "data.mdb").exists()
    assert not (project / "deep" / "er" / ".smithers").exists()
    document = invoke("--json", "run", "../../gate.py", "--run-id", "r2").json()
    assert document["pending"][0]["approve_command"] == "smithers approve r2 --node gate"
    assert document["pending"][0]["deny_command"] == "smithers deny r2 --node gate"


def test_store_from_the_environment_is_named_in_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$SMITHERS_STORE is not the default rule: the printed commands carry --store."""
    store = tmp_path / "env-store"
    monkeypatch.setenv("SMITHERS_STORE", str(store))
    write(tmp_path, "gate.py", GATE)
    result = invoke("run", "gate.py", "--run-id", "r1")
    assert result.code == 3
    assert result.out.splitlines()[3:] == _approve_deny("r1", "gate", f" --store {store}")
    assert (store / "data.mdb").exists()


def test_relative_store_is_printed_absolute(tmp_path: Path) -> None:
    """A relative --store is printed as an absolute path (the commands work from anywhere)."""
    write(tmp_path, "gate.py", GATE)
    result = invoke("run", "gate.py", "--run-id", "r1", "--store", "rel")
    assert result.code == 3
    assert result.out.splitlines()[3:] == _approve_deny("r1", "gate", f" --store {tmp_path}/rel")


# -- JSON documents ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["before", "after"])
def test_run_json_waiting_document(tmp_path: Path, store_dir: Path, where: str) -> None:
    """`run --json` prints one document: run_id, status, error, pending with both commands."""
    write(tmp_path, "gate.py", GATE)
    args = ["run", "gate.py", "--run-id", "r1", "--store", str(store_dir)]
    args = ["--json", *args] if where == "before" else [*args, "--json"]
    result = invoke(*args)
    assert result.code == 3
    document = result.json()
    assert set(document) >= {"run_id", "status", "error", "pending"}
    assert document["run_id"] == "r1"
    assert document["status"] == "waiting-approval"
    assert document["error"] is None
    (pending,) = document["pending"]
    assert set(pending) >= {
        "node_id",
        "iteration",
        "kind",
        "request",
        "approve_command",
        "deny_command",
    }
    assert pending["node_id"] == "gate"
    assert pending["iteration"] == []
    assert pending["kind"] == "approval"
    assert pending["request"] == {
        "title": "Ship plan-1.0?",
        "summary": "One region.",
        "metadata": {"risk": "low"},
    }
    assert pending["approve_command"] == f"smithers approve r1 --node gate --store {store_dir}"
    assert pending["deny_command"] == f"smithers deny r1 --node gate --store {store_dir}"
    assert result.err_lines[0] == f"Run r1 started (pid {os.getpid()})"


def test_run_json_failed_document(tmp_path: Path, store_dir: Path) -> None:
    """A failed run's document carries the error's type, message and node."""
    write(tmp_path, "fail.py", FAILING)
    result = invoke("--store", str(store_dir), "--json", "run", "fail.py", "--run-id", "f1")
    assert result.code == 1
    document = result.json()
    assert document["status"] == "failed"
    assert document["pending"] == []
    assert document["error"]["type"] == "ValueError"
    assert document["error"]["node_id"] == "explode"
    assert document["error"]["message"].endswith("the disk is full")


def test_run_json_finished_document(tmp_path: Path, store_dir: Path) -> None:
    """A finished run's document has no error and nothing pending."""
    write(tmp_path, "ok.py", OK)
    result = invoke("--store", str(store_dir), "run", "ok.py", "--json", "--run-id", "o1")
    assert result.code == 0
    assert {k: v for k, v in result.json().items() if k in ("run_id", "status", "error")} == {
        "run_id": "o1",
        "status": "finished",
        "error": None,
    }
    assert result.json()["pending"] == []


# -- options -------------------------------------------------------------------------------------


def test_run_generates_a_run_id(tmp_path: Path, store_dir: Path) -> None:
    """Without --run-id a valid id is generated and the run is stored under it."""
    write(tmp_path, "ok.py", OK)
    result = invoke("--store", str(store_dir), "--json", "run", "ok.py")
    assert result.code == 0
    run_id = result.json()["run_id"]
    assert re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", run_id)
    second = invoke("--store", str(store_dir), "--json", "run", "ok.py").json()["run_id"]
    assert second != run_id
    listed = [r["run_id"] for r in invoke("--store", str(store_dir), "--json", "runs").json()]
    assert listed == [run_id, second]


def test_run_input_inline_and_from_a_file(tmp_path: Path, store_dir: Path) -> None:
    """--input JSON and --input @file.json both reach the build function."""
    write(tmp_path, "gate.py", GATE)
    (tmp_path / "in.json").write_text('{"version": "3.1"}', encoding="utf-8")
    inline = invoke(
        "--store", str(store_dir), "--json", "run", "gate.py", "--input", '{"version": "2.5"}'
    )
    from_file = invoke("--store", str(store_dir), "--json", "run", "gate.py", "--input", "@in.json")
    assert inline.json()["pending"][0]["request"]["title"] == "Ship plan-2.5?"
    assert from_file.json()["pending"][0]["request"]["title"] == "Ship plan-3.1?"


def test_max_concurrency_caps_tasks_running_at_once(tmp_path: Path, store_dir: Path) -> None:
    """--max-concurrency 1 runs a Parallel of four tasks one at a time, and is recorded."""
    write(tmp_path, "conc.py", CONCURRENCY)
    result = invoke(
        "--store",
        str(store_dir),
        "run",
        "conc.py:capped",
        "--run-id",
        "c1",
        "--max-concurrency",
        "1",
    )
    assert result.code == 0, result
    assert invoke("--store", str(store_dir), "output", "c1", "peak").out == "1\n"
    status = invoke("--store", str(store_dir), "--json", "status", "c1").json()
    assert status["run"]["max_concurrency"] == 1


def test_max_concurrency_lets_that_many_run_together(tmp_path: Path, store_dir: Path) -> None:
    """--max-concurrency 3 lets three tasks run at once (they meet at a barrier)."""
    write(tmp_path, "conc.py", CONCURRENCY)
    result = invoke(
        "--store",
        str(store_dir),
        "run",
        "conc.py:together",
        "--run-id",
        "c3",
        "--max-concurrency",
        "3",
    )
    assert result.code == 0, result
    assert invoke("--store", str(store_dir), "output", "c3", "peak").out == "3\n"


# -- resume --------------------------------------------------------------------------------------


def test_resume_of_a_waiting_run_waits_again(tmp_path: Path, store_dir: Path) -> None:
    """Resuming a run still waiting for a person parks it again: exit 3, same commands."""
    write(tmp_path, "gate.py", GATE)
    first = invoke("--store", str(store_dir), "run", "gate.py", "--run-id", "r1")
    result = invoke("--store", str(store_dir), "resume", "r1")
    assert result.code == 3
    assert result.out == first.out
    assert result.err_lines[0] == f"Run r1 resumed (pid {os.getpid()})"
    assert not (tmp_path / "shipped.txt").exists()


def test_resume_after_a_recorded_approval_finishes(tmp_path: Path, store_dir: Path) -> None:
    """`approve --no-resume` then `resume` applies the decision: the run finishes, exit 0."""
    write(tmp_path, "gate.py", GATE)
    invoke("--store", str(store_dir), "run", "gate.py", "--run-id", "r1")
    assert invoke("--store", str(store_dir), "approve", "r1", "--no-resume").code == 0
    result = invoke("--store", str(store_dir), "resume", "r1")
    assert result.code == 0
    assert result.out == "Run r1 finished.\n"
    assert (tmp_path / "shipped.txt").read_text() == "plan-1.0"


def test_resume_runs_in_the_recorded_working_directory(
    tmp_path: Path, store_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resume enters the directory the run started in, wherever it is invoked from."""
    write(tmp_path, "gate.py", GATE)
    invoke("--store", str(store_dir), "run", "gate.py", "--run-id", "r1")
    invoke("--store", str(store_dir), "approve", "r1", "--no-resume")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert invoke("--store", str(store_dir), "resume", "r1").code == 0
    assert (tmp_path / "shipped.txt").exists()
    assert not (elsewhere / "shipped.txt").exists()


def test_resume_of_ended_runs_reports_them(tmp_path: Path, store_dir: Path) -> None:
    """Resuming a finished, failed or cancelled run runs nothing and exits 0, 1, 2."""
    write(tmp_path, "ok.py", OK)
    write(tmp_path, "fail.py", FAILING)
    write(tmp_path, "gate.py", GATE)
    invoke("--store", str(store_dir), "run", "ok.py", "--run-id", "o1")
    invoke("--store", str(store_dir), "run", "fail.py", "--run-id", "f1")
    invoke("--store", str(store_dir), "run", "gate.py", "--run-id", "c1")
    invoke("--store", str(store_dir), "cancel", "c1")
    before = store_state(store_dir)
    finished = invoke("--store", str(store_dir), "resume", "o1")
    failed = invoke("--store", str(store_dir), "resume", "f1")
    cancelled = invoke("--store", str(store_dir), "resume", "c1")
    assert (finished.code, failed.code, cancelled.code) == (0, 1, 2)
    assert finished.out == "Run o1 finished.\n"
    assert failed.out.splitlines()[0] == "Run f1 failed."
    assert cancelled.out == "Run c1 was cancelled.\n"
    assert store_state(store_dir) == before


def test_resume_with_workflow_after_the_file_moved(tmp_path: Path, store_dir: Path) -> None:
    """--workflow loads the definition from a new place when the recorded file is gone."""
    write(tmp_path, "gate.py", GATE)
    invoke("--store", str(store_dir), "run", "gate.py", "--run-id", "r1")
    invoke("--store", str(store_dir), "approve", "r1", "--no-resume")
    (tmp_path / "gate.py").rename(tmp_path / "moved.py")
    result = invoke("--store", str(store_dir), "resume", "r1", "--workflow", "moved.py")
    assert result.code == 0, result
    assert result.out == "Run r1 finished.\n"


# -- refusals: exit 4, one exact line, nothing written -------------------------------------------


@pytest.fixture
def busy_store(tmp_path: Path, store_dir: Path) -> Path:
    """A store holding one parked run (r1), to prove refused commands leave it untouched."""
    write(tmp_path, "gate.py", GATE)
    assert invoke("--store", str(store_dir), "run", "gate.py", "--run-id", "r1").code == 3
    return store_dir


def test_run_missing_file_creates_no_store(tmp_path: Path, store_dir: Path) -> None:
    """A missing workflow file is refused before the store is created."""
    result = invoke("--store", str(store_dir), "run", "missing.py")
    assert one_error(result) == (
        "Error: No workflow file at `missing.py`; pass an existing .py file as FILE[:ATTR]."
    )
    assert not store_dir.exists()


def test_run_bad_json_input_writes_nothing(tmp_path: Path, busy_store: Path) -> None:
    """--input that is not JSON is refused and the store is unchanged."""
    before = store_state(busy_store)
    result = invoke("--store", str(busy_store), "run", "gate.py", "--input", "{x")
    assert one_error(result) == (
        "Error: --input '{x' is not valid JSON (JSON is malformed: object keys must be strings "
        "(byte 1)); pass a JSON document or @file.json."
    )
    assert store_state(busy_store) == before


def test_run_input_file_missing_writes_nothing(tmp_path: Path, busy_store: Path) -> None:
    """--input @file for a missing file is refused and the store is unchanged."""
    before = store_state(busy_store)
    result = invoke("--store", str(busy_store), "run", "gate.py", "--input", "@nope.json")
    assert one_error(result) == (
        "Error: --input file `nope.json` cannot be read (No such file or directory); pass an "
        "existing JSON file as @file.json."
    )
    assert store_state(busy_store) == before


def test_run_input_of_the_wrong_type_writes_nothing(tmp_path: Path, busy_store: Path) -> None:
    """Input that does not match the declared type is refused and the store is unchanged."""
    before = store_state(busy_store)
    result = invoke("--store", str(busy_store), "run", "gate.py", "--input", '{"version": 3}')
    assert one_error(result) == (
        "Error: Input for `gated` does not match `In`: Expected `str`, got `int` - at "
        "`$.version`; pass input matching `In`."
    )
    assert store_state(busy_store) == before


def test_run_compile_error_creates_no_store(tmp_path: Path, store_dir: Path) -> None:
    """A tree that does not compile is refused before the store is created."""
    write(
        tmp_path,
        "dup.py",
        """
        from smithers import Parallel, Sequence, Task, Workflow, smithers

        @smithers
        def dup(ctx):
            return Workflow(
                Sequence(Task(id="a", output=int, value=1)),
                Parallel(Task(id="a", output=int, value=2)),
                name="dup",
            )
        """,
    )
    result = invoke("--store", str(store_dir), "run", "dup.py")
    assert one_error(result) == (
        "Error: Duplicate node id `a` at `Workflow(dup)/Parallel[1]/Task(a)`; "
        "an element at `Workflow(dup)/Sequence[0]/Task(a)` has it too; ids must be unique within "
        "a workflow."
    )
    assert not store_dir.exists()


def test_run_invalid_run_id_writes_nothing(tmp_path: Path, busy_store: Path) -> None:
    """A run id outside the id alphabet is refused and the store is unchanged."""
    before = store_state(busy_store)
    result = invoke("--store", str(busy_store), "run", "gate.py", "--run-id", "bad id!")
    assert one_error(result) == (
        "Error: --run-id 'bad id!' is invalid; run ids must match [A-Za-z0-9_.:-]{1,128}."
    )
    assert store_state(busy_store) == before


def test_run_taken_run_id_writes_nothing(tmp_path: Path, busy_store: Path) -> None:
    """A run id already in the store is refused, suggesting resume; the store is unchanged."""
    before = store_state(busy_store)
    result = invoke("--store", str(busy_store), "run", "gate.py", "--run-id", "r1")
    assert one_error(result) == (
        "Error: Run id `r1` is already taken in this store; pass another --run-id, or continue "
        "it with `smithers resume r1`."
    )
    assert store_state(busy_store) == before


def test_run_max_concurrency_below_one_writes_nothing(tmp_path: Path, busy_store: Path) -> None:
    """--max-concurrency 0 is refused and the store is unchanged."""
    before = store_state(busy_store)
    result = invoke("--store", str(busy_store), "run", "gate.py", "--max-concurrency", "0")
    assert one_error(result) == (
        "Error: Invalid value for '--max-concurrency': 0 is not in the range x>=1 "
        "(see `smithers run --help`)."
    )
    assert store_state(busy_store) == before


def test_run_store_path_that_is_a_file(tmp_path: Path) -> None:
    """--store naming a file is refused and the file is left as it was."""
    write(tmp_path, "ok.py", OK)
    file = tmp_path / "afile"
    file.write_text("keep me", encoding="utf-8")
    result = invoke("--store", str(file), "run", "ok.py")
    assert one_error(result) == (
        f"Error: The store path {file} is a file; pass a directory (for example --store .smithers)."
    )
    assert file.read_text(encoding="utf-8") == "keep me"


def test_resume_unknown_run_writes_nothing(tmp_path: Path, busy_store: Path) -> None:
    """Resuming an id the store does not hold names the store and how to list runs."""
    before = store_state(busy_store)
    result = invoke("--store", str(busy_store), "resume", "nope")
    assert one_error(result) == (
        f"Error: No run `nope` in the store at {busy_store}; list runs with `smithers runs`."
    )
    assert store_state(busy_store) == before


def test_resume_when_the_definition_cannot_load_writes_nothing(
    tmp_path: Path, busy_store: Path
) -> None:
    """A recorded file that is gone is refused with the --workflow hint; nothing is written."""
    (tmp_path / "gate.py").rename(tmp_path / "moved.py")
    before = store_state(busy_store)
    result = invoke("--store", str(busy_store), "resume", "r1")
    assert one_error(result) == (
        "Error: Cannot load the workflow run `r1` was started from (no workflow file at "
        f"`{tmp_path / 'gate.py'}`); pass --workflow FILE[:ATTR]."
    )
    assert store_state(busy_store) == before


def test_json_error_prints_an_error_document(tmp_path: Path, busy_store: Path) -> None:
    """With --json a refused command prints the error document on stdout and one Error line."""
    result = invoke("--store", str(busy_store), "--json", "resume", "nope")
    message = f"No run `nope` in the store at {busy_store}; list runs with `smithers runs`."
    assert result.code == 4
    assert result.json() == {"error": {"type": "RunNotFoundError", "message": message}}
    assert result.err_lines == [f"Error: {message}"]
