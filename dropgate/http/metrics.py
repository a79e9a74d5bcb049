"""Prometheus metrics of one app: requests, latency, persister lag and progress."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from dropgate.runtime import Runtime


class _PersisterCollector(Collector):
    """Read at scrape time from the persister's own counters (no hot-path cost)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        persister = self._runtime.persister
        if persister is None:
            return
        stats = persister.stats
        lag = GaugeMetricFamily("dropgate_persistence_lag_events",
                                "Unpersisted events in a partition's log", labels=["partition"])
        for partition, n in sorted(stats.lag.items()):
            lag.add_metric([str(partition)], n)
        yield lag
        for name, value, doc in (
            ("dropgate_persister_applied_events", stats.applied_events, "Events applied"),
            ("dropgate_persister_batches", stats.batches, "Transactions committed"),
            ("dropgate_persister_dead_letters", stats.dead_letters, "Events dead-lettered"),
            ("dropgate_persister_transient_errors", stats.transient_errors,
             "Transient failures (PostgreSQL or Redis unreachable)"),
        ):
            yield CounterMetricFamily(name, doc, value=value)


class Metrics:
    def __init__(self, runtime: Runtime) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("dropgate_http_requests", "HTTP requests",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("dropgate_http_request_seconds", "HTTP request latency",
                                 ["route"], registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                          0.5, 1.0, 2.5))
        self.registry.register(_PersisterCollector(runtime))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        data: bytes = generate_latest(self.registry)
        return data
