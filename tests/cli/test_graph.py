"""`smithers graph`: loading a definition, rendering it without running it, and its formats."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import pydot
import pytest

from tests.cli.helpers import EXAMPLES, GATE, invoke, one_error, write

with warnings.catch_warnings():
    # pydot's parser calls pyparsing names that pyparsing now deprecates.
    warnings.simplefilter("ignore", DeprecationWarning)
    import pydot.dot_parser

# Every structural component, an id with a dot (sanitized in Mermaid), labels, and task and
# request functions that leave a marker file behind if anything calls them.
SHAPES = """
    import msgspec
    from smithers import (
        Approval, ApprovalRequest, Branch, Loop, Parallel, Sequence, Signal, Task, Workflow,
        smithers,
    )

    class In(msgspec.Struct):
        shards: int = 2
        fast: bool = False

    def touch(name):
        open(name, "w").close()

    def work() -> int:
        touch("task-ran.txt")
        return 1

    def ask(total):
        touch("request-ran.txt")
        return ApprovalRequest(title="Ship?")

    @smithers(input=In)
    def shapes(ctx):
        return Workflow(
            Sequence(
                Parallel(
                    *[
                        Task(id=f"shard-{i}", output=int, run=work)
                        for i in range(ctx.input.shards)
                    ],
                    max_concurrency=2,
                ),
                Task(id="total", output=int, needs={"a": "shard-0"}, run=lambda a: a),
            ),
            Approval(id="approve.ship", needs={"total": "total"}, request=ask, label="Ship it"),
            Signal(id="callback", output=dict, label="remote callback"),
            Branch(
                if_=ctx.input.fast,
                then=Task(id="fast-path", output=int, run=work),
                else_=Task(id="slow-path", output=int, run=work),
            ),
            Loop(Task(id="poll", output=int, run=work), id="retry-loop", until=False),
            name="shapes",
        )
"""

TWO_DEFINITIONS = """
    from smithers import Task, Workflow, smithers

    def helper():
        return 1

    @smithers
    def alpha(ctx):
        return Workflow(Task(id="a", output=int, value=1), name="alpha")

    @smithers
    def beta(ctx):
        return Workflow(Task(id="b", output=int, value=2), name="beta")
"""


def _tree(text: str) -> dict[str, str | None]:
    """Each tree line's head (text before the first double space) -> its parent's head."""
    parents: dict[str, str | None] = {}
    stack: list[str] = []
    for line in text.splitlines():
        body = line.lstrip("│├└─ ")
        depth = (len(line) - len(body)) // 4
        head = body.split("  ")[0]
        del stack[depth:]
        parents[head] = stack[-1] if stack else None
        stack.append(head)
    return parents


def _dot_nodes(graph: Any) -> dict[str, dict[str, str]]:
    """Every node statement of a pydot graph, subgraphs included: name -> attributes."""
    found = {n.get_name().strip('"'): n.get_attributes() for n in graph.get_nodes()}
    found.pop("node", None)  # the `node [...]` defaults statement
    for sub in graph.get_subgraphs():
        found.update(_dot_nodes(sub))
    return found


def test_graph_prints_the_tree_of_a_workflow_file(tmp_path: Path) -> None:
    """The default format is an indented tree: groups hold their children, kinds are tagged."""
    write(tmp_path, "shapes.py", SHAPES)
    result = invoke("graph", "shapes.py")
    assert result.code == 0
    assert result.err == ""
    assert _tree(result.out) == {
        "Workflow(shapes)": None,
        "Sequence[0]": "Workflow(shapes)",
        "Parallel[0]": "Sequence[0]",
        "[task] shard-0": "Parallel[0]",
        "[task] shard-1": "Parallel[0]",
        "[task] total": "Sequence[0]",
        "[approval] approve.ship": "Workflow(shapes)",
        "[signal] callback": "Workflow(shapes)",
        "Branch[3]": "Workflow(shapes)",
        "[task] slow-path": "Branch[3]",
        "Loop(retry-loop)": "Workflow(shapes)",
        "[task] poll": "Loop(retry-loop)",
    }
    lines = result.out.splitlines()
    gate = next(line for line in lines if "[approval] approve.ship" in line)
    assert "on_deny=fail" in gate
    assert "needs total" in gate
    assert '"Ship it"' in gate
    assert any("Parallel[0]" in line and "max_concurrency=2" in line for line in lines)


def test_graph_runs_no_task_and_no_request_function(tmp_path: Path) -> None:
    """Rendering calls neither `run` callables nor approval request functions."""
    write(tmp_path, "shapes.py", SHAPES)
    for fmt in ("tree", "json", "mermaid", "dot"):
        assert invoke("graph", "shapes.py", "--format", fmt).code == 0
    assert not (tmp_path / "task-ran.txt").exists()
    assert not (tmp_path / "request-ran.txt").exists()


def test_graph_of_a_gated_workflow_does_not_ship(tmp_path: Path) -> None:
    """The gated example's `ship` task writes shipped.txt when it runs; `graph` never runs it."""
    write(tmp_path, "gate.py", GATE)
    result = invoke("graph", "gate.py")
    assert result.code == 0
    assert "[task] ship" in result.out
    assert not (tmp_path / "shipped.txt").exists()


def test_graph_json_names_nodes_edges_and_groups(tmp_path: Path) -> None:
    """--format json prints the graph document: nodes with kind and path, typed edges."""
    write(tmp_path, "shapes.py", SHAPES)
    result = invoke("graph", "shapes.py", "--format", "json")
    assert result.code == 0
    document = json.loads(result.out)
    assert document["workflow"] == "shapes"
    assert document["root"] == "Workflow(shapes)"
    nodes = {n["id"]: n for n in document["nodes"]}
    assert {i: n["kind"] for i, n in nodes.items()} == {
        "shard-0": "task",
        "shard-1": "task",
        "total": "task",
        "approve.ship": "approval",
        "callback": "signal",
        "slow-path": "task",
        "poll": "task",
    }
    assert nodes["shard-1"]["path"] == "Workflow(shapes)/Sequence[0]/Parallel[0]/Task(shard-1)"
    assert nodes["approve.ship"]["path"] == "Workflow(shapes)/Approval(approve.ship)"
    assert nodes["approve.ship"]["output_type"] == "ApprovalDecision"
    assert nodes["approve.ship"]["props"]["on_deny"] == "fail"
    assert nodes["approve.ship"]["label"] == "Ship it"
    assert nodes["total"]["needs"] == {"a": "shard-0"}
    assert nodes["poll"]["iteration"] == [0]
    edges = {(e["source"], e["target"], e["kind"]) for e in document["edges"]}
    assert ("shard-0", "total", "needs") in edges
    assert ("total", "approve.ship", "sequence") in edges
    assert ("approve.ship", "callback", "sequence") in edges
    assert ("total", "approve.ship", "needs") in edges
    groups = {g["path"]: g["kind"] for g in document["groups"]}
    assert groups["Workflow(shapes)/Sequence[0]/Parallel[0]"] == "parallel"
    assert groups["Workflow(shapes)/Branch[3]"] == "branch"
    assert groups["Workflow(shapes)/Loop(retry-loop)"] == "loop"
    assert isinstance(document["hash"], str)
    assert document["hash"]


def test_graph_input_changes_what_mounts_and_the_hash(tmp_path: Path) -> None:
    """--input is the render's input: more shards mount more tasks and change the hash."""
    write(tmp_path, "shapes.py", SHAPES)
    (tmp_path / "input.json").write_text('{"shards": 3, "fast": true}', encoding="utf-8")
    default = json.loads(invoke("graph", "shapes.py", "--format", "json").out)
    inline = invoke(
        "graph", "shapes.py", "--format", "json", "--input", '{"shards": 3, "fast": true}'
    )
    from_file = invoke("graph", "shapes.py", "--format", "json", "--input", "@input.json")
    assert inline.code == from_file.code == 0
    assert json.loads(inline.out) == json.loads(from_file.out)
    ids = [n["id"] for n in json.loads(inline.out)["nodes"]]
    assert ids[:3] == ["shard-0", "shard-1", "shard-2"]
    assert "fast-path" in ids
    assert "slow-path" not in ids
    assert json.loads(inline.out)["hash"] != default["hash"]
    again = json.loads(invoke("graph", "shapes.py", "--format", "json").out)
    assert again["hash"] == default["hash"]


def test_graph_mermaid_is_a_flowchart_with_sanitized_ids(tmp_path: Path) -> None:
    """Mermaid: `flowchart TD`, ids in [A-Za-z0-9_], quoted labels, gates and signals styled."""
    write(tmp_path, "shapes.py", SHAPES)
    result = invoke("graph", "shapes.py", "--format", "mermaid")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0] == "flowchart TD"
    declared = {}
    for line in lines:
        match = re.match(r'^\s*(\w+)(\["|\{\{"|\[/")(.*?)"', line)
        if match:
            declared[match.group(3)] = (match.group(1), match.group(2))
    assert set(declared) == {
        "shard-0: int",
        "shard-1: int",
        "total: int",
        "Ship it: ApprovalDecision",
        "remote callback: dict",
        "slow-path: int",
        "poll: int",
    }
    for node_id, _ in declared.values():
        assert re.fullmatch(r"[A-Za-z0-9_]+", node_id)
    gate_id, gate_shape = declared["Ship it: ApprovalDecision"]
    signal_id, signal_shape = declared["remote callback: dict"]
    task_id, task_shape = declared["total: int"]
    assert (gate_shape, signal_shape, task_shape) == ('{{"', '[/"', '["')
    assert f"  class {gate_id} approval" in lines
    assert f"  class {signal_id} signal" in lines
    assert f"  {task_id} --> {gate_id}" in lines
    assert f"  {task_id} -. needs .-> {gate_id}" in lines


def test_graph_mermaid_keeps_ids_distinct_after_sanitizing(tmp_path: Path) -> None:
    """Ids that sanitize alike (`a-b`, `a_b`, `a.b`) still become three Mermaid nodes."""
    write(
        tmp_path,
        "alike.py",
        """
        from smithers import Task, Workflow, smithers

        @smithers
        def alike(ctx):
            return Workflow(
                Task(id="a-b", output=int, value=1),
                Task(id="a_b", output=int, value=2),
                Task(id="a.b", output=int, value=3),
                name="alike",
            )
        """,
    )
    result = invoke("graph", "alike.py", "--format", "mermaid")
    assert result.code == 0
    ids = re.findall(r'^\s*(\w+)\["a.b: int"\]', result.out, flags=re.M)
    assert len(ids) == 3
    assert len(set(ids)) == 3


def test_graph_dot_parses_and_shapes_each_kind(tmp_path: Path) -> None:
    """DOT output parses with pydot; gates, signals and tasks have distinct shapes."""
    write(tmp_path, "shapes.py", SHAPES)
    result = invoke("graph", "shapes.py", "--format", "dot")
    assert result.code == 0
    (graph,) = pydot.graph_from_dot_data(result.out)
    assert graph.get_type() == "digraph"
    nodes = _dot_nodes(graph)
    shapes = {name: attrs.get("shape") for name, attrs in nodes.items() if name != "node"}
    assert shapes["approve.ship"] == "hexagon"
    assert shapes["callback"] == "parallelogram"
    assert {shapes[t] for t in ("shard-0", "shard-1", "total", "slow-path", "poll")} == {"box"}
    edges = {(e.get_source().strip('"'), e.get_destination().strip('"')) for e in graph.get_edges()}
    assert ("total", "approve.ship") in edges
    assert ("shard-0", "total") in edges


@pytest.mark.parametrize(
    "args",
    [
        ["--json", "graph", "shapes.py"],
        ["graph", "shapes.py", "--json"],
        ["--store", "unused", "graph", "shapes.py", "--format", "json"],
        ["graph", "--store", "unused", "shapes.py", "--format", "json"],
        ["graph", "shapes.py", "--format", "json", "--store", "unused", "--json"],
        ["--json", "graph", "shapes.py", "--format", "mermaid"],
    ],
)
def test_graph_accepts_json_and_store_on_either_side(tmp_path: Path, args: list[str]) -> None:
    """--json and --store are accepted before or after `graph`; rendering creates no store."""
    write(tmp_path, "shapes.py", SHAPES)
    expected = json.loads(invoke("graph", "shapes.py", "--format", "json").out)
    result = invoke(*args)
    assert result.code == 0
    assert json.loads(result.out) == expected
    assert not (tmp_path / "unused").exists()
    assert not (tmp_path / ".smithers").exists()


def test_graph_loads_a_named_attribute_of_a_file(tmp_path: Path) -> None:
    """`file.py:attr` picks one of several definitions."""
    write(tmp_path, "two.py", TWO_DEFINITIONS)
    result = invoke("graph", "two.py:beta", "--format", "json")
    assert result.code == 0
    document = json.loads(result.out)
    assert document["workflow"] == "beta"
    assert [n["id"] for n in document["nodes"]] == ["b"]


def test_graph_loads_an_example_by_absolute_path(tmp_path: Path) -> None:
    """An absolute path works from any working directory (the deploy example)."""
    result = invoke("graph", str(EXAMPLES / "deploy.py"), "--format", "json")
    assert result.code == 0
    document = json.loads(result.out)
    assert [(n["id"], n["kind"]) for n in document["nodes"]] == [
        ("build", "task"),
        ("approve-deploy", "approval"),
    ]


def test_graph_loads_package_module_attr_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`package.module:attr` is imported from the working directory."""
    project = tmp_path / "project"
    write(project, "acme_flows/__init__.py", "")
    write(project, "acme_flows/release.py", TWO_DEFINITIONS)
    monkeypatch.chdir(project)
    result = invoke("graph", "acme_flows.release:alpha", "--format", "json")
    assert result.code == 0, result
    document = json.loads(result.out)
    assert document["workflow"] == "alpha"
    assert [n["id"] for n in document["nodes"]] == ["a"]


def test_graph_module_without_attr_needs_exactly_one_definition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`package.module` without `:attr` is refused when it defines several workflows."""
    write(tmp_path, "acme_many/__init__.py", "")
    write(tmp_path, "acme_many/flows.py", TWO_DEFINITIONS)
    result = invoke("graph", "acme_many.flows")
    assert one_error(result) == (
        "Error: `acme_many.flows` defines several workflows (`alpha`, `beta`); "
        "name one as acme_many.flows:alpha."
    )


def test_graph_renders_with_a_run_s_node_states(tmp_path: Path, store_dir: Path) -> None:
    """`graph --run RUN_ID` shows the run's latest graph with each node's state."""
    write(tmp_path, "gate.py", GATE)
    assert invoke("--store", str(store_dir), "run", "gate.py", "--run-id", "r1").code == 3
    result = invoke("--store", str(store_dir), "graph", "--run", "r1")
    assert result.code == 0
    lines = result.out.splitlines()
    assert next(x for x in lines if "[task] build" in x).endswith("[finished]")
    assert next(x for x in lines if "[approval] gate" in x).endswith("[waiting-approval]")
    assert next(x for x in lines if "[task] ship" in x).endswith("[pending]")
    document = json.loads(invoke("--store", str(store_dir), "--json", "graph", "--run", "r1").out)
    assert document["states"] == {
        "build": "finished",
        "gate": "waiting-approval",
        "ship": "pending",
    }


# -- refusals: exit 4, one exact `Error:` line --------------------------------------------------


def test_graph_missing_file(tmp_path: Path) -> None:
    """A file that does not exist is named, with the fix."""
    assert one_error(invoke("graph", "missing.py")) == (
        "Error: No workflow file at `missing.py`; pass an existing .py file as FILE[:ATTR]."
    )


def test_graph_file_that_raises_on_import(tmp_path: Path) -> None:
    """An exception while importing the file is reported with its type and message."""
    path = write(tmp_path, "raises.py", 'raise RuntimeError("boom at import")\n')
    assert one_error(invoke("graph", "raises.py")) == (
        f"Error: Loading `{path}` raised RuntimeError: boom at import; fix the file and try again."
    )


def test_graph_missing_attribute(tmp_path: Path) -> None:
    """A missing `:attr` lists the workflows the file does hold."""
    write(tmp_path, "two.py", TWO_DEFINITIONS)
    assert one_error(invoke("graph", "two.py:gamma")) == (
        "Error: `two.py` has no attribute `gamma`; workflows in it: `alpha`, `beta`."
    )


def test_graph_attribute_that_is_not_a_definition(tmp_path: Path) -> None:
    """An attribute that is not a workflow definition says what it is and how to make one."""
    write(tmp_path, "two.py", TWO_DEFINITIONS)
    assert one_error(invoke("graph", "two.py:helper")) == (
        "Error: `two.py:helper` is of type `function`, not a workflow; decorate its build function "
        "with @smithers."
    )


def test_graph_several_definitions_without_attr(tmp_path: Path) -> None:
    """Several definitions and no `:attr`: the error lists them and suggests one."""
    write(tmp_path, "two.py", TWO_DEFINITIONS)
    assert one_error(invoke("graph", "two.py")) == (
        "Error: `two.py` defines several workflows (`alpha`, `beta`); name one as two.py:alpha."
    )


def test_graph_module_with_no_definition(tmp_path: Path) -> None:
    """A file with no definition says how to make one."""
    write(tmp_path, "none.py", "x = 1\n")
    assert one_error(invoke("graph", "none.py")) == (
        "Error: `none.py` defines no workflow; decorate a build function with @smithers."
    )


def test_graph_module_that_cannot_be_imported(tmp_path: Path) -> None:
    """A `package.module:attr` that does not import is named with the import error."""
    assert one_error(invoke("graph", "acme_nowhere.flows:deploy")) == (
        "Error: Cannot import `acme_nowhere.flows` (ModuleNotFoundError: No module named "
        "'acme_nowhere'); pass a .py file path or an importable package.module:attr."
    )


def test_graph_invalid_json_input(tmp_path: Path) -> None:
    """--input that is not JSON is quoted back with the fix."""
    write(tmp_path, "shapes.py", SHAPES)
    assert one_error(invoke("graph", "shapes.py", "--input", "{bad")) == (
        "Error: --input '{bad' is not valid JSON (JSON is malformed: object keys must be "
        "strings (byte 1)); pass a JSON document or @file.json."
    )


def test_graph_input_file_that_does_not_exist(tmp_path: Path) -> None:
    """--input @file for a missing file names the file."""
    write(tmp_path, "shapes.py", SHAPES)
    assert one_error(invoke("graph", "shapes.py", "--input", "@nofile.json")) == (
        "Error: --input file `nofile.json` cannot be read (No such file or directory); pass an "
        "existing JSON file as @file.json."
    )


def test_graph_input_of_the_wrong_type(tmp_path: Path) -> None:
    """Input that does not match the declared input type names the field and the type."""
    write(tmp_path, "shapes.py", SHAPES)
    assert one_error(invoke("graph", "shapes.py", "--input", '{"shards": "x"}')) == (
        "Error: Input for `shapes` does not match `In`: Expected `int`, got `str` - at "
        "`$.shards`; pass input matching `In`."
    )


def test_graph_definition_error_while_building(tmp_path: Path) -> None:
    """A bad prop raised by the build function is one error line."""
    write(
        tmp_path,
        "bad_prop.py",
        """
        from smithers import Parallel, Task, Workflow, smithers

        @smithers
        def bad_prop(ctx):
            return Workflow(
                Parallel(Task(id="a", output=int, value=1), max_concurrency=0), name="bad"
            )
        """,
    )
    assert one_error(invoke("graph", "bad_prop.py")) == (
        "Error: Parallel got max_concurrency=0; pass a positive int, or None for no cap (in the "
        "build function of `bad_prop`)."
    )


def test_graph_compile_error_duplicate_id(tmp_path: Path) -> None:
    """Two nodes with one id: the error names both paths and the rule."""
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
    assert one_error(invoke("graph", "dup.py")) == (
        "Error: Duplicate node id `a` at `Workflow(dup)/Parallel[1]/Task(a)`; "
        "an element at `Workflow(dup)/Sequence[0]/Task(a)` has it too; ids must be unique within "
        "a workflow."
    )


def test_graph_without_a_target(tmp_path: Path) -> None:
    """`graph` with neither FILE nor --run says what it needs."""
    assert one_error(invoke("graph")) == (
        "Error: graph needs FILE[:ATTR], or --run RUN_ID (see `smithers graph --help`)."
    )


def test_graph_unknown_format(tmp_path: Path) -> None:
    """An unknown --format lists the formats."""
    write(tmp_path, "shapes.py", SHAPES)
    assert one_error(invoke("graph", "shapes.py", "--format", "svg")) == (
        "Error: Invalid value for '--format': 'svg' is not one of 'tree', 'json', 'mermaid', "
        "'dot' (see `smithers graph --help`)."
    )
