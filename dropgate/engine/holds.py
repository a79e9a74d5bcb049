"""The hold sweeper: releases offer holds whose checkout expired and nobody touched since.

Scripts that read an offer's availability release its expired holds themselves
(lazy expiry), so a crowd never waits for this loop; the sweeper covers offers
nobody reads, so their units and the persisted purchases do not stay reserved.
Each partition queues its offers with holds in a sorted set, each offer at its earliest
hold; ``run_once`` takes the due offers, releases their due holds offer by offer with
``offer_expire_holds-7.lua`` (which queues the offer again at its first hold left) and drops
expired idempotency records and recovered rate limits (``offer_housekeep-3.lua``).
``run()`` loops until ``close()``.
"""

from __future__ import annotations

import asyncio
import logging

from dropgate.engine.context import EngineContext
from dropgate.engine.offers import Offers
from dropgate.engine.periodic import every
from dropgate.ids import redis_now_ms, text

log = logging.getLogger(__name__)


class HoldSweeper:
    def __init__(self, ctx: EngineContext, offers: Offers, *, interval_s: float | None = None,
                 batch: int = 1000) -> None:
        self._ctx = ctx
        self._offers = offers
        self._interval_s = ctx.settings.sweeper_interval_s if interval_s is None else interval_s
        self._batch = batch
        self._closed = asyncio.Event()

    async def run_once(self) -> int:
        """One pass over every partition; returns the number of holds released."""
        now_ms = await redis_now_ms(self._ctx.redis)
        released = 0
        for p in range(self._ctx.keys.partitions):
            due = await self._ctx.redis.zrangebyscore(
                self._ctx.keys.offer_hold_expiry(p), "-inf", now_ms, start=0, num=self._batch)
            offers = set()
            for member in due:
                # '<tenant>:<offer>', or '<tenant>:<offer>:<purchase>' as an earlier release
                # queued single holds (ids never hold ':')
                tenant_id, offer_id = text(member).split(":", 2)[:2]  # type: ignore[arg-type]
                offers.add((tenant_id, offer_id))
            for tenant_id, offer_id in sorted(offers):
                released += await self._offers.expire_holds(tenant_id, offer_id, limit=self._batch)
            await self._offers.housekeep(p, limit=self._batch)
        return released

    async def run(self) -> None:
        await every(self._interval_s, self._closed, self._pass, log=log, what="hold sweeper")

    async def _pass(self) -> None:
        released = await self.run_once()
        if released:
            log.info("released %d expired offer holds", released)

    async def close(self) -> None:
        self._closed.set()
