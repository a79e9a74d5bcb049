"""Per-subject rate limits (GCRA, ``lib/dg_gcra.lua``), and the one shape of their refusal.

Script <-> method: ``ratelimit_take-1.lua`` <-> ``RateLimiter.take``, for a caller that
limits before an operation of its own. The hot routes take the same GCRA inside their
batched script instead (the purchase, the promo redeem: no second round trip) and
refuse through ``rate_limited`` alike: 429 ``RATE_LIMITED`` whose
``details.retry_after_s`` the error middleware also sends as ``Retry-After``.
"""

from __future__ import annotations

import math

import msgspec

from dropgate.engine.context import EngineContext
from dropgate.errors import RateLimited


class _Taken(msgspec.Struct):
    allowed: bool
    retry_after_ms: int = 0


class RateLimiter:
    def __init__(self, ctx: EngineContext, *, rate_per_s: float, burst: int) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self._ctx = ctx
        self._interval_ms = 1000.0 / rate_per_s
        self._burst = burst

    async def take(self, tenant_id: str, scope: str, subject: str) -> None:
        """Spend one request of ``subject``'s allowance, or raise RateLimited."""
        key = self._ctx.keys.tenant(tenant_id).ratelimit(scope, subject)
        taken = await self._ctx.scripts.call(
            "ratelimit_take", [key], [self._interval_ms, self._burst], type=_Taken
        )
        if not taken.allowed:
            raise rate_limited(scope, subject, taken.retry_after_ms)


def rate_limited(scope: str, subject: str, retry_after_ms: int) -> RateLimited:
    """The refusal of a limit (here, or inside a batched script: the promo redeem)."""
    retry_after_s = max(1, math.ceil(retry_after_ms / 1000))
    return RateLimited(
        f"Too many requests for {subject}; retry in {retry_after_s}s.",
        details={"retry_after_s": retry_after_s, "scope": scope},
    )
