"""The PostgreSQL store's figures (DESIGN §10): chain 1,000 per node beside LMDB's, and beside
one durable single-row commit on the same server; runs finished per second by 1, 2 and 4
``smithers worker`` processes on one database.

    python benchmarks/postgres.py                  # starts a throwaway durable server
    python benchmarks/postgres.py --url URL        # or measures an existing database
    python benchmarks/postgres.py --only workers   # just the workers (or: --only chain)

The throwaway server runs with PostgreSQL's defaults (fsync and synchronous_commit on) on a
loopback port, from Debian's binaries, as the ``postgres`` user when run as root. The chain
also runs once with ``synchronous_commit=off`` for this session only, which shows how much of
the cost is the WAL flush and how much is round trips and CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import psycopg  # noqa: E402
from run import _ms, chain, floor_commit, timed_run  # noqa: E402

from tests.postgres_cluster import cluster, missing_reason  # noqa: E402


def floor_postgres(url: str, n: int) -> list[float]:
    """One durable single-row INSERT per transaction (autocommit), on the same connection."""
    samples = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_floor (k bigint PRIMARY KEY, v bytea)")
        conn.execute("TRUNCATE bench_floor")
        for i in range(n):
            start = time.perf_counter()
            conn.execute("INSERT INTO bench_floor VALUES (%s, %s)", (i, b"x" * 64))
            samples.append(time.perf_counter() - start)
        conn.execute("DROP TABLE bench_floor")
    return samples


def fresh_database(url: str) -> str:
    """A new database beside the one at ``url`` (each chain starts from an empty store)."""
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + "/" + name


# A gate, then three tasks at once, then two: what a worker's resume runs after an approval.
WORKER_FLOW = """
from smithers import Approval, ApprovalRequest, Parallel, Sequence, Task, Workflow, smithers


@smithers
def flow(ctx):
    return Workflow(
        Sequence(
            Approval(id="gate", request=ApprovalRequest(title="Go?")),
            Parallel(*[Task(id=n, output=int, value=1) for n in ("a", "b", "c")]),
            Parallel(*[Task(id=n, output=int, value=1) for n in ("d", "e")]),
        ),
        name="flow",
    )
"""


def workers_throughput(url: str, folder: str, workers: int, runs: int, slots: int) -> str:
    """Runs finished per second by ``workers`` worker processes (``--workers slots`` each)
    over ``runs`` approved runs, timed from the workers' start to the last run finished;
    with the machine's CPU per run (workers, their fork servers and resumes, PostgreSQL:
    resumes forked by a worker's fork server are not its children, so rusage misses them)."""
    from smithers import approve, run
    from smithers.runtime.loader import load_definition
    from smithers.store import open_store

    here = os.path.join(folder, f"workers-{workers}")
    os.makedirs(here)
    with open(os.path.join(here, "flow.py"), "w") as file:
        file.write(WORKER_FLOW)
    definition = load_definition(os.path.join(here, "flow.py:flow")).definition
    target = fresh_database(url)
    store = open_store(target)
    cwd = os.getcwd()
    os.chdir(here)
    try:
        for i in range(runs):
            run(definition, store=store, run_id=f"r{i}")
            approve(f"r{i}", "gate", store=store, by="bench")
    finally:
        os.chdir(cwd)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SMITHERS_STORE", None)
    argv = [sys.executable, "-m", "smithers", "--store", target, "worker", "--workers", str(slots)]
    cpu = _machine_cpu()
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            argv, cwd=here, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(workers)
    ]
    try:
        while len(store.runs("finished")) < runs:
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait()
        used = _machine_cpu() - cpu
        store.close()
    return (
        f"{runs / elapsed:.1f} runs/s ({elapsed:.1f} s; "
        f"{used / runs * 1000:.0f} ms of machine CPU per run)"
    )


def resume_floor(url: str, folder: str, n: int = 10) -> list[str]:
    """What one ``smithers resume`` child costs before any work (resuming a finished run:
    import, connect, read the run, print its document), started as the worker starts it
    (forked from a warm fork server) and as a fresh ``python -m smithers``."""
    from smithers import run
    from smithers.runtime.loader import load_definition
    from smithers.service.children import smithers_child

    here = os.path.join(folder, "floor")
    os.makedirs(here)
    with open(os.path.join(here, "flow.py"), "w") as file:
        file.write(WORKER_FLOW.replace("Approval(id=", "None and Approval(id="))
    definition = load_definition(os.path.join(here, "flow.py:flow")).definition
    target = fresh_database(url)
    run(definition, store=target, run_id="done")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "smithers", "--store", target, "--json", "resume", "done"]

    async def forked() -> None:
        child = await smithers_child(target, ["resume", "done"], cwd=here)
        assert child.code == 0, child

    def fresh() -> None:
        subprocess.run(argv, cwd=here, env=env, capture_output=True, check=True)

    asyncio.run(forked())  # starts the fork server
    found = []
    for name, once in (
        ("forked from the fork server", lambda: asyncio.run(forked())),
        ("a fresh `python -m smithers`", fresh),
    ):
        walls, cpus = [], []
        for _ in range(n):
            cpu, start = _machine_cpu(), time.perf_counter()
            once()
            walls.append(time.perf_counter() - start)
            cpus.append(_machine_cpu() - cpu)
        med = statistics.median
        found.append(
            f"{name}: {med(walls) * 1000:.0f} ms wall, {med(cpus) * 1000:.0f} ms of machine "
            f"CPU (median of {n})"
        )
    return found


def _machine_cpu() -> float:
    """CPU seconds the whole machine spent busy so far (Linux /proc/stat), all processes."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a database to measure in (default: a throwaway server)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each measurement")
    parser.add_argument("--only", choices=["chain", "workers"], help="measure one part only")
    parser.add_argument("--runs", type=int, default=200, help="runs for the workers' figure")
    parser.add_argument("--slots", type=int, default=2, help="each worker's --workers")
    args = parser.parse_args()
    with ExitStack() as stack:
        url = args.url
        if url is None:
            reason = missing_reason()
            if reason:
                raise SystemExit(f"cannot start PostgreSQL: {reason}")
            url = stack.enter_context(cluster()).url()
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pg-"))
        print(f"PostgreSQL benchmarks ({os.cpu_count()} cpus), {args.rounds} rounds", flush=True)
        if args.only != "chain":
            for line in resume_floor(url, folder):
                print(f"floor: one `smithers resume` child that runs nothing, {line}")
            for count in (1, 2, 4):
                figure = workers_throughput(url, folder, count, args.runs, args.slots)
                print(f"{count} worker(s) x --workers {args.slots}, {args.runs} runs: {figure}")
        if args.only == "workers":
            return
        lmdb_floor, lmdb_chain, pg_floor, pg_chain, pg_async = [], [], [], [], []
        for i in range(args.rounds):
            lmdb_floor.extend(floor_commit(folder, name=f"floor-{i}"))
            lmdb_chain.append(timed_run(chain(1000), os.path.join(folder, f"c{i}")) / 1000)
            pg_floor.extend(floor_postgres(url, 300))
            pg_chain.append(timed_run(chain(1000), fresh_database(url)) / 1000)
            relaxed = fresh_database(url) + "?options=-csynchronous_commit%3Doff"
            pg_async.append(timed_run(chain(1000), relaxed) / 1000)
        written = _rows_per_node(url)
        rows = [
            ("floor: one fsync'd single-put LMDB commit", _ms(lmdb_floor)),
            ("chain 1,000 per node, LMDB (durable)", _ms(lmdb_chain)),
            ("floor: one durable single-row PostgreSQL commit", _ms(pg_floor)),
            ("chain 1,000 per node, PostgreSQL (durable)", _ms(pg_chain)),
            ("chain 1,000 per node, PostgreSQL, synchronous_commit=off", _ms(pg_async)),
            ("PostgreSQL rows written and transactions per node", written),
        ]
        med = statistics.median
        rows.append(
            (
                "PostgreSQL per node / its floor; / LMDB per node",
                f"{med(pg_chain) / med(pg_floor):.2f}x; {med(pg_chain) / med(lmdb_chain):.2f}x",
            )
        )
        width = max(len(name) for name, _ in rows)
        for name, figure in rows:
            print(f"{name:<{width}}  {figure}")


def _rows_per_node(url: str) -> str:
    """Rows written and transactions committed per node, from the server's own counters
    around a chain of 200 (reads included: the owner's watcher reads twice a second)."""
    target = fresh_database(url)
    with psycopg.connect(target, autocommit=True) as conn:

        def counters() -> tuple[int, int]:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute(
                "SELECT xact_commit, tup_inserted + tup_updated FROM pg_stat_database "
                "WHERE datname = current_database()"
            ).fetchone()
            assert row is not None
            return int(row[0]), int(row[1])

        timed_run(chain(5), target)  # creates the tables
        time.sleep(0.6)  # the statistics collector reports at most twice a second
        before = counters()
        timed_run(chain(200), target)
        time.sleep(0.6)
        after = counters()
    commits, rows = after[0] - before[0], after[1] - before[1]
    return f"{rows / 200:.1f} rows, {commits / 200:.2f} transactions"


if __name__ == "__main__":
    main()
