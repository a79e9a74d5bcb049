"""Retries get their answer, not 429 (issue 21, item 4): 20 concurrent copies and then 5
sequential ones of one purchase under one ``Idempotency-Key`` see only the identical
201 or 409 ``IDEMPOTENCY_KEY_IN_USE``, with a rate limit tight enough to refuse them
all if they spent its tokens; and new work is still rate-limited."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import msgspec
import pytest

from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.conftest import ADMIN_KEY
from tests.support.hostile import Serve

_ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
_TIGHT = {"DROPGATE_RATE_LIMIT_BURST": "2", "DROPGATE_RATE_LIMIT_PER_S": "0.1"}


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
async def test_retries_of_one_purchase_never_get_429(
        runtime: Runtime, settings: Settings, tmp_path: Path, workers: int) -> None:
    serve = Serve(settings, tmp_path / "serve.log", workers=workers, env=_TIGHT)
    try:
        serve.wait_serving()
        url = serve.url
        async with aiohttp.ClientSession() as http:
            async with http.post(url + "/v1/tenants", headers=_ADMIN,
                                 json={"tenant_id": "acme", "name": "Acme"}) as r:
                assert r.status == 201, await r.text()
            async with http.post(url + "/v1/keys", headers=_ADMIN,
                                 json={"role": "service", "tenant_id": "acme", "name": "svc"}) as r:
                service = {"Authorization": f"Bearer {(await r.json())['key']}"}
            async with http.post(url + "/v1/offers", headers=service,
                                 json={"offer_id": "hot", "event_id": "drop", "name": "Hot",
                                       "price": "25.00", "currency": "usd", "inventory_total": 10}) as r:
                assert r.status == 201, await r.text()
        retry = {**service, "Idempotency-Key": "order-42"}
        body = {"user_id": "u1", "quantity": 1}
        # a connection each, so that with 2 workers both processes take copies
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as crowd:
            async def buy(headers: dict[str, str]) -> tuple[int, bytes]:
                async with crowd.post(url + "/v1/offers/hot/purchase", headers=headers, json=body) as r:
                    return r.status, await r.read()

            answers = list(await asyncio.gather(*(buy(retry) for _ in range(20))))
            for _ in range(5):
                answers.append(await buy(retry))
            created = {raw for status, raw in answers if status == 201}
            in_use = [raw for status, raw in answers if status == 409]
            assert {status for status, _ in answers} <= {201, 409}, [s for s, _ in answers]
            assert len(created) == 1, created  # byte for byte the same answer
            assert all(msgspec.json.decode(raw)["code"] == "IDEMPOTENCY_KEY_IN_USE" for raw in in_use)
            assert answers[-1][0] == 201  # the last sequential retry gets the answer
            # new work of the same user is still limited: the burst (2) is spent by then
            fresh = [await buy({**service, "Idempotency-Key": f"new-{i}"}) for i in range(3)]
            assert 429 in {status for status, _ in fresh}, [s for s, _ in fresh]
        state = await runtime.offers.read("acme", "hot")
        assert state.reserved == 1 + sum(1 for status, _ in fresh if status == 201)
    finally:
        serve.stop()

