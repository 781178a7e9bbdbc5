"""Graph identity: equality, the stable content hash, frames and the JSON form."""

from __future__ import annotations

import json
import os
import re
import runpy
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from smithers import (
    Approval,
    ApprovalRequest,
    Branch,
    Loop,
    Parallel,
    Sequence,
    Signal,
    Task,
    Workflow,
    render,
    smithers,
)
from smithers.compiler import Graph, compile_tree
from smithers.compiler.codec import decode_frame, encode_frame, graph_from_builtins

DEFINITION = textwrap.dedent(
    '''
    """A workflow definition used to compare hashes across processes."""

    import msgspec

    from smithers import (Approval, ApprovalRequest, Branch, Loop, Parallel, Sequence, Signal,
                          Task, Workflow, component, smithers)


    class Build(msgspec.Struct):
        version: str


    @component
    def Gate(*, name):
        return Approval(id=name, request=ApprovalRequest(title=name), on_deny="skip")


    @smithers
    def wf(ctx):
        return Workflow(
            Sequence(
                Task(id="build", output=Build, run=lambda: Build("1"), retries=2, backoff=[1, 2]),
                Gate(name="approve"),
                Parallel(
                    Task(id="a", output=dict[str, int], value={}, needs={"b": "build"}),
                    Signal(id="callback", output=list[Build], label="Callback"),
                    max_concurrency=2,
                ),
            ),
            Loop(Task(id="review", output=int | None, value=None), id="rounds",
                 until=lambda ctx: False, max_iterations=3),
            Branch(if_=True, then=Task(id="yes", output=str, value="y", timeout=1.5)),
            Task(id="late", output=int, value=1, needs={"x": "ghost"}, skip_if=True),
            name="hashing",
        )
    '''
)


def task(node_id: str, **props: Any) -> Task:
    """A value task with an int output."""
    return Task(id=node_id, output=int, value=1, **props)


def base_tree() -> Workflow:
    """A small tree every mutation below is compared with."""
    return Workflow(
        task("a", label="A"),
        Parallel(
            Approval(id="g", request=ApprovalRequest(title="ok?")), task("b"), max_concurrency=2
        ),
        Loop(task("c"), id="L", until=False, max_iterations=3),
        Branch(if_=True, then=task("d", needs={"x": "a"})),
        name="w",
    )


def rich_graph() -> Graph:
    """A graph using every kind of node, group and prop."""
    return compile_tree(
        Workflow(
            Parallel(
                Task(
                    id="a",
                    output=list[int],
                    run=lambda: [1],
                    retries=2,
                    backoff=[1, 2.5],
                    timeout=3,
                    continue_on_fail=True,
                ),
                Approval(
                    id="g", request=ApprovalRequest(title="T"), label="Gate", on_deny="continue"
                ),
                max_concurrency=2,
            ),
            Branch(
                if_=False,
                then=task("t"),
                else_=Sequence(Signal(id="s", output=dict[str, int])),
            ),
            Loop(
                Loop(task("inner"), id="in", until=True, max_iterations=3, on_max_reached="fail"),
                id="out",
                until=lambda ctx: False,
            ),
            Sequence(task("sk", needs={"x": "ghost"}), skip_if=True),
            name="w",
        )
    )


# -- equality ----------------------------------------------------------------------------------


def test_compiling_twice_gives_equal_graphs_and_hashes() -> None:
    """Two compiles of equal trees are equal graphs with equal hashes."""
    first, second = compile_tree(base_tree()), compile_tree(base_tree())
    assert first == second
    assert first.hash == second.hash


def test_hash_is_32_hex_digits_and_cached() -> None:
    """The hash is 32 lower-case hex digits and the same on every access."""
    graph = compile_tree(base_tree())
    assert re.fullmatch(r"[0-9a-f]{32}", graph.hash)
    assert graph.hash == graph.hash


def test_callables_are_not_part_of_equality_or_hash() -> None:
    """Trees differing only in run/request/until callables give equal graphs and hashes."""

    def tree(n: int) -> Workflow:
        return Workflow(
            Task(id="a", output=int, run=lambda: n),
            Approval(id="g", request=lambda: ApprovalRequest(title=str(n))),
            Loop(task("b"), id="L", until=lambda ctx: n > 0),
            name="w",
        )

    one, two = compile_tree(tree(1)), compile_tree(tree(2))
    assert one == two
    assert one.hash == two.hash
    assert one.elements["a"] is not two.elements["a"]


def test_needs_order_changes_neither_equality_nor_hash() -> None:
    """Equal trees whose needs differ only in key order compile to one graph and hash."""

    def tree(needs: dict[str, str]) -> Workflow:
        return Workflow(task("a"), task("b"), task("c", needs=needs), name="w")

    assert tree({"x": "a", "y": "b"}) == tree({"y": "b", "x": "a"})
    one = compile_tree(tree({"x": "a", "y": "b"}))
    two = compile_tree(tree({"y": "b", "x": "a"}))
    assert one == two
    assert one.hash == two.hash
    assert encode_frame(one) == encode_frame(two)


MUTATIONS: dict[str, Callable[[], Workflow]] = {
    "label": lambda: Workflow(
        task("a", label="B"),
        Parallel(
            Approval(id="g", request=ApprovalRequest(title="ok?")), task("b"), max_concurrency=2
        ),
        Loop(task("c"), id="L", until=False, max_iterations=3),
        Branch(if_=True, then=task("d", needs={"x": "a"})),
        name="w",
    ),
    "workflow name": lambda: Workflow(
        task("a", label="A"),
        Parallel(
            Approval(id="g", request=ApprovalRequest(title="ok?")), task("b"), max_concurrency=2
        ),
        Loop(task("c"), id="L", until=False, max_iterations=3),
        Branch(if_=True, then=task("d", needs={"x": "a"})),
        name="w2",
    ),
    "output type": lambda: Workflow(
        Task(id="a", output=str, value="1", label="A"),
        Parallel(
            Approval(id="g", request=ApprovalRequest(title="ok?")), task("b"), max_concurrency=2
        ),
        Loop(task("c"), id="L", until=False, max_iterations=3),
        Branch(if_=True, then=task("d", needs={"x": "a"})),
        name="w",
    ),
    "on_deny": lambda: Workflow(
        task("a", label="A"),
        Parallel(
            Approval(id="g", request=ApprovalRequest(title="ok?"), on_deny="continue"),
            task("b"),
            max_concurrency=2,
        ),
        Loop(task("c"), id="L", until=False, max_iterations=3),
        Branch(if_=True, then=task("d", needs={"x": "a"})),
        name="w",
    ),
    "max_concurrency": lambda: Workflow(
        task("a", label="A"),
        Parallel(
            Approval(id="g", request=ApprovalRequest(title="ok?")), task("b"), max_concurrency=3
        ),
        Loop(task("c"), id="L", until=False, max_iterations=3),
        Branch(if_=True, then=task("d", needs={"x": "a"})),
        name="w",
    ),
    "child order": lambda: Workflow(
        task("a", label="A"),
        Parallel(
            task("b"), Approval(id="g", request=ApprovalRequest(title="ok?")), max_concurrency=2
        ),
        Loop(task("c"), id="L", until=False, max_iterations=3),
        Branch(if_=True, then=task("d", needs={"x": "a"})),
        name="w",
    ),
    "loop bound": lambda: Workflow(
        task("a", label="A"),
        Parallel(
            Approval(id="g", request=ApprovalRequest(title="ok?")), task("b"), max_concurrency=2
        ),
        Loop(task("c"), id="L", until=False, max_iterations=4),
        Branch(if_=True, then=task("d", needs={"x": "a"})),
        name="w",
    ),
    "until": lambda: Workflow(
        task("a", label="A"),
        Parallel(
            Approval(id="g", request=ApprovalRequest(title="ok?")), task("b"), max_concurrency=2
        ),
        Loop(task("c"), id="L", until=True, max_iterations=3),
        Branch(if_=True, then=task("d", needs={"x": "a"})),
        name="w",
    ),
    "needs": lambda: Workflow(
        task("a", label="A"),
        Parallel(
            Approval(id="g", request=ApprovalRequest(title="ok?")), task("b"), max_concurrency=2
        ),
        Loop(task("c"), id="L", until=False, max_iterations=3),
        Branch(if_=True, then=task("d", needs={"x": "b"})),
        name="w",
    ),
    "branch side": lambda: Workflow(
        task("a", label="A"),
        Parallel(
            Approval(id="g", request=ApprovalRequest(title="ok?")), task("b"), max_concurrency=2
        ),
        Loop(task("c"), id="L", until=False, max_iterations=3),
        Branch(if_=False, then=task("d", needs={"x": "a"}), else_=task("d", needs={"x": "a"})),
        name="w",
    ),
    "skip_if": lambda: Workflow(
        task("a", label="A"),
        Parallel(
            Approval(id="g", request=ApprovalRequest(title="ok?")), task("b"), max_concurrency=2
        ),
        Loop(task("c", skip_if=True), id="L", until=False, max_iterations=3),
        Branch(if_=True, then=task("d", needs={"x": "a"})),
        name="w",
    ),
    "retries": lambda: Workflow(
        task("a", label="A", retries=1),
        Parallel(
            Approval(id="g", request=ApprovalRequest(title="ok?")), task("b"), max_concurrency=2
        ),
        Loop(task("c"), id="L", until=False, max_iterations=3),
        Branch(if_=True, then=task("d", needs={"x": "a"})),
        name="w",
    ),
    "extra node": lambda: Workflow(
        task("a", label="A"),
        Parallel(
            Approval(id="g", request=ApprovalRequest(title="ok?")), task("b"), max_concurrency=2
        ),
        Loop(task("c"), id="L", until=False, max_iterations=3),
        Branch(if_=True, then=task("d", needs={"x": "a"})),
        Signal(id="s", output=int),
        name="w",
    ),
    "wrapped in a sequence": lambda: Workflow(
        Sequence(task("a", label="A")),
        Parallel(
            Approval(id="g", request=ApprovalRequest(title="ok?")), task("b"), max_concurrency=2
        ),
        Loop(task("c"), id="L", until=False, max_iterations=3),
        Branch(if_=True, then=task("d", needs={"x": "a"})),
        name="w",
    ),
}


@pytest.mark.parametrize("change", sorted(MUTATIONS))
def test_any_change_to_the_tree_changes_graph_and_hash(change: str) -> None:
    """Changing one prop, order or structure makes an unequal graph with another hash."""
    base, changed = compile_tree(base_tree()), compile_tree(MUTATIONS[change]())
    assert base != changed
    assert base.hash != changed.hash


def test_all_mutated_hashes_are_distinct() -> None:
    """Every mutation above gives a different hash from every other."""
    hashes = {compile_tree(make()).hash for make in MUTATIONS.values()}
    assert len(hashes) == len(MUTATIONS)


def test_hash_is_stable_across_processes(tmp_path: Path) -> None:
    """The same definition file gives the same hash in fresh processes with other hash seeds."""
    source = tmp_path / "hashing.py"
    source.write_text(DEFINITION)
    here = render(runpy.run_path(str(source))["wf"]).hash
    script = (
        "import runpy, sys\n"
        "from smithers import render\n"
        "print(render(runpy.run_path(sys.argv[1])['wf']).hash)\n"
    )
    seen = set()
    for seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", script, str(source)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=120,
        )
        seen.add(done.stdout.strip())
    assert seen == {here}


def test_hash_is_independent_of_render_passes() -> None:
    """render() and compile_tree() of the same tree give the same hash."""

    @smithers
    def wf(ctx: Any) -> Workflow:
        return base_tree()

    assert render(wf).hash == compile_tree(base_tree()).hash


# -- frames ------------------------------------------------------------------------------------


def test_frame_round_trip_gives_an_equal_graph() -> None:
    """decode_frame(encode_frame(g)) equals g, with the same hash and no callables."""
    graph = rich_graph()
    frame = encode_frame(graph)
    assert isinstance(frame, bytes)
    decoded = decode_frame(frame)
    assert decoded == graph
    assert decoded.hash == graph.hash
    assert decoded.nodes == graph.nodes
    assert decoded.groups == graph.groups
    assert decoded.edges == graph.edges
    assert dict(decoded.elements) == {}
    assert decoded.node("inner").iteration == (0, 0)
    assert isinstance(decoded.node("inner").iteration, tuple)


def test_frames_of_equal_graphs_are_equal_bytes() -> None:
    """Equal graphs encode to identical frames (they are deduplicated by hash)."""
    assert encode_frame(rich_graph()) == encode_frame(rich_graph())


def test_decoded_graph_keeps_lookups() -> None:
    """A decoded graph answers node(), group() and loops() like the original."""
    decoded = decode_frame(encode_frame(rich_graph()))
    assert decoded.node("g").kind == "approval"
    assert decoded.group("Workflow(w)/Loop(out)/Loop(in)").on_max_reached == "fail"
    assert sorted(decoded.loops()) == ["in", "out"]


# -- JSON --------------------------------------------------------------------------------------


def test_to_json_is_to_dict_as_json() -> None:
    """to_json() parses back to exactly to_dict(), which carries the hash."""
    graph = rich_graph()
    data = graph.to_dict()
    assert json.loads(graph.to_json()) == data
    assert json.loads(graph.to_json(indent=None)) == data
    assert "\n" not in graph.to_json(indent=None)
    assert data["hash"] == graph.hash


def test_json_round_trip_rebuilds_an_equal_graph() -> None:
    """The JSON form rebuilds into an equal graph with the same hash."""
    graph = rich_graph()
    rebuilt = graph_from_builtins(json.loads(graph.to_json()))
    assert rebuilt == graph
    assert rebuilt.hash == graph.hash


def test_json_structure() -> None:
    """The JSON document has workflow, root, nodes, groups, edges and hash."""
    data = json.loads(rich_graph().to_json())
    assert set(data) == {"workflow", "root", "nodes", "groups", "edges", "hash"}
    assert (data["workflow"], data["root"]) == ("w", "Workflow(w)")
    assert [n["id"] for n in data["nodes"]] == ["a", "g", "s", "inner", "sk"]
    assert data["nodes"][0] == {
        "id": "a",
        "kind": "task",
        "path": "Workflow(w)/Parallel[0]/Task(a)",
        "label": "a",
        "output_type": "list[int]",
        "iteration": [],
        "loops": [],
        "parent": "Workflow(w)/Parallel[0]",
        "index": 0,
        "needs": {},
        "props": {
            "mode": "run",
            "retries": 2,
            "backoff": [1.0, 2.5],
            "timeout": 3.0,
            "continue_on_fail": True,
        },
        "skipped": False,
    }
    inner = data["nodes"][3]
    assert (inner["iteration"], inner["loops"]) == ([0, 0], ["out", "in"])
    groups = {g["path"]: g for g in data["groups"]}
    branch = groups["Workflow(w)/Branch[1]"]
    assert (branch["kind"], branch["condition"], branch["taken"], branch["frozen"]) == (
        "branch",
        False,
        "else",
        False,
    )
    loop = groups["Workflow(w)/Loop(out)/Loop(in)"]
    assert (loop["name"], loop["max_iterations"], loop["on_max_reached"], loop["until"]) == (
        "in",
        3,
        "fail",
        True,
    )
    assert groups["Workflow(w)/Loop(out)"]["until"] is None
    assert groups["Workflow(w)/Parallel[0]"]["max_concurrency"] == 2
    assert groups["Workflow(w)/Sequence[3]"]["skipped"] is True
    assert {"source": "ghost", "target": "sk", "kind": "needs"} in data["edges"]
    assert all(set(e) == {"source", "target", "kind"} for e in data["edges"])
