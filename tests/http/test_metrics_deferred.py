"""The request metrics counted per request and added at each scrape (http/metrics.py) read
exactly as prometheus_client's own ``inc``/``observe`` per request would."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from dropgate.http.metrics import Metrics

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# bounds exactly (``le`` includes its bound), between them, past the last, zero
SECONDS = [0.0, 0.001, 0.0010001, 0.0025, 0.003, 0.05, 0.07, 1.0, 2.5, 2.6, 30.0]


def _samples(text: str, prefix: str) -> dict[str, float]:
    return {m[1]: float(m[2]) for m in re.finditer(rf"^({prefix}[^ ]*) (\S+)$", text, re.M)}


def _runtime() -> Any:
    return SimpleNamespace(persister=None, dispatcher=None, actor_systems=[], batchers=[],
                           webhooks=SimpleNamespace(mismatches=0))


def test_scrape_equals_prometheus_own_counting(monkeypatch: Any) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    metrics = Metrics(_runtime())
    registry = CollectorRegistry()
    requests = Counter("dropgate_http_requests", "HTTP requests", ["route", "method", "status"], registry=registry)
    latency = Histogram("dropgate_http_request_seconds", "HTTP request latency", ["route"], registry=registry,
                        buckets=BUCKETS)
    for scrape in range(3):  # counted across scrapes: never reset, never counted twice
        for i, seconds in enumerate(SECONDS):
            route, status = ("/v1/a", 200) if i % 3 else ("/v1/b/{id}", 409)
            metrics.observe(route, "POST", status, seconds)
            requests.labels(route, "POST", str(status)).inc()
            latency.labels(route).observe(seconds)
        ours = metrics.render().decode()
        theirs = generate_latest(registry).decode()
        for prefix in ("dropgate_http_requests_total", "dropgate_http_request_seconds_bucket",
                       "dropgate_http_request_seconds_count", "dropgate_http_request_seconds_sum"):
            expected = _samples(theirs, prefix)
            assert expected, prefix
            got = _samples(ours, prefix)
            assert got.keys() == expected.keys(), (scrape, prefix)
            for name, value in expected.items():
                assert abs(got[name] - value) < 1e-9, (scrape, name, got[name], value)
