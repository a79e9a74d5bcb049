"""Retries get their answer, not 429 (issue 21, item 4): 20 concurrent copies and then 5
sequential ones of one purchase under one ``Idempotency-Key`` see only the identical
201 or 409 ``IDEMPOTENCY_KEY_IN_USE``, with a rate limit tight enough to refuse them
all if they spent its tokens; and new work is still rate-limited."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.support.hostile import TIGHT_RATE_ENV, Serve, buy, check_retry_storm, retry_storm
from tests.support.seed import seed_offer


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
async def test_retries_of_one_purchase_never_get_429(
        runtime: Runtime, settings: Settings, tmp_path: Path, workers: int) -> None:
    serve = Serve(settings, tmp_path / "serve.log", workers=workers, env=TIGHT_RATE_ENV)
    try:
        serve.wait_serving()
        url = serve.url
        service = await seed_offer(url, inventory_total=10)
        # a connection each, so that with 2 workers both processes take copies
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as crowd:
            check_retry_storm(await retry_storm(crowd, url, "hot", service, "u1", "order-42"))
            # new work of the same user is still limited: the burst (2) is spent by then
            fresh = [await buy(crowd, url, "hot", {**service, "Idempotency-Key": f"new-{i}"}, "u1")
                     for i in range(3)]
            assert 429 in {status for status, _ in fresh}, [s for s, _ in fresh]
        state = await runtime.offers.read("acme", "hot")
        assert state.reserved == 1 + sum(1 for status, _ in fresh if status == 201)
    finally:
        serve.stop()
