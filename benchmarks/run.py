"""The DESIGN.md §10 figures, each next to its target and a floor measured in the same run.

    python benchmarks/run.py            # everything (a few minutes the first time: it builds
                                        # 1,000- and 100,000-run stores, cached in .work/)
    python benchmarks/run.py --quick    # smaller repeats, no 10,000-run chain or store

The floor is one fsync'd single-put LMDB commit, opened exactly as the store opens LMDB, in
the same directory the benchmarks write to. Whole-process figures start a fresh interpreter
for every sample. Medians are reported; min and max show the spread.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import lmdb  # noqa: E402  (after the path tweak, so a checkout runs without installing)

import smithers  # noqa: E402
from benchmarks.scale import growth_rows, many_runs  # noqa: E402
from smithers import Parallel, Sequence, Task, Workflow  # noqa: E402
from smithers.store import open_store  # noqa: E402
from smithers.store.kv.lmdb_kv import _MAP_FLOOR, OPEN_OPTIONS  # noqa: E402

Row = tuple[str, str, str, str]


def _stats(samples: list[float]) -> tuple[float, float, float]:
    return statistics.median(samples), min(samples), max(samples)


def _ms(samples: list[float]) -> str:
    med, lo, hi = _stats(samples)
    return f"{med * 1000:.2f} ms (min {lo * 1000:.2f}, max {hi * 1000:.2f})"


FLOOR_COMMITS = 1000


def floor_commit(folder: str, n: int = FLOOR_COMMITS, name: str = "floor") -> list[float]:
    """One fsync'd single put per write transaction, LMDB opened as the store opens it, in a
    new environment.

    As many commits as chain 1,000 makes: on this disk the first 100-200 commits into a new
    environment are faster (about 145 us against 195 us), so a floor of 300 commits had a
    median anywhere from 153 to 199 us round to round, while one of 1,000 stays at the
    steady cost (195-200 us in the same rounds).
    """
    path = os.path.join(folder, name)
    os.makedirs(path)
    env = lmdb.open(path, **OPEN_OPTIONS)
    env.set_mapsize(_MAP_FLOOR)
    db = env.open_db(b"floor")
    samples = []
    for i in range(n):
        start = time.perf_counter()
        with env.begin(write=True) as txn:
            txn.put(i.to_bytes(8, "big"), b"x" * 64, db=db)
        samples.append(time.perf_counter() - start)
    env.close()
    return samples


def chain(n: int) -> smithers.WorkflowDefinition:
    @smithers.smithers
    def chain_workflow(ctx: smithers.Context) -> smithers.Element:
        return Workflow(
            Sequence(*[Task(id=f"t{i}", output=int, value=i) for i in range(n)]), name="chain"
        )

    return chain_workflow


def fan_out() -> smithers.WorkflowDefinition:
    @smithers.smithers
    def fan(ctx: smithers.Context) -> smithers.Element:
        return Workflow(
            Parallel(*[Task(id=f"p{i}", output=int, run=(lambda i=i: i)) for i in range(100)]),
            Task(id="join", output=int, value=1),
            name="fan",
        )

    return fan


def timed_run(definition: smithers.WorkflowDefinition, store_path: str) -> float:
    store = open_store(store_path)
    try:
        start = time.perf_counter()
        result = smithers.run(definition, store=store)
        elapsed = time.perf_counter() - start
    finally:
        store.close()
    if result.status != "finished":
        raise SystemExit(f"benchmark run ended {result.status}: {result.error}")
    return elapsed


def store_bytes(path: str) -> int:
    """Bytes the LMDB data file holds in use (pages up to the last one written)."""
    env = lmdb.open(path, subdir=True, readonly=True, lock=False, max_dbs=16)
    try:
        info, stat = env.info(), env.stat()
        return int((info["last_pgno"] + 1) * stat["psize"])
    finally:
        env.close()


def whole_process(argv: list[str], *, cwd: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv} exited {done.returncode}: {done.stderr.strip()}")
    return elapsed


def dependency_floor(n: int, env: dict[str, str]) -> list[float]:
    """A whole interpreter that only imports smithers' dependencies: the floor under every
    whole-process figure on this machine."""
    code = "import asyncio, attrs, cattrs, click, lmdb, msgspec"
    return [
        whole_process([sys.executable, "-c", code], cwd=ROOT.as_posix(), env=env)
        for _ in range(n + 1)
    ][1:]


def import_time(n: int, env: dict[str, str]) -> list[float]:
    # `import smithers` alone is lazy and nearly free; time what a workflow file does.
    code = (
        "import time; t = time.perf_counter(); "
        "from smithers import Approval, ApprovalRequest, Sequence, Task, Workflow, smithers; "
        "print(time.perf_counter() - t)"
    )
    samples = []
    for _ in range(n + 1):
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        samples.append(float(out.stdout))
    return samples[1:]  # the first run may compile bytecode


def approve_whole_process(folder: str, n: int, env: dict[str, str]) -> list[float]:
    """`smithers approve RUN --node approve-deploy` on a parked 3-node run, until finished."""
    work = os.path.join(folder, "approve")
    shutil.copytree(ROOT / "examples", os.path.join(work, "examples"))
    store = os.path.join(work, ".smithers")
    samples = []
    for i in range(n + 1):
        run_id = f"deploy-{i}"
        subprocess.run(
            [sys.executable, "-m", "smithers", "run", "examples/deploy.py", "--run-id", run_id],
            cwd=work,
            env=env,
            capture_output=True,
            check=False,
        )
        samples.append(
            whole_process(
                [
                    sys.executable,
                    "-m",
                    "smithers",
                    "--store",
                    store,
                    "approve",
                    run_id,
                    "--node",
                    "approve-deploy",
                    "--yes",
                    "--note",
                    "bench",
                ],
                cwd=work,
                env=env,
            )
        )
    return samples[1:]


def inbox_store(path: str, runs: int, gates: int) -> int:
    """Write a store with `runs` runs, `gates` of them parked at a requested gate; how many
    were parked."""
    from smithers.runtime.lease import now_iso
    from smithers.store.base import Batch
    from smithers.store.records import ApprovalRecord, NewEvent, NodeRecord, RunRecord

    store = open_store(path)
    every = max(runs // gates, 1)
    made = 0
    try:
        for i in range(runs):
            now = now_iso()
            parked = i % every == 0 and made < gates
            made += parked
            record = RunRecord(
                run_id=f"run-{i}",
                workflow="deploy",
                status="waiting-approval" if parked else "finished",
                created_at=now,
                updated_at=now,
            )
            batch = Batch(events=[NewEvent(type="run.started", at=now)])
            if parked:
                batch.nodes.append(
                    NodeRecord(
                        node_id="approve-deploy",
                        kind="approval",
                        state="waiting-approval",
                        started_at=now,
                    )
                )
                batch.approvals.append(
                    ApprovalRecord(
                        node_id="approve-deploy",
                        status="requested",
                        requested_at=now,
                        request={
                            "title": f"Deploy 1.{i}?",
                            "summary": "Roll out.",
                            "metadata": {"risk": "low"},
                        },
                    )
                )
            store.create_run(record, batch)
    finally:
        store.close()
    return made


def approvals_inbox(
    folder: str, runs: int, gates: int, n: int, env: dict[str, str]
) -> tuple[list[float], int]:
    """`smithers approvals` over a store with `runs` runs, `gates` of them parked at a gate."""
    path = os.path.join(folder, "inbox")
    made = inbox_store(path, runs, gates)
    samples = [
        whole_process(
            [sys.executable, "-m", "smithers", "--store", path, "approvals"], cwd=folder, env=env
        )
        for _ in range(n + 1)
    ]
    return samples[1:], made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller stores")
    args = parser.parse_args()
    quick = args.quick
    base = os.environ.get("SMITHERS_BENCH_DIR") or str(ROOT / "benchmarks" / ".work")
    os.makedirs(base, exist_ok=True)
    folder = tempfile.mkdtemp(prefix="bench-", dir=base)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SMITHERS_STORE", "SMITHERS_CHECK_RENDER", "PYTHONDONTWRITEBYTECODE")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    rows: list[Row] = []
    try:
        print(
            f"smithers benchmarks in {folder} (python {sys.version.split()[0]}, "
            f"{os.cpu_count()} cpus)",
            flush=True,
        )

        # The disk's speed drifts; each round measures the floor and then the chain, and the
        # ratio is taken round by round.
        floors, samples_1k, ratios = [], [], []
        for i in range(3 if quick else 5):
            floor_round = floor_commit(folder, name=f"floor-{i}")
            per_node_round = timed_run(chain(1000), os.path.join(folder, f"chain1k-{i}")) / 1000
            floors.extend(floor_round)
            samples_1k.append(per_node_round)
            ratios.append(per_node_round / statistics.median(floor_round))
        floor_med = statistics.median(floors)
        per_node = statistics.median(samples_1k)
        rows.append(
            ("floor: one fsync'd single-put LMDB commit (1,000 a round)", _ms(floors), "-", "-")
        )
        rows.append(
            (
                "chain 1,000: per-node cost (LMDB, durable)",
                _ms(samples_1k),
                "<= 1.5x floor",
                f"{statistics.median(ratios):.2f}x floor (rounds: "
                + ", ".join(f"{r:.2f}" for r in ratios)
                + ")",
            )
        )
        used = store_bytes(os.path.join(folder, "chain1k-0"))
        rows.append(
            (
                "chain 1,000: store bytes per node",
                f"{used / 1000:.0f} B ({used / 1024:.0f} KiB in use)",
                "< 1 KB",
                "ok" if used / 1000 < 1000 else "over",
            )
        )

        if not quick:
            t10k = timed_run(chain(10_000), os.path.join(folder, "chain10k")) / 10_000
            rows.append(
                (
                    "chain 10,000 / chain 1,000 (per node)",
                    f"{t10k / per_node * 10:.2f} (total time ratio)",
                    "<= 11",
                    f"{t10k * 1000:.3f} ms/node",
                )
            )

        # Many runs at once: the node-completion rate against the single-put commit rate, round
        # by round (each round measures its own floor first).
        rates, rate_ratios = [], []
        for i in range(3 if quick else 5):
            floor_round = statistics.median(floor_commit(folder, name=f"floor-many-{i}"))
            took = many_runs(chain(10), os.path.join(folder, f"many-{i}"), 100)
            rates.append(1000 / took)
            rate_ratios.append(1000 / took * floor_round)
        rows.append(
            (
                "100 runs x chain 10 under gather, one store: nodes/s",
                f"{statistics.median(rates):,.0f}/s (min {min(rates):,.0f}, max {max(rates):,.0f})",
                ">= 2x floor rate",
                f"{statistics.median(rate_ratios):.2f}x the single-put rate (rounds: "
                + ", ".join(f"{r:.2f}" for r in rate_ratios)
                + ")",
            )
        )

        fan = [
            timed_run(fan_out(), os.path.join(folder, f"fan-{i}")) for i in range(5 if quick else 9)
        ]
        rows.append(
            (
                "fan-out 100 + join, in-process",
                _ms(fan),
                "< 50 ms",
                f"{statistics.median(fan) / floor_med:.0f}x floor",
            )
        )

        imports = import_time(5 if quick else 11, env)
        rows.append(
            ("import smithers + authoring names (in-process)", _ms(imports), "< 100 ms", "-")
        )

        deps = dependency_floor(5 if quick else 11, env)
        rows.append(
            ("floor: python importing asyncio/attrs/cattrs/click/lmdb/msgspec", _ms(deps), "-", "-")
        )

        approves = approve_whole_process(folder, 3 if quick else 7, env)
        rows.append(
            (
                "smithers approve on a parked 3-node run, whole process",
                _ms(approves),
                "< 250 ms",
                "-",
            )
        )

        runs, gates = (1000, 100) if quick else (10_000, 1_000)
        inbox, made = approvals_inbox(folder, runs, gates, 3 if quick else 7, env)
        rows.append(
            (
                f"smithers approvals, {runs:,} runs / {made:,} gates, whole process",
                _ms(inbox),
                "< 250 ms",
                "-",
            )
        )

        def cli(args: list[str]) -> float:
            return whole_process([sys.executable, "-m", "smithers", *args], cwd=folder, env=env)

        sizes = (1000, 10_000) if quick else (1000, 100_000)
        rows.extend(growth_rows(base, sizes, 3 if quick else 7, cli))
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    width = max(len(r[0]) for r in rows)
    mwidth = max(len(r[1]) for r in rows)
    print()
    print(f"{'figure':<{width}}  {'measured (median)':<{mwidth}}  {'target':<12}  vs floor")
    for name, measured, target, note in rows:
        print(f"{name:<{width}}  {measured:<{mwidth}}  {target:<12}  {note}")


if __name__ == "__main__":
    main()
