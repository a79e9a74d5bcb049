"""Prometheus metrics of one app: requests, latency, persister lag and progress, actors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
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


class _ActorCollector(Collector):
    """Per actor system (label ``system``): active actors, mailbox depth, turn latency."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        systems = self._runtime.actor_systems
        active = GaugeMetricFamily("dropgate_actors_active", "Actors activated now",
                                   labels=["system"])
        depth = GaugeMetricFamily("dropgate_actor_mailbox_depth",
                                  "Messages queued in all mailboxes", labels=["system"])
        deepest = GaugeMetricFamily("dropgate_actor_mailbox_depth_max",
                                    "Messages queued in the fullest mailbox", labels=["system"])
        turns = HistogramMetricFamily("dropgate_actor_turn_seconds",
                                      "Time one message takes in its actor", labels=["system"])
        counters = {
            name: CounterMetricFamily(f"dropgate_actor_{name}", doc, labels=["system"])
            for name, doc in (("activations", "Actor activations"),
                              ("passivations", "Actor passivations"),
                              ("rejected", "Messages refused by a full mailbox (503 TENANT_BUSY)"),
                              ("failed_turns", "Messages that raised (their caller got the error)"))
        }
        for system in systems:
            depths = system.mailbox_depths()
            active.add_metric([system.name], len(depths))
            depth.add_metric([system.name], sum(depths))
            deepest.add_metric([system.name], max(depths, default=0))
            hist = system.stats.turn_seconds
            turns.add_metric([system.name], buckets=list(hist.cumulative()), sum_value=hist.sum)
            for name, family in counters.items():
                family.add_metric([system.name], getattr(system.stats, name))
        yield active
        yield depth
        yield deepest
        yield turns
        yield from counters.values()


class _WebhookCollector(Collector):
    """Signed webhooks refused because they did not match the purchase they named."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "dropgate_webhook_mismatches",
            "Signed checkout events whose session id, amount or currency was not their purchase's",
            value=self._runtime.webhooks.mismatches)


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
        self.registry.register(_ActorCollector(runtime))
        self.registry.register(_WebhookCollector(runtime))
        # the labelled children, bound once per (route, method, status): ``.labels()``
        # per request (argument checks, a lock, a dict) was a visible share of a
        # request's CPU. Bounded: routes x methods x statuses.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.requests.labels(route, method, str(status)),
                                              self.latency.labels(route))
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        data: bytes = generate_latest(self.registry)
        return data
