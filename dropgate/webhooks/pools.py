"""The live count ``codes.pool_low`` compares with a campaign's ``low_watermark``.

The watermark is the campaign's own (``POST``/``PATCH /v1/campaigns``, read live with
``Codes.campaign``); a campaign without one, or no campaign at all (codes uploaded
before campaigns were things), never fires. The count is the engine's
(``Codes.count``: expired reservations count as available).
"""

from __future__ import annotations

from dropgate.engine.codes import Codes
from dropgate.errors import NotFound
from dropgate.webhooks.mapping import PoolCounter


def codes_pool_counter(codes: Codes) -> PoolCounter:
    async def count(tenant_id: str, campaign_id: str, code_type: str) -> tuple[int, int | None]:
        try:
            watermark = (await codes.campaign(tenant_id, campaign_id)).low_watermark
        except NotFound:
            return 0, None
        if watermark is None:
            return 0, None
        counts = await codes.count(tenant_id, campaign_id, code_type)
        return counts.available, watermark
    return count
