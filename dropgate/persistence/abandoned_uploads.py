"""The abandoned-upload sweeper: discards staged uploads whose server died mid-way (#21).

PostgreSQL's ``campaign_pending_uploads`` holds a row per staged upload not yet committed
or discarded (written from its first staged batch's event), so it is the index of the
campaigns to look at: normally empty, never a keyspace scan. For each such campaign
``discard_abandoned`` (``engine/abandoned.py``) discards the uploads that are pending
but whose staged and seen sets expired (an upload still running refreshes them with
each batch, so it is left alone), once two passes in a row found them so; its
``codes.discarded`` event then deletes the rows and the pending row. ``run()`` loops
until ``close()``, a pass every ``interval_s`` (DROPGATE_UPLOAD_SWEEPER_INTERVAL_S); the
runtime starts it with the persister.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from dropgate.engine.abandoned import discard_abandoned, find_abandoned
from dropgate.engine.keys import Keys
from dropgate.engine.periodic import every
from dropgate.engine.scripts import Scripts

log = logging.getLogger(__name__)


class AbandonedUploadSweeper:
    def __init__(self, *, redis: Any, pool: Any, keys: Keys, scripts: Scripts, interval_s: float) -> None:
        self._redis, self._pool, self._keys, self._scripts = redis, pool, keys, scripts
        self._interval_s = interval_s
        self._closed = asyncio.Event()
        # abandoned at the last pass: discarded when still so at the next (an upload
        # between the commits of two types can look abandoned for a moment)
        self._suspects: set[tuple[str, str, int]] = set()

    async def run_once(self) -> dict[tuple[str, str, int], int]:
        """One pass: (tenant, campaign, upload number) -> records removed, per discard."""
        rows = await self._pool.fetch(
            "SELECT DISTINCT tenant_id, campaign_id FROM campaign_pending_uploads ORDER BY 1, 2")
        done: dict[tuple[str, str, int], int] = {}
        suspects: set[tuple[str, str, int]] = set()
        for r in rows:
            t, c = r["tenant_id"], r["campaign_id"]
            tk = self._keys.tenant(t)
            _, gone, _ = await find_abandoned(self._redis, tk, c)
            suspects |= {(t, c, n) for n in gone}
            confirmed = {n for n in gone if (t, c, n) in self._suspects}
            if not confirmed:
                continue
            found = await discard_abandoned(self._redis, self._scripts, tk, t, c, only=confirmed)
            for n, removed in found.items():
                done[(t, c, n)] = removed
                log.warning("discarded abandoned upload %d of campaign %s/%s: %d codes", n, t, c, removed)
        self._suspects = suspects - set(done)
        return done

    async def run(self) -> None:
        await every(self._interval_s, self._closed, self.run_once, log=log, what="abandoned-upload sweeper")

    async def close(self) -> None:
        self._closed.set()
