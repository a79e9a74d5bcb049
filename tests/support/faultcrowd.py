"""The skeleton the fault tests' loads share: workers that run until stopped and can be
paused while a fault is set up (``faultlab.Load``, ``faultlab_offers.OfferLoad``)."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import aiohttp


@dataclass(kw_only=True)
class Crowd:
    workers: int = 6
    seed: int = 0
    statuses: dict[int, int] = field(default_factory=dict)  # every HTTP status answered
    failures: dict[str, int] = field(default_factory=dict)  # "503 PERSISTENCE_LAGGING": count, 5xx only

    def answered(self, status: int, body: object) -> None:
        """Count an answer; a 5xx also by its error code, so a failed run says which."""
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status >= 500:
            code = body.get("code", "?") if isinstance(body, dict) else "?"
            self.failures[f"{status} {code}"] = self.failures.get(f"{status} {code}", 0) + 1
    _running: asyncio.Event = field(default_factory=asyncio.Event)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _rng_base: int = 0  # keeps two crowds of one seed on different random streams

    def start(self) -> None:
        self._running.set()
        self._tasks = [asyncio.create_task(self._worker(i)) for i in range(self.workers)]

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    async def stop(self) -> None:
        self._stop.set()
        self._running.set()
        await asyncio.gather(*self._tasks)

    async def _worker(self, i: int) -> None:
        rng = random.Random(self.seed * 1000 + self._rng_base + i)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            while not self._stop.is_set():
                await self._running.wait()
                if self._stop.is_set():
                    return
                await self._one(http, rng)

    async def _one(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        """One request (with its retries), recorded."""
        raise NotImplementedError
