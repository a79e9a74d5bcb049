"""A hot route whose queue is full sheds the request before any of it ran: 503
``TENANT_BUSY`` with ``Retry-After``, the error a client may retry as it is (an
``UNAVAILABLE`` there said a write might have been applied, so dropgate's own client
would not repeat a request without a key), and nothing of it applied."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest

from dropgate.engine.actors.batcher import Batcher
from dropgate.runtime import Runtime
from tests.conftest import Api
from tests.http.test_keyed_redemptions import ROUTES
from tests.support.offers import create_offer

HOT = [*sorted(ROUTES), "purchase"]


def _batcher(runtime: Runtime, route: str) -> Batcher[Any, Any, Any]:
    return {"invite": runtime.invites.redemptions, "promo": runtime.promos.redemptions,
            "reservation": runtime.codes.reservations, "purchase": runtime.purchases.batches}[route]


async def _purchase_path(api: Api) -> str:
    await create_offer(api, "HOT", 100)
    return "/v1/offers/HOT/purchase"


async def _post(api: Api, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], str | None]:
    response = await api.client.post(path, json=body, headers=api.service)
    return response.status, msgspec.json.decode(await response.read()), response.headers.get("Retry-After")


async def _purchases_held(runtime: Runtime, api: Api) -> int:
    return int((await api.call("GET", "/v1/offers/HOT"))[1]["inventory"]["reserved"])


@pytest.mark.parametrize("route", HOT)
async def test_a_full_hot_queue_answers_tenant_busy_and_applies_nothing(
        route: str, api: Api, runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    if route == "purchase":
        path = await _purchase_path(api)
        body_of: Callable[[int], dict[str, Any]] = lambda i: {"user_id": f"u{i}", "quantity": 1}  # noqa: E731
        used: Callable[[Runtime, Api], Awaitable[int]] = _purchases_held
        ok = 201
    else:
        setup, body_of, used, _, _, ok = ROUTES[route]
        path = await setup(api)
    batcher = _batcher(runtime, route)
    gate = asyncio.Event()
    flush = batcher._flush

    async def held_flush(key: Any, items: list[Any]) -> list[Any]:
        await gate.wait()
        return await flush(key, items)

    monkeypatch.setattr(batcher, "_flush", held_flush)
    monkeypatch.setattr(batcher, "_max_queue", 1)
    # one request per batch under way, then one waiting in the queue: the next is shed
    accepted = []
    for i in range(batcher._max_in_flight + 1):
        accepted.append(asyncio.create_task(_post(api, path, body_of(i))))
        await asyncio.sleep(0.2)  # it leaves for its batch (or waits in the queue) before the next
    status, error, retry_after = await _post(api, path, body_of(99))
    assert status == 503, error
    assert error["code"] == "TENANT_BUSY" and error["details"]["queue"] == batcher.name, error
    assert retry_after == "1"
    gate.set()
    answers = await asyncio.gather(*accepted)
    assert [a[0] for a in answers] == [ok] * len(accepted), answers
    assert await used(runtime, api) == len(accepted)  # the shed request took nothing
