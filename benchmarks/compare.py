"""smithers side by side with LangGraph (SQLite checkpointer) and DBOS (on SQLite).

    python3 -m pip install '.[bench]'   # or: langgraph langgraph-checkpoint-sqlite dbos
    python3 benchmarks/compare.py       # every framework that is installed, 5 rounds
    python3 benchmarks/compare.py --rounds 3 --only smithers

Three shapes, each durable on disk in a fresh temporary directory: a chain of 1,000 steps
(reported per node), a fan-out of 100 steps plus a join, and an approval round trip (a build
step, a human gate, a record step: park in one process, then approve from a new process and
finish; the new process is timed whole, interpreter start and imports included). Every round
measures the floor first, one fsync'd single-put LMDB commit opened as the smithers store opens
LMDB, and every figure is also printed as a ratio to the floor of its own round. Medians over
the rounds, with min and max. A framework that is not installed is skipped and said so.
"""

from __future__ import annotations

import argparse
import importlib.util
import operator
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypedDict

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.run import floor_commit, whole_process  # noqa: E402

CHAIN = 1000
FAN = 100
FRAMEWORKS = ("smithers", "langgraph", "dbos")
NEEDS = {
    "smithers": ("lmdb",),
    "langgraph": ("langgraph", "langgraph.checkpoint.sqlite"),
    "dbos": ("dbos",),
}


def installed(name: str) -> bool:
    for module in NEEDS[name]:
        try:
            if importlib.util.find_spec(module) is None:
                return False
        except ModuleNotFoundError:
            return False
    return True


# --- smithers --------------------------------------------------------------------------------


def smithers_chain(folder: str, n: int) -> tuple[float, int]:
    import smithers
    from smithers import Sequence, Task, Workflow
    from smithers.store import open_store

    @smithers.smithers
    def chain(ctx: smithers.Context) -> smithers.Element:
        return Workflow(
            Sequence(*[Task(id=f"t{i}", output=int, run=(lambda i=i: i)) for i in range(n)]),
            name="chain",
        )

    path = os.path.join(folder, "smithers-chain")
    store = open_store(path)
    try:
        start = time.perf_counter()
        result = smithers.run(chain, store=store)
        elapsed = time.perf_counter() - start
    finally:
        store.close()
    assert result.status == "finished", result.error
    from benchmarks.run import store_bytes

    return elapsed, store_bytes(path)


def smithers_fan(folder: str, n: int) -> float:
    import smithers
    from smithers import Parallel, Task, Workflow
    from smithers.store import open_store

    @smithers.smithers
    def fan(ctx: smithers.Context) -> smithers.Element:
        return Workflow(
            Parallel(*[Task(id=f"p{i}", output=int, run=(lambda i=i: i)) for i in range(n)]),
            Task(id="join", output=int, value=1),
            name="fan",
        )

    store = open_store(os.path.join(folder, "smithers-fan"))
    try:
        start = time.perf_counter()
        result = smithers.run(fan, store=store)
        elapsed = time.perf_counter() - start
    finally:
        store.close()
    assert result.status == "finished", result.error
    return elapsed


SMITHERS_GATE = """
import msgspec
from smithers import Approval, ApprovalRequest, Sequence, Task, Workflow, smithers

@smithers
def gate(ctx):
    decision = ctx.output_maybe("approve")
    return Workflow(Sequence(
        Task(id="build", output=str, run=lambda: "plan"),
        Approval(id="approve", needs={"build": "build"},
                 request=lambda build: ApprovalRequest(title="Ship?", summary=build)),
        Task(id="record", output=str, run=lambda: "approved" if decision else "?"),
    ), name="gate")
"""


def smithers_park(folder: str) -> list[str]:
    path = os.path.join(folder, "gate.py")
    Path(path).write_text(SMITHERS_GATE)
    store = os.path.join(folder, "smithers-gate")
    run = [sys.executable, "-m", "smithers", "--store", store]
    subprocess.run(
        [*run, "run", path, "--run-id", "r1"],
        cwd=folder,
        env=_env(),
        check=False,
        capture_output=True,
    )
    return [*run, "approve", "r1", "--node", "approve", "--yes", "--note", "bench"]


# --- LangGraph -------------------------------------------------------------------------------


class ChainState(TypedDict):
    value: int


class FanState(TypedDict):
    values: Annotated[list[int], operator.add]


class GateState(TypedDict, total=False):
    plan: str
    decision: str
    record: str


def _lg_saver(path: str):  # type: ignore[no-untyped-def]
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(path, check_same_thread=False)
    conn.execute("PRAGMA synchronous=FULL")  # durable: fsync at every commit
    return SqliteSaver(conn), conn


def langgraph_chain(folder: str, n: int) -> tuple[float, int]:
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(ChainState)
    for i in range(n):
        graph.add_node(f"t{i}", lambda state, i=i: {"value": i})
    graph.add_edge(START, "t0")
    for i in range(n - 1):
        graph.add_edge(f"t{i}", f"t{i + 1}")
    graph.add_edge(f"t{n - 1}", END)
    path = os.path.join(folder, "langgraph-chain.sqlite")
    saver, conn = _lg_saver(path)
    app = graph.compile(checkpointer=saver)
    config = {"configurable": {"thread_id": "chain"}, "recursion_limit": n + 10}
    start = time.perf_counter()
    app.invoke({"value": -1}, config, durability="sync")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed, os.path.getsize(path)


def langgraph_fan(folder: str, n: int) -> float:
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(FanState)
    for i in range(n):
        graph.add_node(f"p{i}", lambda state, i=i: {"values": [i]})
        graph.add_edge(START, f"p{i}")
    graph.add_node("join", lambda state: {"values": [1]})
    graph.add_edge([f"p{i}" for i in range(n)], "join")
    graph.add_edge("join", END)
    saver, conn = _lg_saver(os.path.join(folder, "langgraph-fan.sqlite"))
    app = graph.compile(checkpointer=saver)
    start = time.perf_counter()
    app.invoke({"values": []}, {"configurable": {"thread_id": "fan"}}, durability="sync")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def _langgraph_gate(path: str):  # type: ignore[no-untyped-def]
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import interrupt

    def approve(state: GateState) -> GateState:
        return {"decision": interrupt({"title": "Ship?", "summary": state["plan"]})}

    graph = StateGraph(GateState)
    graph.add_node("build", lambda state: {"plan": "plan"})
    graph.add_node("approve", approve)
    graph.add_node("record", lambda state: {"record": state["decision"]})
    graph.add_edge(START, "build")
    graph.add_edge("build", "approve")
    graph.add_edge("approve", "record")
    graph.add_edge("record", END)
    saver, conn = _lg_saver(path)
    return graph.compile(checkpointer=saver), conn


def langgraph_park(folder: str) -> list[str]:
    path = os.path.join(folder, "langgraph-gate.sqlite")
    app, conn = _langgraph_gate(path)
    app.invoke({}, {"configurable": {"thread_id": "r1"}}, durability="sync")
    conn.close()
    return [sys.executable, __file__, "--approve", "langgraph", path]


def langgraph_approve(path: str) -> None:
    from langgraph.types import Command

    app, conn = _langgraph_gate(path)
    out = app.invoke(
        Command(resume="approved"), {"configurable": {"thread_id": "r1"}}, durability="sync"
    )
    conn.close()
    assert out["record"] == "approved", out


# --- DBOS ------------------------------------------------------------------------------------


def _dbos(path: str):  # type: ignore[no-untyped-def]
    from dbos import DBOS

    DBOS(config={"name": "compare", "system_database_url": f"sqlite:///{path}"})
    return DBOS


def _dbos_steps():  # type: ignore[no-untyped-def]
    from dbos import DBOS

    @DBOS.step()
    def step(i: int) -> int:
        return i

    @DBOS.workflow()
    def chain(n: int) -> int:
        for i in range(n):
            step(i)
        return n

    @DBOS.workflow()
    def fan(k: int) -> int:
        handles = [DBOS.start_workflow(child, i) for i in range(k)]
        return sum(h.get_result() for h in handles) + step(1)

    @DBOS.workflow()
    def child(i: int) -> int:
        return step(i)

    return chain, fan


def dbos_run(folder: str, n: int, k: int) -> tuple[float, float, int]:
    """DBOS keeps one registry per process: chain and fan-out share one launch."""
    path = os.path.join(folder, "dbos.sqlite")
    DBOS = _dbos(path)
    chain, fan = _dbos_steps()
    DBOS.launch()
    try:
        chain(10)  # warm-up
        fan(5)
        base = os.path.getsize(path)
        start = time.perf_counter()
        chain(n)
        chain_s = time.perf_counter() - start
        size = os.path.getsize(path) - base
        start = time.perf_counter()
        fan(k)
        fan_s = time.perf_counter() - start
    finally:
        DBOS.destroy()
    return chain_s, fan_s, size


def _dbos_gate():  # type: ignore[no-untyped-def]
    from dbos import DBOS

    @DBOS.step()
    def build() -> str:
        return "plan"

    @DBOS.step()
    def record(decision: str) -> str:
        return decision

    @DBOS.workflow()
    def gate() -> str:
        build()
        decision = DBOS.recv("approve", timeout_seconds=600)
        return record(decision)

    return gate


def dbos_park(folder: str) -> list[str]:
    path = os.path.join(folder, "dbos-gate.sqlite")
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.compare import "
        f"_dbos, _dbos_gate; DBOS = _dbos({path!r}); gate = _dbos_gate(); DBOS.launch(); "
        "from dbos import SetWorkflowID\n"
        "with SetWorkflowID('r1'): DBOS.start_workflow(gate)\n"
        "import time\n"
        "while DBOS.get_workflow_status('r1').status != 'PENDING' or "
        "not DBOS.list_workflow_steps('r1'): time.sleep(0.01)\n"
        "import os; os._exit(0)"  # leave the workflow parked, as a killed process would
    )
    subprocess.run([sys.executable, "-c", code], env=_env(), check=True, capture_output=True)
    return [sys.executable, __file__, "--approve", "dbos", path]


def dbos_approve(path: str) -> None:
    DBOS = _dbos(path)
    gate = _dbos_gate()  # noqa: F841  (registered so recovery can resume it)
    DBOS.launch()  # recovers the parked workflow
    DBOS.send("r1", "approved", "approve")
    result = DBOS.retrieve_workflow("r1").get_result()
    DBOS.destroy()
    assert result == "approved", result


# --- the rounds ------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def one_round(name: str, chain_n: int, fan_n: int) -> dict[str, float]:
    """One child process per framework and round, so no framework's state leaks into another."""
    with tempfile.TemporaryDirectory(prefix=f"compare-{name}-", dir=os.environ.get("TMPDIR")) as d:
        out = subprocess.run(
            [sys.executable, __file__, "--child", name, d, str(chain_n), str(fan_n)],
            env=_env(),
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise SystemExit(f"{name} failed: {out.stderr.strip()[-3000:]}")
        figures = {k: float(v) for k, v in (line.split("=") for line in out.stdout.split())}
        park = {"smithers": smithers_park, "langgraph": langgraph_park, "dbos": dbos_park}[name]
        figures["approve"] = whole_process(park(d), cwd=d, env=_env())
        figures["floor"] = statistics.median(floor_commit(d))
    return figures


def child(name: str, folder: str, chain_n: int, fan_n: int) -> None:
    # A warm-up of the small shapes first, so imports and first-call costs are excluded.
    warm = os.path.join(folder, "warm")
    os.makedirs(warm)
    if name == "dbos":
        chain_s, fan_s, size = dbos_run(folder, chain_n, fan_n)
    else:
        chain_fn: Callable[[str, int], tuple[float, int]] = (
            smithers_chain if name == "smithers" else langgraph_chain
        )
        fan_fn: Callable[[str, int], float] = smithers_fan if name == "smithers" else langgraph_fan
        chain_fn(warm, 10)
        fan_fn(warm, 5)
        chain_s, size = chain_fn(folder, chain_n)
        fan_s = fan_fn(folder, fan_n)
    print(f"chain={chain_s / chain_n} fan={fan_s} bytes={size / chain_n}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=FRAMEWORKS, action="append")
    parser.add_argument("--chain", type=int, default=CHAIN)
    parser.add_argument("--fan", type=int, default=FAN)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--approve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, folder, chain_n, fan_n = args.child
        return child(name, folder, int(chain_n), int(fan_n))
    if args.approve:
        name, path = args.approve
        return (langgraph_approve if name == "langgraph" else dbos_approve)(path)

    names = [n for n in (args.only or FRAMEWORKS) if installed(n)]
    for n in args.only or FRAMEWORKS:
        if n not in names:
            print(f"{n}: not installed, skipped (python3 -m pip install '.[bench]')")
    results: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for r in range(args.rounds):
        for n in names:  # interleaved, so a noisy spell hits every framework alike
            results[n].append(one_round(n, args.chain, args.fan))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    def cell(rows: list[dict[str, float]], key: str, scale: float, unit: str) -> str:
        vals = [row[key] for row in rows]
        ratios = [row[key] / row["floor"] for row in rows] if key != "bytes" else None
        med = statistics.median(vals) * scale
        text = f"{med:.2f} {unit} ({min(vals) * scale:.2f}-{max(vals) * scale:.2f})"
        if ratios:
            text += f" = {statistics.median(ratios):.1f}x floor"
        return text

    floors = [row["floor"] for rows in results.values() for row in rows]
    print(
        f"\nchain {args.chain}, fan-out {args.fan}; medians (min-max) of {args.rounds} rounds; "
        f"floor {statistics.median(floors) * 1000:.3f} ms "
        f"({min(floors) * 1000:.3f}-{max(floors) * 1000:.3f})\n"
    )
    print(
        "| framework | chain, per node | fan-out + join | approve from a new process "
        "and finish | store bytes per chain node |"
    )
    print("| --- | --- | --- | --- | --- |")
    for n, rows in results.items():
        print(
            f"| {n} | {cell(rows, 'chain', 1000, 'ms')} | {cell(rows, 'fan', 1000, 'ms')} | "
            f"{cell(rows, 'approve', 1000, 'ms')} | "
            f"{statistics.median(r['bytes'] for r in rows):,.0f} |"
        )


if __name__ == "__main__":
    main()
