"""``/metrics`` in the Prometheus text format (prometheus-client): runs by status, gates
waiting and the oldest wait (read from the store's indexes at scrape time), decisions,
worker resumes by outcome and HTTP requests by route and code (counted in this process)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from smithers.runtime import clock
from smithers.store.base import Store
from smithers.store.records import RunStatus

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _epoch(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class _StoreCollector(Collector):
    """Gauges read from the store when scraped."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        runs = GaugeMetricFamily("smithers_runs", "Runs by status.", labels=["status"])
        for status in get_args(RunStatus):
            runs.add_metric([status], len(self.store.runs(status)))
        yield runs
        gates = self.store.requested_gates()
        yield GaugeMetricFamily(
            "smithers_gates_waiting", "Approval gates requested and not decided.", len(gates)
        )
        oldest = min((_epoch(a.requested_at) for _, a in gates), default=None)
        yield GaugeMetricFamily(
            "smithers_gate_oldest_wait_seconds",
            "Seconds the longest-waiting requested gate has waited (0 with none).",
            0.0 if oldest is None else max(0.0, clock.now() - oldest),
        )


class Metrics:
    """The service's metrics, in a registry of their own."""

    def __init__(self, store: Store) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_StoreCollector(store))
        self.decisions = Counter(
            "smithers_decisions",
            "Decisions recorded over HTTP, by verdict.",
            ["verdict"],
            registry=self.registry,
        )
        self.resumes = Counter(
            "smithers_worker_resumes",
            "Resumes the worker ran, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.requests = Counter(
            "smithers_http_requests",
            "HTTP requests, by route and status code.",
            ["route", "method", "code"],
            registry=self.registry,
        )

    def resumed(self, outcome: str) -> None:
        """Count one worker resume."""
        self.resumes.labels(outcome).inc()

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)
