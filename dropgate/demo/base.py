"""What a domain contributes to the demo: a crowd, and checks after the persister drains.

Each domain module in ``dropgate/demo/`` defines a ``DemoDomain`` subclass and is
listed in ``dropgate/demo/domains.py``. The runner calls ``setup`` for every domain,
then runs all ``crowd`` coroutines at once (the crowd arrives in the same second),
drains the persister, then calls ``verify``, and prints one summary row per domain.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from dropgate.progressbar import ProgressBar
from dropgate.runtime import Runtime


@dataclass
class DomainReport:
    """One summary row: requests sent, successes, refusals by error code, and checks."""

    domain: str
    requests: int = 0
    successes: int = 0
    refusals: collections.Counter[str] = field(default_factory=collections.Counter)
    oversell: int = 0
    # e.g. {"PostgreSQL rows == Redis": True}; every check must hold for the demo to pass
    checks: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def record(self, status: int, body: Any) -> None:
        """Count one API answer: 2xx a success, otherwise its error code."""
        self.requests += 1
        if 200 <= status < 300:
            self.successes += 1
        else:
            code = body.get("code", str(status)) if isinstance(body, dict) else str(status)
            self.refusals[code] += 1


@dataclass
class DemoContext:
    """What a domain's crowd needs: an HTTP session on the API, as the demo tenant."""

    session: aiohttp.ClientSession
    base_url: str
    tenant_id: str
    service_key: str
    admin_key: str
    runtime: Runtime
    progress: ProgressBar  # setup adds to its total, the crowd advances it
    scale: float = 1.0  # multiply crowd sizes (tests use < 1)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.service_key}"}

    async def call(self, method: str, path: str, *, json: Any = None,
                   headers: dict[str, str] | None = None, data: Any = None) -> tuple[int, Any]:
        async with self.session.request(method, self.base_url + path, json=json, data=data,
                                        headers=headers or self.headers) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()

    def n(self, count: int) -> int:
        """A crowd size scaled for this run (at least 1)."""
        return max(1, int(count * self.scale))


class DemoDomain:
    """Subclass per domain; the runner calls the three steps in order."""

    name = "domain"

    async def setup(self, ctx: DemoContext) -> None:
        """Create what the crowd needs (offers, codes, ...) and add to ``ctx.progress.total``."""

    async def crowd(self, ctx: DemoContext, report: DomainReport) -> None:
        """Send the crowd's requests concurrently, ``report.record`` each answer."""
        raise NotImplementedError

    async def verify(self, ctx: DemoContext, report: DomainReport) -> None:
        """After the persister drained: fill ``report.oversell`` and ``report.checks``."""
        raise NotImplementedError
