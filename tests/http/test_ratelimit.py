"""The shared GCRA limiter: a burst over the limit is refused with a usable Retry-After."""

import asyncio
import time

import pytest

from dropgate.engine.ratelimit import RateLimiter
from dropgate.errors import RateLimited
from dropgate.runtime import Runtime


async def test_burst_then_refusal_then_recovery(runtime: Runtime) -> None:
    limiter = RateLimiter(runtime.ctx, rate_per_s=20, burst=5)
    started = time.monotonic()
    results = await asyncio.gather(
        *(limiter.take("acme", "test", "u1") for _ in range(50)), return_exceptions=True
    )
    elapsed = time.monotonic() - started
    allowed = [r for r in results if r is None]
    refused = [r for r in results if isinstance(r, RateLimited)]
    # the burst, plus what the sustained rate frees while the 50 arrive (however slow the machine)
    assert 5 <= len(allowed) <= 5 + int(elapsed * 20) + 1
    assert len(allowed) + len(refused) == 50
    assert all(r.details["retry_after_s"] >= 1 for r in refused)
    await asyncio.sleep(0.3)
    await limiter.take("acme", "test", "u1")  # the sustained rate has freed room again
    # another subject is not affected by u1's burst
    await limiter.take("acme", "test", "u2")


async def test_bad_configuration_is_refused(runtime: Runtime) -> None:
    with pytest.raises(ValueError):
        RateLimiter(runtime.ctx, rate_per_s=0, burst=1)
