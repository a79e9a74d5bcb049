"""The live count ``codes.pool_low`` compares with a campaign's ``low_watermark``.

The hook: the watermark is read from the campaign's meta hash (field
``low_watermark``), where campaigns with a ``low_watermark`` (docs/api.md; built on
another branch) keep their settings; a campaign without one never fires. The count
is the engine's own (``Codes.count``: expired reservations count as available).
"""

from __future__ import annotations

from redis.asyncio import Redis

from dropgate.engine.codes import Codes
from dropgate.engine.keys import Keys
from dropgate.ids import text
from dropgate.webhooks.mapping import PoolCounter

WATERMARK_FIELD = "low_watermark"


def codes_pool_counter(codes: Codes, redis: Redis, keys: Keys) -> PoolCounter:
    async def count(tenant_id: str, campaign_id: str, code_type: str) -> tuple[int, int | None]:
        raw = await redis.hget(keys.tenant(tenant_id).codes_meta(campaign_id), WATERMARK_FIELD)
        if raw is None or not text(raw).strip().isdigit():
            return 0, None
        counts = await codes.count(tenant_id, campaign_id, code_type)
        return counts.available, int(text(raw))
    return count
