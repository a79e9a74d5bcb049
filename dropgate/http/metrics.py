"""Prometheus metrics of one app: requests, latency, persister lag and progress, actors,
and how the hot operations' coalescing queues batched.

Under ``serve --workers N`` every process writes its values into the folder named by
``PROMETHEUS_MULTIPROC_DIR`` (set and emptied by ``serve``; prometheus_client's
multiprocess mode), and a scrape of any worker answers the sums over all of them:
counters never go down from one scrape to the next, whichever process answers. Values
that live in a process's own objects (the persister's counters, the actor systems) are
mirrored into multiprocess metrics by ``sync()`` at each scrape and every second;
per-process gauges (mailbox depths) carry a ``worker`` label.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
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


class _DispatcherCollector(Collector):
    """The webhook dispatcher of this process, per endpoint (label ``endpoint``)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        dispatcher = self._runtime.dispatcher
        if dispatcher is None:
            return
        stats = dispatcher.stats
        lag = GaugeMetricFamily("dropgate_webhook_delivery_lag_seconds",
                                "Seconds from an event to its delivery (the latest delivered, per endpoint)",
                                labels=["endpoint"])
        for endpoint, seconds in sorted(stats.lag_s.items()):
            lag.add_metric([endpoint], seconds)
        yield lag
        for name, values, doc in (
            ("dropgate_webhook_successes", stats.successes, "Delivery attempts answered 2xx"),
            ("dropgate_webhook_failures", stats.failures, "Delivery attempts that failed"),
            ("dropgate_webhook_retries", stats.retries, "Delivery attempts after the first"),
            ("dropgate_webhook_failed_deliveries", stats.failed_deliveries,
             "Deliveries given up (retry window over, or endpoint disabled)"),
        ):
            family = CounterMetricFamily(name, doc, labels=["endpoint"])
            for endpoint, n in sorted(values.items()):
                family.add_metric([endpoint], n)
            yield family
        for name, value, doc in (
            ("dropgate_webhook_log_entries_read", stats.entries_read, "Log entries the dispatcher read"),
            ("dropgate_webhook_skipped_passes", stats.skipped_passes,
             "Dispatcher passes that moved past the logs unread because no endpoint existed"),
            ("dropgate_webhook_spilled", stats.spilled,
             "Deliveries written to PostgreSQL untried because the dispatcher was far behind"),
            ("dropgate_webhook_endpoints_disabled", stats.disabled_endpoints, "Endpoints disabled"),
            ("dropgate_webhook_dispatcher_errors", stats.transient_errors, "Dispatcher errors (retried)"),
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


_BATCHES_DOC = "Script calls of a coalescing queue (one per batch)"
_BATCHED_ITEMS_DOC = "Items those calls carried (requests, and stored answers riding with them)"


class _BatchCollector(Collector):
    """Per coalescing queue (label ``queue``): the script calls it made and the items they
    carried. Their ratio is how well a crowd coalesced: near 1 means a script call per
    request, as many round trips as requests."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[CounterMetricFamily]:
        calls = CounterMetricFamily("dropgate_batches", _BATCHES_DOC, labels=["queue"])
        items = CounterMetricFamily("dropgate_batched_items", _BATCHED_ITEMS_DOC, labels=["queue"])
        for batcher in self._runtime.batchers:
            calls.add_metric([batcher.name], batcher.batches)
            items.add_metric([batcher.name], batcher.items)
        yield calls
        yield items


class _WebhookCollector(Collector):
    """Signed webhooks refused because they did not match the purchase they named."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "dropgate_webhook_mismatches",
            "Signed checkout events whose session id, amount or currency was not their purchase's",
            value=self._runtime.webhooks.mismatches)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _Mirror:
    """A process's own counters and gauges, copied into multiprocess metrics (whose
    values live in files every worker's scrape adds up). Counters move by the delta
    since the last copy, so they only ever grow."""

    _PERSISTER = (("applied_events", "Events applied"), ("batches", "Transactions committed"),
                  ("dead_letters", "Events dead-lettered"),
                  ("transient_errors", "Transient failures (PostgreSQL or Redis unreachable)"))
    _ACTOR = (("activations", "Actor activations"), ("passivations", "Actor passivations"),
              ("rejected", "Messages refused by a full mailbox (503 TENANT_BUSY)"),
              ("failed_turns", "Messages that raised (their caller got the error)"))

    def __init__(self, runtime: Runtime, registry: CollectorRegistry) -> None:
        self._runtime = runtime
        self._worker = str(os.getpid())
        self._persister = {name: Counter(f"dropgate_persister_{name}", doc, registry=registry)
                           for name, doc in self._PERSISTER}
        self._lag = Gauge("dropgate_persistence_lag_events", "Unpersisted events in a partition's log",
                          ["partition"], registry=registry, multiprocess_mode="max")
        self._actor = {name: Counter(f"dropgate_actor_{name}", doc, ["system"], registry=registry)
                       for name, doc in self._ACTOR}
        self._active = Gauge("dropgate_actors_active", "Actors activated now", ["system", "worker"],
                             registry=registry, multiprocess_mode="livesum")
        self._depth = Gauge("dropgate_actor_mailbox_depth", "Messages queued in all mailboxes",
                            ["system", "worker"], registry=registry, multiprocess_mode="livesum")
        self._deepest = Gauge("dropgate_actor_mailbox_depth_max", "Messages queued in the fullest mailbox",
                              ["system", "worker"], registry=registry, multiprocess_mode="livemax")
        self._batches = Counter("dropgate_batches", _BATCHES_DOC, ["queue"], registry=registry)
        self._batched_items = Counter("dropgate_batched_items", _BATCHED_ITEMS_DOC, ["queue"], registry=registry)
        self._mismatches = Counter("dropgate_webhook_mismatches", "Signed checkout events whose "
                                   "session id, amount or currency was not their purchase's",
                                   registry=registry)
        self._seen: dict[tuple[str, ...], int] = {}
        if runtime.persister is not None:  # present from the first scrape on, at 0
            for p in range(runtime.keys.partitions):
                self._lag.labels(str(p)).set(0)

    def _advance(self, key: tuple[str, ...], counter: Any, value: int) -> None:
        delta = value - self._seen.get(key, 0)
        if delta > 0:
            counter.inc(delta)
            self._seen[key] = value

    def sync(self) -> None:
        self._advance(("webhooks", "mismatches"), self._mismatches, self._runtime.webhooks.mismatches)
        for batcher in self._runtime.batchers:
            self._advance(("batches", batcher.name), self._batches.labels(batcher.name), batcher.batches)
            self._advance(("batched_items", batcher.name), self._batched_items.labels(batcher.name),
                          batcher.items)
        persister = self._runtime.persister
        if persister is not None:
            stats = persister.stats
            for name, counter in self._persister.items():
                self._advance(("persister", name), counter, getattr(stats, name))
            for partition, n in stats.lag.items():
                self._lag.labels(str(partition)).set(n)
        for system in self._runtime.actor_systems:
            depths = system.mailbox_depths()
            self._active.labels(system.name, self._worker).set(len(depths))
            self._depth.labels(system.name, self._worker).set(sum(depths))
            self._deepest.labels(system.name, self._worker).set(max(depths, default=0))
            for name, counter in self._actor.items():
                self._advance(("actor", system.name, name), counter.labels(system.name),
                              getattr(system.stats, name))


class Metrics:
    def __init__(self, runtime: Runtime) -> None:
        folder = multiprocess_dir()
        self._mirror: _Mirror | None = None
        self._immediate = folder is not None  # see _build
        if folder is not None:
            # values go to files; a scrape reads every process's files
            own = CollectorRegistry(auto_describe=True)
            self.registry = CollectorRegistry()
            MultiProcessCollector(self.registry, path=folder)  # type: ignore[no-untyped-call]
            self._build(own)
            self._mirror = _Mirror(runtime, own)
            return
        self.registry = CollectorRegistry(auto_describe=True)
        self._build(self.registry)
        self.registry.register(_PersisterCollector(runtime))
        self.registry.register(_ActorCollector(runtime))
        self.registry.register(_DispatcherCollector(runtime))
        self.registry.register(_WebhookCollector(runtime))
        self.registry.register(_BatchCollector(runtime))

    def _build(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("dropgate_http_requests", "HTTP requests",
                                ["route", "method", "status"], registry=registry)
        self.latency = Histogram("dropgate_http_request_seconds", "HTTP request latency",
                                 ["route"], registry=registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                          0.5, 1.0, 2.5))
        # One process: counted here per request, added to the Prometheus metrics at each
        # scrape (``sync()``): ``Counter.inc`` and ``Histogram.observe`` take a lock per
        # value and walk the buckets, a visible share of a request's CPU (BENCHMARKS.md,
        # "Where each microsecond of a request goes"); a dict and a list here cost a
        # fraction, and a scrape still sees every request answered before it. Under
        # ``--workers`` a scrape answered by another process reads this one's files, so
        # each request goes to them at once (``_children``: the labelled children bound
        # once). Bounded: routes x methods x statuses.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._bounds = [b for b in self.latency._upper_bounds]  # ascending, +Inf last
        self._counts: dict[tuple[str, str, int], int] = {}
        self._latencies: dict[str, tuple[list[int], list[float]]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        if self._immediate:
            children = self._children.get(key)
            if children is None:
                children = self._children[key] = (self.requests.labels(route, method, str(status)),
                                                  self.latency.labels(route))
            children[0].inc()
            children[1].observe(seconds)
            return
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1
        latency = self._latencies.get(route)
        if latency is None:
            latency = self._latencies[route] = ([0] * len(self._bounds), [0.0])
        latency[0][bisect_left(self._bounds, seconds)] += 1  # the first bucket with seconds <= bound
        latency[1][0] += seconds

    def _flush(self) -> None:
        counts, self._counts = self._counts, {}
        for (route, method, status), n in counts.items():
            self.requests.labels(route, method, str(status)).inc(n)
        latencies, self._latencies = self._latencies, {}
        for route, (buckets, total) in latencies.items():
            child = self.latency.labels(route)
            for value, n in zip(child._buckets, buckets, strict=True):
                if n:
                    value.inc(n)
            child._sum.inc(total[0])

    def sync(self) -> None:
        """The requests counted since the last call into the metrics; then, under
        ``--workers``, this process's own values into the multiprocess files."""
        self._flush()
        if self._mirror is not None:
            self._mirror.sync()

    def render(self) -> bytes:
        self.sync()
        data: bytes = generate_latest(self.registry)
        return data
