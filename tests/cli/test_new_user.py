"""What a new user hit (issue 7): the store flag losing to the environment, bare `smithers`,
unusable run ids, JSON errors, interrupted runs that looked alive, decisions not applied yet,
tracebacks and signals in `status`, listings of a store that does not exist yet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.helpers import FAILING, GATE, OK, SIGNAL, invoke, one_error, store_state, write

# A task that interrupts its own process, as Ctrl-C would while it runs.
INTERRUPTED = """
    import os
    import signal
    from smithers import Task, Workflow, smithers

    def press_ctrl_c() -> int:
        os.kill(os.getpid(), signal.SIGINT)
        return 1

    @smithers
    def stops(ctx):
        return Workflow(
            Task(id="first", output=int, value=1),
            Task(id="ctrl-c", output=int, run=press_ctrl_c),
            name="stops",
        )
"""


# -- --store ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("before", [True, False])
def test_store_flag_wins_over_the_environment(tmp_path: Path, before: bool) -> None:
    """`--store B` (before or after the subcommand) writes into B even when $SMITHERS_STORE
    names A."""
    write(tmp_path, "ok.py", OK)
    env_store, flag_store = tmp_path / "a", tmp_path / "b"
    args = ["run", "ok.py", "--run-id", "r"]
    args = ["--store", str(flag_store), *args] if before else [*args, "--store", str(flag_store)]
    result = invoke(*args, env={"SMITHERS_STORE": str(env_store)})
    assert result.code == 0, result
    assert store_state(env_store) is None
    assert [r["run_id"] for r in store_state(flag_store)["runs"]] == ["r"]


def test_the_environment_names_the_store_without_a_flag(tmp_path: Path) -> None:
    """$SMITHERS_STORE is used when no --store is given."""
    write(tmp_path, "ok.py", OK)
    env_store = tmp_path / "a"
    result = invoke("run", "ok.py", "--run-id", "r", env={"SMITHERS_STORE": str(env_store)})
    assert result.code == 0, result
    assert [r["run_id"] for r in store_state(env_store)["runs"]] == ["r"]


# -- bare smithers, run ids, JSON errors -------------------------------------------------------


def test_bare_smithers_prints_the_help() -> None:
    """`smithers` alone prints the normal help on stdout and exits 0."""
    result = invoke()
    assert result.code == 0
    assert result.out.startswith("Usage: smithers [OPTIONS] COMMAND [ARGS]...\n")
    assert "approve" in result.out
    assert result.err == ""


def test_a_run_id_beginning_with_a_dash_is_refused(tmp_path: Path, store_dir: Path) -> None:
    """`run --run-id -x` is refused before anything is written: the id would read as an
    option in every later command."""
    write(tmp_path, "ok.py", OK)
    result = invoke("--store", str(store_dir), "run", "ok.py", "--run-id", "-x")
    assert one_error(result) == (
        "Error: --run-id '-x' is invalid; a run id may not begin with `-` (commands would read "
        "it as an option)."
    )
    assert store_state(store_dir) is None


def test_the_python_api_refuses_a_dash_run_id(tmp_path: Path) -> None:
    """`run(..., run_id="-x")` raises InputError and creates no run."""
    from smithers import Task, Workflow, run, smithers
    from smithers.errors import InputError

    @smithers
    def tiny(ctx: object) -> object:
        return Workflow(Task(id="t", output=int, value=1), name="tiny")

    with pytest.raises(InputError, match="may not begin with `-`"):
        run(tiny, store=str(tmp_path / "s"), run_id="-x")


def test_json_errors_are_a_document_on_stdout(store_dir: Path) -> None:
    """With --json an error prints `{"error": {type, message}}` on stdout as well as the
    `Error:` line on stderr, and exits 4."""
    write(store_dir.parent, "ok.py", OK)
    assert invoke("--store", str(store_dir), "run", "ok.py", "--run-id", "r").code == 0
    result = invoke("--store", str(store_dir), "status", "nope", "--json")
    assert result.code == 4
    document = json.loads(result.out)
    assert document["error"]["type"] == "RunNotFoundError"
    assert document["error"]["message"].startswith("No run `nope` in the store at ")
    assert result.errors == [f"Error: {document['error']['message']}"]


def test_json_usage_errors_are_a_document_too(store_dir: Path) -> None:
    """A usage error under --json is a UsageError document."""
    result = invoke("--json", "--store", str(store_dir), "approve")
    assert result.code == 4
    assert json.loads(result.out)["error"]["type"] == "UsageError"


def test_json_output_is_compact(tmp_path: Path, store_dir: Path) -> None:
    """`output --json` prints one compact line; without --json it is indented for people."""
    write(tmp_path, "ok.py", OK)
    assert invoke("--store", str(store_dir), "run", "ok.py", "--run-id", "r").code == 0
    assert invoke("--store", str(store_dir), "output", "r", "second", "--json").out == ('"got 1"\n')
    graph = invoke("--store", str(store_dir), "graph", "--run", "r", "--json")
    assert graph.code == 0
    assert graph.out.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "text", "document"),
    [
        (["runs"], "No runs.\n", []),
        (["approvals"], "No gates are waiting for a decision.\n", []),
        (["events"], "", []),
    ],
)
def test_listings_of_a_store_not_there_yet_are_empty(
    store_dir: Path, args: list[str], text: str, document: list[object]
) -> None:
    """runs, approvals and events on a store that does not exist yet print an empty result,
    exit 0, and create nothing."""
    result = invoke("--store", str(store_dir), *args)
    assert (result.code, result.out, result.err) == (0, text, "")
    assert invoke("--store", str(store_dir), *args, "--json").json() == document
    assert not store_dir.exists()


# -- runs that look alive, decisions not applied -------------------------------------------------


def test_an_interrupted_run_says_nothing_runs_it(tmp_path: Path, store_dir: Path) -> None:
    """After Ctrl-C, `status` and `runs` say that no process runs the run and print the exact
    resume command."""
    write(tmp_path, "stops.py", INTERRUPTED)
    stopped = invoke("--store", str(store_dir), "run", "stops.py", "--run-id", "r")
    assert stopped.code == 130, stopped
    status = invoke("--store", str(store_dir), "status", "r")
    assert "Run r  running" in status.out
    assert "  owner:    nobody: nothing is running this run (it was interrupted)" in status.out
    assert f"  go on:    smithers resume r --store {store_dir}" in status.out
    runs = invoke("--store", str(store_dir), "runs")
    assert runs.out.splitlines()[0].split()[:2] == ["r", "running*"]
    assert runs.out.splitlines()[-1] == (
        f"* interrupted: no process is running it; go on with `smithers resume r --store "
        f"{store_dir}`"
    )
    listed = invoke("--store", str(store_dir), "runs", "--json").json()
    assert listed[0]["interrupted"] is True
    assert listed[0]["resume_command"] == f"smithers resume r --store {store_dir}"
    document = invoke("--store", str(store_dir), "status", "r", "--json").json()
    assert document["interrupted"] is True
    assert document["resume_command"] == f"smithers resume r --store {store_dir}"


def test_a_decision_not_applied_says_so(tmp_path: Path, store_dir: Path) -> None:
    """A decision recorded while nothing resumed the run shows as "decided, not applied yet"
    with the resume command."""
    write(tmp_path, "gated.py", GATE)
    assert invoke("--store", str(store_dir), "run", "gated.py", "--run-id", "g").code == 3
    recorded = invoke("--store", str(store_dir), "approve", "g", "--no-resume", "--yes")
    assert recorded.code == 0, recorded
    status = invoke("--store", str(store_dir), "status", "g")
    decision = next(line for line in status.out.splitlines() if line.startswith("  gate: "))
    assert decision.endswith("; decided, not applied yet")
    assert f"  go on:    smithers resume g --store {store_dir}" in status.out
    document = invoke("--store", str(store_dir), "status", "g", "--json").json()
    assert document["unapplied"] == [{"node_id": "gate", "iteration": [], "status": "approved"}]
    assert document["interrupted"] is False


# -- status shows tracebacks and signals -----------------------------------------------------------


def test_status_shows_the_traceback_of_a_failed_attempt(tmp_path: Path, store_dir: Path) -> None:
    """The text status shows the last frames of a failed attempt, not only its last line."""
    write(tmp_path, "failing.py", FAILING)
    assert invoke("--store", str(store_dir), "run", "failing.py", "--run-id", "f").code == 1
    lines = invoke("--store", str(store_dir), "status", "f").out.splitlines()
    start = lines.index("  explode attempt 1 failed: ValueError: the disk is full")
    frames = lines[start + 1 :]
    assert any(line.strip().startswith('File "') and "failing.py" in line for line in frames)
    assert '        raise ValueError("the disk is full")' in frames
    assert "    ValueError: the disk is full" in frames


def test_status_of_a_run_waiting_on_a_signal_says_how_to_feed_it(
    tmp_path: Path, store_dir: Path
) -> None:
    """`status` lists a waiting Signal with the exact signal command and the schema command."""
    write(tmp_path, "waits.py", SIGNAL)
    assert invoke("--store", str(store_dir), "run", "waits.py", "--run-id", "w").code == 3
    lines = invoke("--store", str(store_dir), "status", "w").out.splitlines()
    start = lines.index("Waiting signals:")
    assert lines[start + 1 : start + 4] == [
        "  callback",
        f"    deliver: smithers signal w --node callback --store {store_dir} --data '<json>'",
        f"    schema:  smithers signal w --node callback --store {store_dir} --schema",
    ]


# -- decisions and signals aimed at the wrong thing ---------------------------------------------

ONE_LOOP_GATE = """
    from smithers import Approval, ApprovalRequest, Loop, Task, Workflow, smithers

    @smithers
    def review(ctx):
        return Workflow(
            Loop(
                Approval(id="review", request=ApprovalRequest(title="Again?"), on_deny="continue"),
                id="rounds",
                until=lambda ctx: len(ctx.outputs("review")) >= 2,
                max_iterations=3,
            ),
            Task(id="done", output=int, value=1),
            name="review",
        )
"""


@pytest.mark.parametrize("verb", ["approve", "deny"])
def test_an_iteration_without_node_is_not_ignored(
    tmp_path: Path, store_dir: Path, verb: str
) -> None:
    """`deny RUN --iteration 7` with the gate requested at iteration 0 is refused, not applied
    to iteration 0; nothing is written."""
    write(tmp_path, "review.py", ONE_LOOP_GATE)
    assert invoke("--store", str(store_dir), "run", "review.py", "--run-id", "r").code == 3
    before = store_state(store_dir)
    result = invoke("--store", str(store_dir), verb, "r", "--iteration", "7", "--no-resume")
    assert one_error(result).startswith(
        "Error: Run `r` has no gate requested at iteration 7; requested: `review` iteration 0"
    )
    assert store_state(store_dir) == before


def test_a_two_level_iteration_on_a_one_level_loop_says_which_to_use(
    tmp_path: Path, store_dir: Path
) -> None:
    """`--iteration 0.0` on a gate in one loop names the form that works (`--iteration 0`)."""
    write(tmp_path, "review.py", ONE_LOOP_GATE)
    assert invoke("--store", str(store_dir), "run", "review.py", "--run-id", "r").code == 3
    before = store_state(store_dir)
    result = invoke(
        "--store", str(store_dir), "approve", "r", "--node", "review", "--iteration", "0.0"
    )
    assert "use --iteration 0" in one_error(result)
    assert store_state(store_dir) == before


@pytest.mark.parametrize(
    "args",
    [
        ["approve", "r", "--node", "review", "--iteration", "4294967296"],
        ["signal", "r", "--node", "review", "--iteration", "4294967296", "--data", "{}"],
        ["output", "r", "review", "--iteration", "4294967296"],
    ],
)
def test_huge_iterations_are_one_error_line(
    tmp_path: Path, store_dir: Path, args: list[str]
) -> None:
    """An iteration part of 2**32 or more is one `Error:` line, exit 4, not a traceback."""
    write(tmp_path, "review.py", ONE_LOOP_GATE)
    assert invoke("--store", str(store_dir), "run", "review.py", "--run-id", "r").code == 3
    assert one_error(invoke("--store", str(store_dir), *args)) == (
        "Error: --iteration '4294967296' is out of range; each part must be below 4294967296."
    )


@pytest.mark.parametrize("iteration", ["3", "3.1"])
def test_a_signal_iteration_outside_any_loop_is_refused(
    tmp_path: Path, store_dir: Path, iteration: str
) -> None:
    """`signal --iteration 3` on a Signal outside any loop is refused; nothing is recorded."""
    write(tmp_path, "waits.py", SIGNAL)
    assert invoke("--store", str(store_dir), "run", "waits.py", "--run-id", "w").code == 3
    before = store_state(store_dir)
    result = invoke(
        "--store",
        str(store_dir),
        "signal",
        "w",
        "--node",
        "callback",
        "--iteration",
        iteration,
        "--data",
        '{"ok": true, "log": "x"}',
    )
    line = one_error(result)
    assert line.startswith("Error: ")
    assert "leave --iteration out" in line
    assert store_state(store_dir) == before


# -- a changed workflow file ---------------------------------------------------------------------


def test_approve_after_an_incompatible_change_writes_nothing(
    tmp_path: Path, store_dir: Path
) -> None:
    """A finished node renamed in the file: approve refuses before recording, names options
    approve has, and a later `approve --no-resume` still can record."""
    path = write(tmp_path, "gated.py", GATE)
    assert invoke("--store", str(store_dir), "run", "gated.py", "--run-id", "g").code == 3
    path.write_text(
        path.read_text()
        .replace('id="build"', 'id="compile"')
        .replace('needs={"plan": "build"}', 'needs={"plan": "compile"}')
    )
    before = store_state(store_dir)
    result = invoke("--store", str(store_dir), "approve", "g", "--yes")
    line = one_error(result)
    assert line.startswith("Error: The workflow source of run `g` changed and finished nodes")
    assert line.endswith(
        "nothing was recorded; restore the source, pass --workflow FILE[:ATTR] with a definition "
        "that still fits, or pass --no-resume to only record the decision (then `smithers "
        "resume g --accept-workflow-change`)."
    )
    assert store_state(store_dir) == before
    assert invoke("--store", str(store_dir), "approve", "g", "--no-resume").code == 0


def test_an_accepted_change_is_reported_truthfully(tmp_path: Path, store_dir: Path) -> None:
    """`resume --accept-workflow-change` after a finished node was renamed says that finished
    nodes no longer mount the same way (not that they still do)."""
    path = write(tmp_path, "gated.py", GATE)
    assert invoke("--store", str(store_dir), "run", "gated.py", "--run-id", "g").code == 3
    assert invoke("--store", str(store_dir), "approve", "g", "--no-resume").code == 0
    path.write_text(
        path.read_text()
        .replace('id="build"', 'id="compile"')
        .replace('needs={"plan": "build"}', 'needs={"plan": "compile"}')
    )
    result = invoke("--store", str(store_dir), "resume", "g", "--accept-workflow-change")
    warning = next(line for line in result.err_lines if line.startswith("Warning:"))
    assert "no longer mount the same way" in warning
    assert "still mount the same way" not in warning


# -- retry, signal schemas, graph states --------------------------------------------------------

FIXABLE = """
    import os
    from smithers import Task, Workflow, smithers

    def flaky() -> int:
        if not os.path.exists("fixed"):
            raise RuntimeError("not fixed yet")
        return 2

    def first() -> int:
        with open("first-ran", "a") as handle:
            handle.write("x")
        return 1

    @smithers
    def fixable(ctx):
        return Workflow(
            Task(id="first", output=int, run=first),
            Task(id="flaky", output=int, run=flaky),
            name="fixable",
        )
"""


def test_retry_reruns_only_the_failed_nodes(tmp_path: Path, store_dir: Path) -> None:
    """`smithers retry` after the fix finishes the run; the finished node does not run again."""
    write(tmp_path, "fixable.py", FIXABLE)
    assert invoke("--store", str(store_dir), "run", "fixable.py", "--run-id", "f").code == 1
    (tmp_path / "fixed").write_text("")
    result = invoke("--store", str(store_dir), "retry", "f")
    assert result.code == 0, result
    assert result.out == "Run f finished.\n"
    assert "Run f retried: flaky run again" in result.err_lines
    assert (tmp_path / "first-ran").read_text() == "x"
    again = invoke("--store", str(store_dir), "retry", "f")
    assert again.code == 4
    assert again.errors[0].startswith("Error: Run `f` is finished")


def test_signal_schema_prints_what_the_data_must_match(tmp_path: Path, store_dir: Path) -> None:
    """`signal --schema` prints the JSON Schema of the Signal's output type and writes
    nothing."""
    write(tmp_path, "waits.py", SIGNAL)
    assert invoke("--store", str(store_dir), "run", "waits.py", "--run-id", "w").code == 3
    before = store_state(store_dir)
    result = invoke(
        "--store", str(store_dir), "signal", "w", "--node", "callback", "--schema", "--json"
    )
    assert result.code == 0, result
    schema = result.json()
    assert schema["$defs"]["Callback"]["required"] == ["ok", "log"]
    assert store_state(store_dir) == before


def test_graph_of_a_run_in_mermaid_shows_states(tmp_path: Path, store_dir: Path) -> None:
    """`graph --run --format mermaid` colours nodes by state, as the text tree marks them."""
    write(tmp_path, "gated.py", GATE)
    assert invoke("--store", str(store_dir), "run", "gated.py", "--run-id", "g").code == 3
    mermaid = invoke("--store", str(store_dir), "graph", "--run", "g", "--format", "mermaid")
    assert mermaid.code == 0
    assert "class n_build s_finished" in mermaid.out
    assert "class n_gate s_waiting_approval" in mermaid.out
    dot = invoke("--store", str(store_dir), "graph", "--run", "g", "--format", "dot")
    assert "fillcolor" in dot.out


def test_the_inbox_lists_a_decision_not_applied_yet(tmp_path: Path, store_dir: Path) -> None:
    """After `approve --no-resume` (or an approve killed before it resumed), `approvals` shows
    the gate as decided, not applied yet, with the command that applies it."""
    write(tmp_path, "gated.py", GATE)
    assert invoke("--store", str(store_dir), "run", "gated.py", "--run-id", "g").code == 3
    assert invoke("--store", str(store_dir), "approve", "g", "--no-resume", "--by", "bob").code == 0
    text = invoke("--store", str(store_dir), "approvals").out.splitlines()
    assert text[0] == "g  gate  (gated, decided, not applied yet)"
    assert text[-2].startswith("  approved by bob at ")
    assert text[-1] == f"  go on:   smithers resume g --store {store_dir}"
    (row,) = invoke("--store", str(store_dir), "approvals", "--json").json()
    assert row["decision"]["approved"] is True
    assert row["resume_command"] == f"smithers resume g --store {store_dir}"
    assert row["approve_command"] is None
    assert invoke("--store", str(store_dir), "resume", "g").code == 0
    assert invoke("--store", str(store_dir), "approvals", "--json").json() == []


def test_a_second_decision_on_an_unapplied_gate_says_how_to_apply_it(
    tmp_path: Path, store_dir: Path
) -> None:
    """A second approve of a gate decided but not applied is refused ("already approved") and
    names the resume command; nothing is written."""
    write(tmp_path, "gated.py", GATE)
    assert invoke("--store", str(store_dir), "run", "gated.py", "--run-id", "g").code == 3
    assert invoke("--store", str(store_dir), "approve", "g", "--no-resume", "--by", "bob").code == 0
    before = store_state(store_dir)
    line = one_error(invoke("--store", str(store_dir), "deny", "g", "--node", "gate", "--yes"))
    assert line.startswith("Error: Gate `gate` of run `g` was already approved by bob at ")
    assert line.endswith(
        "a decision is final; that decision is not applied yet: go on with `smithers resume g`."
    )
    assert store_state(store_dir) == before


@pytest.mark.parametrize(
    "args",
    [["status", ""], ["resume", ""], ["events", ""], ["output", "", "x"], ["approve", ""]],
)
def test_an_empty_run_id_is_one_error_line(
    tmp_path: Path, store_dir: Path, args: list[str]
) -> None:
    """An empty run id is "no run" (one `Error:` line, exit 4), never an LMDB traceback."""
    write(tmp_path, "ok.py", OK)
    assert invoke("--store", str(store_dir), "run", "ok.py", "--run-id", "r").code == 0
    assert one_error(invoke("--store", str(store_dir), *args)) == (
        f"Error: No run `` in the store at {store_dir}; list runs with `smithers runs`."
    )


def test_a_signal_to_a_gate_names_its_kind_with_the_right_article(
    tmp_path: Path, store_dir: Path
) -> None:
    """Data sent to an approval gate is refused: "is an approval, not a Signal"."""
    write(tmp_path, "gated.py", GATE)
    assert invoke("--store", str(store_dir), "run", "gated.py", "--run-id", "g").code == 3
    line = one_error(
        invoke("--store", str(store_dir), "signal", "g", "--node", "gate", "--data", "{}")
    )
    assert "Node `gate` of run `g` is an approval, not a Signal" in line
