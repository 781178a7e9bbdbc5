"""The DESIGN.md §10 service figures, measured against a real `smithers serve` on loopback.

    python benchmarks/service.py            # everything (a few minutes on 2 cores)
    python benchmarks/service.py --quick    # fewer runs, smaller stores

1. POST approve on a parked gate, answered with the decision durable (p50 target < 5 ms).
2. POST approve to the run's `run.finished` (3-node run, worker resume in a child process;
   p50 target < 150 ms).
3. N parked runs approved at 32 concurrent requests: throughput, p50/p99, errors (must be 0),
   and the time until every run finished.
4. GET /api/v1/approvals over 10,000 runs / 1,000 requested gates (p50 target < 20 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks.run import inbox_store  # noqa: E402
from smithers import run  # noqa: E402
from smithers.runtime.loader import load_definition  # noqa: E402
from smithers.service.auth import create_token  # noqa: E402
from smithers.store import open_store  # noqa: E402

GATE = "approve-deploy"


def pct(samples: list[float], p: float) -> float:
    """The p-th percentile (nearest rank), in ms."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))] * 1000


def park(folder: str, ids: list[str]) -> None:
    """Start examples/deploy.py runs in this process until each waits at its gate."""
    definition = load_definition(os.path.join(folder, "examples", "deploy.py")).definition
    here = os.getcwd()
    os.chdir(folder)
    try:
        for run_id in ids:
            run(definition, store=os.path.join(folder, ".smithers"), run_id=run_id)
    finally:
        os.chdir(here)


def serve(store: str, cwd: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """Start `smithers serve --port 0` and return it with its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "smithers", "--store", store, "serve", "--port", "0"],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    found = re.search(r"listening on (http://\S+)", line)
    assert found, line
    return proc, found.group(1)


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM and wait."""
    proc.terminate()
    proc.communicate(timeout=60)


def finished_all(store: object, ids: list[str], timeout: float = 600.0) -> float:
    """Seconds until every run in ``ids`` is finished (polling the store)."""
    start = time.perf_counter()
    waiting = set(ids)
    while waiting:
        waiting = {r for r in waiting if store.get_run(r).status != "finished"}  # type: ignore[attr-defined]
        if time.perf_counter() - start > timeout:
            raise SystemExit(f"{len(waiting)} runs did not finish")
        time.sleep(0.002)
    return time.perf_counter() - start


def approve_latency(client: httpx.Client, ids: list[str]) -> list[float]:
    """Figure 1: one POST at a time, each on another parked run."""
    samples = []
    for run_id in ids:
        start = time.perf_counter()
        response = client.post(f"/api/v1/runs/{run_id}/nodes/{GATE}/approve", json={})
        samples.append(time.perf_counter() - start)
        assert response.status_code == 200, response.text
    return samples


def approve_to_finished(
    client: httpx.Client, store: object, ids: list[str]
) -> tuple[list[float], list[float]]:
    """Figure 2: POST, then wait for the run's run.finished (one run at a time); also the
    POST's own latency there (the previous run's child may still be exiting)."""
    samples, posts = [], []
    for run_id in ids:
        start = time.perf_counter()
        response = client.post(f"/api/v1/runs/{run_id}/nodes/{GATE}/approve", json={})
        posts.append(time.perf_counter() - start)
        assert response.status_code == 200, response.text
        while store.get_run(run_id).status != "finished":  # type: ignore[attr-defined]
            time.sleep(0.001)
        samples.append(time.perf_counter() - start)
    return samples, posts


async def approve_concurrently(
    url: str, token: str, ids: list[str], concurrency: int
) -> tuple[list[float], int, float]:
    """Figure 3: every run approved, ``concurrency`` requests in flight."""
    latencies: list[float] = []
    errors = 0
    gate = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as c:

        async def one(run_id: str) -> None:
            nonlocal errors
            async with gate:
                start = time.perf_counter()
                response = await c.post(f"/api/v1/runs/{run_id}/nodes/{GATE}/approve", json={})
                latencies.append(time.perf_counter() - start)
                errors += response.status_code != 200

        start = time.perf_counter()
        await asyncio.gather(*(one(r) for r in ids))
        wall = time.perf_counter() - start
    return latencies, errors, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, smaller stores")
    quick = parser.parse_args().quick
    n_latency, n_finish, n_bulk = (50, 10, 100) if quick else (200, 30, 1000)
    inbox_runs, inbox_gates = (1000, 100) if quick else (10_000, 1_000)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SMITHERS_STORE", None)
    rows = []
    with tempfile.TemporaryDirectory(prefix="smithers-service-bench-") as folder:
        shutil.copytree(ROOT / "examples", os.path.join(folder, "examples"))
        store_path = os.path.join(folder, ".smithers")
        lat_ids = [f"lat-{i}" for i in range(n_latency)]
        fin_ids = [f"fin-{i}" for i in range(n_finish)]
        bulk_ids = [f"bulk-{i}" for i in range(n_bulk)]
        print(f"parking {n_latency + n_finish + n_bulk} runs...", file=sys.stderr)
        park(folder, lat_ids + fin_ids + bulk_ids)
        store = open_store(store_path)
        token = create_token(store, "bench", "approver", None).secret
        proc, url = serve(store_path, folder, env)
        try:
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
                lat = approve_latency(client, lat_ids)
                rows.append(
                    (
                        "POST approve, decision durable, one at a time (p50 / p99)",
                        f"{pct(lat, 50):.1f} / {pct(lat, 99):.1f} ms",
                        "< 5 ms p50",
                    )
                )
                finished_all(store, lat_ids)  # the worker is idle again
                fin, idle = approve_to_finished(client, store, fin_ids)
                rows.append(
                    (
                        "  the same, each right after the previous run finished",
                        f"{pct(idle, 50):.1f} / {pct(idle, 99):.1f} ms",
                        "< 5 ms p50",
                    )
                )
                rows.append(
                    (
                        "POST approve -> run.finished, 3-node run (p50 / p99)",
                        f"{pct(fin, 50):.0f} / {pct(fin, 99):.0f} ms",
                        "< 150 ms p50",
                    )
                )
            lats, errors, wall = asyncio.run(approve_concurrently(url, token, bulk_ids, 32))
            done = finished_all(store, bulk_ids)
            rows.append(
                (
                    f"{n_bulk} approvals at 32 concurrent: p50 / p99, throughput",
                    f"{pct(lats, 50):.1f} / {pct(lats, 99):.1f} ms, {n_bulk / wall:.0f}/s",
                    "reported",
                )
            )
            rows.append(
                (
                    f"  errors; all {n_bulk} runs finished after",
                    f"{errors}; {done + wall:.1f} s",
                    "0 errors",
                )
            )
        finally:
            stop(proc)
            store.close()
        inbox = os.path.join(folder, "inbox")
        print(f"building a store of {inbox_runs} runs...", file=sys.stderr)
        inbox_store(inbox, inbox_runs, inbox_gates)
        with open_store(inbox) as s:
            token = create_token(s, "viewer", "viewer", None).secret
        proc, url = serve(inbox, folder, env)
        try:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
                samples = []
                for _ in range(31):
                    start = time.perf_counter()
                    response = c.get("/api/v1/approvals")
                    samples.append(time.perf_counter() - start)
                    assert len(response.json()) == inbox_gates
                samples = samples[1:]
        finally:
            stop(proc)
        rows.append(
            (
                f"GET /api/v1/approvals, {inbox_runs} runs / {inbox_gates} gates (p50 / p99)",
                f"{pct(samples, 50):.1f} / {pct(samples, 99):.1f} ms",
                "< 20 ms p50",
            )
        )
    width = max(len(r[0]) for r in rows)
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<24}  {target}")


if __name__ == "__main__":
    main()
