"""The hot operations' coalescing queues on ``/metrics`` (http/metrics.py): script calls and
the items they carried, per queue, so that an operator sees how a crowd coalesced."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Api
from tests.support.offers import create_offer, purchase

QUEUES = ("invite_redemptions", "promo_redemptions", "code_reservations", "offer_purchases",
          "idempotency_records")


def _sample(exposition: str, name: str, queue: str) -> float:
    """One sample of ``name`` (its full name, ``_total`` included) for ``queue``."""
    found = [sample.value for family in text_string_to_metric_families(exposition) for sample in family.samples
             if sample.name == name and sample.labels == {"queue": queue}]
    assert len(found) == 1, (name, queue, found)
    return float(found[0])


async def _scrape(api: Api) -> str:
    response = await api.client.get("/metrics")
    assert response.status == 200
    return await response.text()


async def test_a_crowd_shows_how_it_coalesced(api: Api) -> None:
    before = await _scrape(api)
    for queue in QUEUES:  # every queue is there from the start, at 0
        assert _sample(before, "dropgate_batches_total", queue) == 0
        assert _sample(before, "dropgate_batched_items_total", queue) == 0

    crowd = 200
    assert (await api.call("POST", "/v1/invites", json={"code": "CROWD", "max_uses": 1000}))[0] == 201
    redeemed = await asyncio.gather(*(api.call("POST", "/v1/invites/CROWD/redeem", json={"user_id": f"u{i}"})
                                      for i in range(crowd)))
    assert [status for status, _ in redeemed] == [200] * crowd
    await create_offer(api, "o1", 1000)
    bought = await asyncio.gather(*(purchase(api, "o1", f"b{i}", 1) for i in range(crowd)))
    assert [answer[0] for answer in bought] == [201] * crowd

    after = await _scrape(api)
    calls = _sample(after, "dropgate_batches_total", "invite_redemptions")
    items = _sample(after, "dropgate_batched_items_total", "invite_redemptions")
    assert items == crowd  # one item per redemption
    assert 1 <= calls < crowd  # coalesced: fewer script calls than redemptions
    calls = _sample(after, "dropgate_batches_total", "offer_purchases")
    items = _sample(after, "dropgate_batched_items_total", "offer_purchases")
    # a hold per purchase, and the stored answers of those already sent (each rides with
    # the offer's next batch, so the last ones may still be queued)
    assert crowd <= items <= 2 * crowd
    assert 1 <= calls < crowd
    for queue in ("promo_redemptions", "code_reservations", "idempotency_records"):  # untouched
        assert _sample(after, "dropgate_batches_total", queue) == 0

    # a crowd with keys, as dropgate's client sends them: on a hot route each record is
    # decided in its redemption's own item; on another route it is begun and finished
    keyed = await asyncio.gather(*(api.call("POST", "/v1/invites/CROWD/redeem", json={"user_id": f"k{i}"},
                                            headers=api.service | {"Idempotency-Key": f"key-{i}"})
                                   for i in range(crowd)))
    assert [status for status, _ in keyed] == [200] * crowd
    after = await _scrape(api)
    assert _sample(after, "dropgate_batched_items_total", "invite_redemptions") == 2 * crowd
    assert _sample(after, "dropgate_batches_total", "idempotency_records") == 0
    paid = await asyncio.gather(*(api.call("POST", "/v1/payments", json={
        "amount": "1.00", "currency": "usd", "reference": f"r{i}"},
        headers=api.service | {"Idempotency-Key": f"pay-{i}"}) for i in range(crowd)))
    assert [status for status, _ in paid] == [201] * crowd, paid
    after = await _scrape(api)
    assert _sample(after, "dropgate_batched_items_total", "idempotency_records") == 2 * crowd
    # fewer calls than records (payments run one at a time in the tenant's ledger, so
    # their finishes share fewer calls than a redemption crowd's would)
    assert 1 <= _sample(after, "dropgate_batches_total", "idempotency_records") < 2 * crowd
