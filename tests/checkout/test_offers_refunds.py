"""Cancels and refunds: through the routes, by dashboard-style webhooks, under concurrency.

The provider is the fake Stripe driven through the real ``stripe`` library: it expires
only open sessions and refunds no more than a payment has left, as Stripe does. After
each flow PostgreSQL must equal Redis (drained) and reconcile must find nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from dropgate.persistence.persister import Persister
from dropgate.persistence.reconcile.runner import reconcile
from dropgate.runtime import Runtime
from tests.conftest import Api
from tests.support.fake_stripe import FakeStripe
from tests.support.offers import (
    create_offer,
    fake_stripe,
    hold,
    inventory,
    purchase,
    stripe_settings_fixture,
    webhook,
)

__all__ = ["fake_stripe"]


settings = stripe_settings_fixture(rate_limit_burst=1000, rate_limit_per_s=1000.0)


async def _paid(api: Api, fake: FakeStripe, offer_id: str, user: str, qty: int = 1) -> dict[str, Any]:
    held = await hold(api, offer_id, user, qty)
    status, body = await webhook(api, *fake.event("checkout.session.completed", held["checkout_session_id"]))
    assert (status, body["outcome"]) == (200, "confirmed"), body
    return held


async def _get(api: Api, purchase_id: str) -> dict[str, Any]:
    status, body = await api.call("GET", f"/v1/purchases/{purchase_id}")
    assert status == 200, body
    return dict(body)


async def _refund(api: Api, purchase_id: str, body: dict[str, Any] | None = None,
                  key: str | None = None) -> tuple[int, Any]:
    headers = dict(api.service)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await api.call("POST", f"/v1/purchases/{purchase_id}/refund", json=body or {}, headers=headers)


async def _cancel(api: Api, purchase_id: str) -> tuple[int, Any]:
    return await api.call("POST", f"/v1/purchases/{purchase_id}/cancel")


async def _stores_agree(runtime: Runtime, persister: Persister, offer_ids: list[str]) -> None:
    """PostgreSQL (drained) equals Redis: every purchase row, the offer counters, the
    counters derived from the rows, and reconcile finds nothing."""
    await persister.drain()
    tk = runtime.keys.tenant("acme")
    for offer_id in offer_ids:
        live = await runtime.offers.read("acme", offer_id)
        row = await runtime.pool.fetchrow(
            """SELECT o.reserved, o.sold,
                      COALESCE(SUM(p.quantity) FILTER (WHERE p.status = 'pending'), 0) AS rows_reserved,
                      COALESCE(SUM(p.quantity) FILTER (WHERE p.units = 'sold'), 0) AS rows_sold
               FROM offers o LEFT JOIN offer_purchases p USING (tenant_id, offer_id)
               WHERE o.tenant_id = 'acme' AND o.offer_id = $1 GROUP BY o.reserved, o.sold""", offer_id)
        assert row is not None
        assert (live.reserved, live.sold) == (row["reserved"], row["sold"]) == (
            row["rows_reserved"], row["rows_sold"]), (offer_id, live, dict(row))
        assert live.reserved + live.sold <= live.total
    records = {k.decode(): v for k, v in (await runtime.redis.hgetall(tk.purchases())).items()}
    rows = {r["purchase_id"]: r for r in await runtime.pool.fetch(
        "SELECT purchase_id, status, units, refunded_minor, refunds::text AS refunds FROM offer_purchases "
        "WHERE tenant_id = 'acme'")}
    assert set(records) == set(rows)
    refunds = 0
    for pid in records:
        p = await runtime.offers.purchase("acme", pid)
        r = rows[pid]
        assert (p.status, p.units, p.refunded_minor) == (r["status"], r["units"], r["refunded_minor"]), pid
        assert sum(p.refunds.values()) == p.refunded_minor <= p.amount_minor
        refunds += len(p.refunds)
    assert await runtime.pool.fetchval(
        "SELECT count(*) FROM offer_refunds WHERE tenant_id = 'acme'") == refunds
    report = await reconcile(runtime, wait_s=0)
    assert report.exit_code == 0, report.drifts


# -- cancels --------------------------------------------------------------------------------
async def test_cancel_expires_the_session_and_releases_the_hold_once(
        api: Api, fake_stripe: FakeStripe, runtime: Runtime, persister: Persister) -> None:
    await create_offer(api, "o1", 5)
    held = await hold(api, "o1", "u1", 3)
    assert (await inventory(api, "o1"))["reserved"] == 3
    status, body = await _cancel(api, held["purchase_id"])
    assert (status, body["status"]) == (200, "canceled"), body
    assert fake_stripe.sessions[held["checkout_session_id"]]["status"] == "expired"
    assert await inventory(api, "o1") == {"total": 5, "available": 5, "reserved": 0, "sold": 0}
    status, body = await _cancel(api, held["purchase_id"])
    assert (status, body["code"], body["details"]["status"]) == (409, "PURCHASE_NOT_PENDING", "canceled")
    assert (await _cancel(api, "pu_nope"))[0] == 404
    # the session's own expiry event afterwards changes nothing
    status, body = await webhook(api, *fake_stripe.event("checkout.session.expired", held["checkout_session_id"]))
    assert body["outcome"] == "noop"
    assert (await inventory(api, "o1"))["available"] == 5
    await _stores_agree(runtime, persister, ["o1"])


async def test_a_paid_purchase_cannot_be_canceled(api: Api, fake_stripe: FakeStripe) -> None:
    await create_offer(api, "o1", 5)
    paid = await _paid(api, fake_stripe, "o1", "u1", 2)
    status, body = await _cancel(api, paid["purchase_id"])
    assert (status, body["code"]) == (409, "PURCHASE_NOT_PENDING")
    assert (await inventory(api, "o1"))["sold"] == 2


async def test_cancel_with_the_provider_down_changes_nothing(api: Api, fake_stripe: FakeStripe) -> None:
    await create_offer(api, "o1", 5)
    held = await hold(api, "o1", "u1", 2)
    fake_stripe.mode = "fail"
    status, body = await _cancel(api, held["purchase_id"])
    assert (status, body["code"]) == (503, "PAYMENT_PROVIDER_UNAVAILABLE")
    assert (await _get(api, held["purchase_id"]))["status"] == "pending"
    assert (await inventory(api, "o1"))["reserved"] == 2
    fake_stripe.mode = "ok"
    assert (await _cancel(api, held["purchase_id"]))[0] == 200


async def test_a_payment_completing_after_a_cancel_is_refunded(
        api: Api, fake_stripe: FakeStripe, runtime: Runtime, persister: Persister) -> None:
    await create_offer(api, "o1", 5)
    held = await hold(api, "o1", "u1", 2)
    # the buyer paid just before the cancel reached Stripe: its expire is refused, the hold
    # is released all the same, and the payment's webhook refunds it (units stay available)
    payload, headers = fake_stripe.event("checkout.session.completed", held["checkout_session_id"])
    status, body = await _cancel(api, held["purchase_id"])
    assert (status, body["status"]) == (200, "canceled"), body
    status, body = await webhook(api, payload, headers)
    assert (status, body["outcome"]) == (200, "refund")
    p = await _get(api, held["purchase_id"])
    assert (p["status"], p["refunded_amount"]) == ("refunded", "50.00")
    assert [r["payment_intent"] for r in fake_stripe.refunds] == ["pi_" + held["checkout_session_id"]]
    assert await inventory(api, "o1") == {"total": 5, "available": 5, "reserved": 0, "sold": 0}
    assert (await webhook(api, payload, headers))[1]["outcome"] == "duplicate"
    assert len(fake_stripe.refunds) == 1
    await _stores_agree(runtime, persister, ["o1"])


# -- refunds through the route --------------------------------------------------------------
async def test_partial_then_full_refund_restocks_once(
        api: Api, fake_stripe: FakeStripe, runtime: Runtime, persister: Persister) -> None:
    await create_offer(api, "o1", 5)
    paid = await _paid(api, fake_stripe, "o1", "u1", 2)  # 50.00
    pid = paid["purchase_id"]
    status, body = await _refund(api, pid, {"amount": "10.5"})
    assert (status, body["status"], body["refunded_amount"]) == (200, "partially_refunded", "10.50"), body
    assert (await inventory(api, "o1"))["sold"] == 2
    status, body = await _refund(api, pid, {"amount": "39.51"})
    assert (status, body["code"]) == (409, "REFUND_EXCEEDS_PAYMENT")
    assert body["details"]["refundable_minor"] == 3950
    status, body = await _refund(api, pid)  # the rest
    assert (status, body["status"], body["refunded_amount"]) == (200, "refunded", "50.00"), body
    assert await inventory(api, "o1") == {"total": 5, "available": 5, "reserved": 0, "sold": 0}
    status, body = await _refund(api, pid)
    assert (status, body["code"]) == (409, "PURCHASE_NOT_PAID")
    assert [r["amount"] for r in fake_stripe.refunds] == [1050, 3950]
    # Stripe's charge.refunded for these same refunds changes nothing more
    status, body = await webhook(api, *fake_stripe.charge_event("charge.refunded", "pi_" + paid["checkout_session_id"]))
    assert (status, body["outcome"]) == (200, "duplicate")
    assert (await inventory(api, "o1"))["available"] == 5
    await _stores_agree(runtime, persister, ["o1"])


async def test_refund_refusals(api: Api, fake_stripe: FakeStripe) -> None:
    await create_offer(api, "o1", 5)
    held = await hold(api, "o1", "u1")
    status, body = await _refund(api, held["purchase_id"])
    assert (status, body["code"], body["details"]["status"]) == (409, "PURCHASE_NOT_PAID", "pending")
    paid = await _paid(api, fake_stripe, "o1", "u2")
    for bad in ({"amount": "0"}, {"amount": "1.001"}, {"amount": "-1"}, {"amount": 5}, {"restock": "yes"},
                {"amount": "1", "extra": 1}):
        status, body = await _refund(api, paid["purchase_id"], bad)
        assert (status, body["code"]) == (400, "VALIDATION_ERROR"), (bad, body)
    status, body = await _refund(api, paid["purchase_id"], {"amount": "25.01"})
    assert (status, body["code"]) == (409, "REFUND_EXCEEDS_PAYMENT")
    assert (await _refund(api, "pu_nope"))[0] == 404
    assert fake_stripe.refunds == []


async def test_refund_without_restock_keeps_the_units_sold(
        api: Api, fake_stripe: FakeStripe, runtime: Runtime, persister: Persister) -> None:
    await create_offer(api, "o1", 5)
    paid = await _paid(api, fake_stripe, "o1", "u1", 2)
    status, body = await _refund(api, paid["purchase_id"], {"restock": False})
    assert (status, body["status"]) == (200, "refunded")
    assert await inventory(api, "o1") == {"total": 5, "available": 3, "reserved": 0, "sold": 2}
    await _stores_agree(runtime, persister, ["o1"])


async def test_a_provider_failure_refunds_nothing_and_keeps_nothing_aside(
        api: Api, fake_stripe: FakeStripe, runtime: Runtime, persister: Persister) -> None:
    await create_offer(api, "o1", 5)
    paid = await _paid(api, fake_stripe, "o1", "u1", 2)
    fake_stripe.refund_mode = "fail"
    status, body = await _refund(api, paid["purchase_id"], {"amount": "30.00"}, key="k1")
    assert (status, body["code"]) == (503, "PAYMENT_PROVIDER_UNAVAILABLE")
    p = await _get(api, paid["purchase_id"])
    assert (p["status"], p["refunded_amount"]) == ("paid", "0.00")
    fake_stripe.refund_mode = "ok"
    # the amount set aside was given back: all 50.00 can still be refunded
    status, body = await _refund(api, paid["purchase_id"], key="k2")
    assert (status, body["status"], body["refunded_amount"]) == (200, "refunded", "50.00")
    await _stores_agree(runtime, persister, ["o1"])


async def test_the_same_idempotency_key_refunds_once(api: Api, fake_stripe: FakeStripe) -> None:
    await create_offer(api, "o1", 5)
    paid = await _paid(api, fake_stripe, "o1", "u1", 2)
    first = await _refund(api, paid["purchase_id"], {"amount": "5.00"}, key="same")
    again = await _refund(api, paid["purchase_id"], {"amount": "5.00"}, key="same")
    assert first == again and first[0] == 200
    assert len(fake_stripe.refunds) == 1
    status, body = await _refund(api, paid["purchase_id"], {"amount": "6.00"}, key="same")
    assert (status, body["code"]) == (422, "IDEMPOTENCY_KEY_REUSED")
    assert (await _get(api, paid["purchase_id"]))["refunded_amount"] == "5.00"


# -- dashboard-style webhooks ---------------------------------------------------------------
async def test_dashboard_refunds_apply_once_per_refund_id(
        api: Api, fake_stripe: FakeStripe, runtime: Runtime, persister: Persister) -> None:
    await create_offer(api, "o1", 5)
    paid = await _paid(api, fake_stripe, "o1", "u1", 2)
    intent = "pi_" + paid["checkout_session_id"]
    fake_stripe.dashboard_refund(intent, 2000)
    payload, headers = fake_stripe.charge_event("charge.refunded", intent)
    assert (await webhook(api, payload, headers))[1]["outcome"] == "partially_refunded"
    assert (await webhook(api, payload, headers))[1]["outcome"] == "duplicate"
    # another event listing the same refund, and one without the list (newer API versions)
    assert (await webhook(api, *fake_stripe.charge_event("charge.refunded", intent)))[1]["outcome"] == "duplicate"
    unlisted = fake_stripe.charge_event("charge.refunded", intent, listed=False)
    assert (await webhook(api, *unlisted))[1]["outcome"] == "noop"
    p = await _get(api, paid["purchase_id"])
    assert (p["status"], p["refunded_amount"]) == ("partially_refunded", "20.00")
    # the rest, refunded in the dashboard and announced without the list: restocked
    fake_stripe.dashboard_refund(intent)
    assert (await webhook(api, *fake_stripe.charge_event("charge.refunded", intent, listed=False)))[1][
        "outcome"] == "refunded"
    p = await _get(api, paid["purchase_id"])
    assert (p["status"], p["refunded_amount"]) == ("refunded", "50.00")
    assert await inventory(api, "o1") == {"total": 5, "available": 5, "reserved": 0, "sold": 0}
    await _stores_agree(runtime, persister, ["o1"])


async def test_a_dispute_keeps_the_units_sold_and_blocks_refunds(
        api: Api, fake_stripe: FakeStripe, runtime: Runtime, persister: Persister) -> None:
    await create_offer(api, "o1", 5)
    paid = await _paid(api, fake_stripe, "o1", "u1", 2)
    intent = "pi_" + paid["checkout_session_id"]
    # a dispute carries none of our metadata: the payment intent's is looked up
    payload, headers = fake_stripe.charge_event("charge.dispute.created", intent)
    assert (await webhook(api, payload, headers))[1]["outcome"] == "disputed"
    assert (await webhook(api, payload, headers))[1]["outcome"] == "duplicate"
    assert (await _get(api, paid["purchase_id"]))["status"] == "disputed"
    assert (await inventory(api, "o1"))["sold"] == 2
    status, body = await _refund(api, paid["purchase_id"])
    assert (status, body["code"]) == (409, "PURCHASE_NOT_PAID")
    await _stores_agree(runtime, persister, ["o1"])


async def test_a_charge_event_for_another_payment_changes_nothing(api: Api, fake_stripe: FakeStripe) -> None:
    await create_offer(api, "o1", 5)
    a = await _paid(api, fake_stripe, "o1", "ua")
    b = await _paid(api, fake_stripe, "o1", "ub")
    intent_b = "pi_" + b["checkout_session_id"]
    fake_stripe.dashboard_refund(intent_b)
    # b's charge, claiming to be a's purchase
    a_meta = fake_stripe.payments["pi_" + a["checkout_session_id"]]["metadata"]
    fake_stripe.payments[intent_b]["metadata"] = dict(a_meta)
    status, body = await webhook(api, *fake_stripe.charge_event("charge.refunded", intent_b))
    assert (status, body["outcome"]) == (200, "mismatch")
    assert (await _get(api, a["purchase_id"]))["status"] == "paid"
    assert (await _get(api, b["purchase_id"]))["status"] == "paid"


async def test_async_payment_failed_releases_the_hold(api: Api, fake_stripe: FakeStripe) -> None:
    await create_offer(api, "o1", 5)
    held = await hold(api, "o1", "u1", 2)
    payload, headers = fake_stripe.event("checkout.session.async_payment_failed", held["checkout_session_id"])
    assert (await webhook(api, payload, headers))[1]["outcome"] == "released"
    assert (await webhook(api, payload, headers))[1]["outcome"] == "duplicate"
    assert (await _get(api, held["purchase_id"]))["status"] == "failed"
    assert (await inventory(api, "o1"))["available"] == 5


# -- concurrency ----------------------------------------------------------------------------
async def test_a_refund_racing_a_late_completion_never_oversells(
        api: Api, fake_stripe: FakeStripe, runtime: Runtime, persister: Persister) -> None:
    """The offer is sold out; a late payment arrives for an expired hold while a full
    refund with restock frees units: the late buyer gets them only if the restock came
    first, else is refunded. Never both sold, never lost. Repeated on 20 offers."""
    offers = [f"r{i}" for i in range(20)]
    for o in offers:
        await create_offer(api, o, 2)
    races = []
    for o in offers:
        late = await hold(api, o, "late", 2)
        await webhook(api, *fake_stripe.event("checkout.session.expired", late["checkout_session_id"]))
        sold = await _paid(api, fake_stripe, o, "early", 2)
        races.append((o, late, sold))
    answers = await asyncio.gather(*(x for o, late, sold in races for x in (
        _refund(api, sold["purchase_id"]),
        webhook(api, *fake_stripe.event("checkout.session.completed", late["checkout_session_id"])))))
    for i, (o, late, _sold) in enumerate(races):
        refund, completion = answers[2 * i], answers[2 * i + 1]
        assert refund[0] == 200 and refund[1]["status"] == "refunded", refund
        assert completion[1]["outcome"] in ("retaken", "refund"), completion
        inv = await inventory(api, o)
        late_status = (await _get(api, late["purchase_id"]))["status"]
        if completion[1]["outcome"] == "retaken":
            assert late_status == "paid" and inv == {"total": 2, "available": 0, "reserved": 0, "sold": 2}
        else:
            assert late_status == "refunded" and inv == {"total": 2, "available": 2, "reserved": 0, "sold": 0}
    await _stores_agree(runtime, persister, offers)


async def test_cancels_racing_payments_end_paid_or_refunded_never_both(
        api: Api, fake_stripe: FakeStripe, runtime: Runtime, persister: Persister) -> None:
    """40 buyers pay while their seller cancels: each purchase ends paid (the cancel
    came second: 409) or canceled and then refunded (the payment came second)."""
    await create_offer(api, "o1", 100)
    held = [await hold(api, "o1", f"u{i}", 2) for i in range(40)]
    events = [fake_stripe.event("checkout.session.completed", h["checkout_session_id"]) for h in held]
    answers = await asyncio.gather(*(x for h, e in zip(held, events, strict=True)
                                     for x in (_cancel(api, h["purchase_id"]), webhook(api, *e))))
    paid = 0
    for i, h in enumerate(held):
        (c_status, _), (_, hook) = answers[2 * i], answers[2 * i + 1]
        status = (await _get(api, h["purchase_id"]))["status"]
        if hook["outcome"] == "confirmed":
            assert (c_status, status) == (409, "paid")
            paid += 1
        else:
            assert (c_status, hook["outcome"], status) == (200, "refund", "refunded")
    assert len(fake_stripe.refunds) == 40 - paid
    assert await inventory(api, "o1") == {"total": 100, "available": 100 - 2 * paid, "reserved": 0,
                                          "sold": 2 * paid}
    await _stores_agree(runtime, persister, ["o1"])


async def test_hundreds_of_concurrent_cancels_and_refunds_are_exact(
        api: Api, fake_stripe: FakeStripe, runtime: Runtime, persister: Persister) -> None:
    """60 paid purchases (25.00 each): 4 concurrent refunds of 10.00 each (two fit);
    20 paid: 5 concurrent full refunds each (one fits, restocking once); 60 pending:
    3 concurrent cancels each (one wins). 580 requests at once."""
    await create_offer(api, "big", 300)
    partial = [await _paid(api, fake_stripe, "big", f"p{i}") for i in range(60)]
    full = [await _paid(api, fake_stripe, "big", f"f{i}") for i in range(20)]
    pending = [await hold(api, "big", f"c{i}") for i in range(60)]
    assert await inventory(api, "big") == {"total": 300, "available": 160, "reserved": 60, "sold": 80}
    calls = ([_refund(api, p["purchase_id"], {"amount": "10.00"}) for p in partial for _ in range(4)]
             + [_refund(api, p["purchase_id"]) for p in full for _ in range(5)]
             + [_cancel(api, p["purchase_id"]) for p in pending for _ in range(3)])
    answers = await asyncio.gather(*calls)
    partial_answers, rest = answers[:240], answers[240:]
    full_answers, cancel_answers = rest[:100], rest[100:]
    for i in range(60):
        mine = partial_answers[4 * i:4 * i + 4]
        assert sorted(s for s, _ in mine) == [200, 200, 409, 409], mine
        assert all(b["code"] == "REFUND_EXCEEDS_PAYMENT" for s, b in mine if s == 409)
    for i in range(20):
        mine = full_answers[5 * i:5 * i + 5]
        assert sorted(s for s, _ in mine) == [200, 409, 409, 409, 409], mine
    for i in range(60):
        mine = cancel_answers[3 * i:3 * i + 3]
        assert sorted(s for s, _ in mine) == [200, 409, 409], mine
    assert sorted(r["amount"] for r in fake_stripe.refunds) == [1000] * 120 + [2500] * 20
    for p in partial:
        got = await _get(api, p["purchase_id"])
        assert (got["status"], got["refunded_amount"]) == ("partially_refunded", "20.00")
    assert await inventory(api, "big") == {"total": 300, "available": 240, "reserved": 0, "sold": 60}
    await _stores_agree(runtime, persister, ["big"])
    assert await runtime.pool.fetchval(
        "SELECT sum(amount_minor) FROM offer_refunds WHERE tenant_id = 'acme'") == 120 * 1000 + 20 * 2500


# -- redirects ------------------------------------------------------------------------------
async def test_the_checkout_returns_the_buyer_to_the_offers_urls_else_dropgates(
        api: Api, fake_stripe: FakeStripe) -> None:
    await create_offer(api, "own", 5, success_url="https://shop.test/thanks?p={PURCHASE_ID}&s={CHECKOUT_SESSION_ID}",
                       cancel_url="https://shop.test/cart")
    await create_offer(api, "plain", 5)
    own = await hold(api, "own", "u1")
    session = fake_stripe.sessions[own["checkout_session_id"]]
    # {PURCHASE_ID} filled in by dropgate, {CHECKOUT_SESSION_ID} left for Stripe
    assert session["success_url"] == (f"https://shop.test/thanks?p={own['purchase_id']}"
                                      "&s={CHECKOUT_SESSION_ID}")
    assert session["cancel_url"] == "https://shop.test/cart"
    plain = await hold(api, "plain", "u1")
    session = fake_stripe.sessions[plain["checkout_session_id"]]
    assert session["success_url"].endswith(
        f"/checkout/done?tenant_id=acme&purchase_id={plain['purchase_id']}&session_id={{CHECKOUT_SESSION_ID}}")
    assert session["cancel_url"].endswith(f"/checkout/cancelled?tenant_id=acme&purchase_id={plain['purchase_id']}")


async def test_restore_keeps_refunds_caps_and_urls(
        api: Api, fake_stripe: FakeStripe, runtime: Runtime, persister: Persister) -> None:
    """Redis lost after refunds, a cap and the tenant's URLs: restored from PostgreSQL it
    serves the same, and refunds, caps and URLs go on from there."""
    from dropgate.engine.keyspace import delete_prefix
    from dropgate.persistence.reconcile.restore import restore

    status, _ = await api.call("PUT", "/v1/tenants/acme/checkout", headers=api.admin,
                               json={"success_url": "https://t.test/ok"})
    assert status == 200
    await create_offer(api, "o1", 10, max_per_user=3)
    paid = await _paid(api, fake_stripe, "o1", "u1", 2)
    assert (await _refund(api, paid["purchase_id"], {"amount": "5.00"}))[0] == 200
    full = await _paid(api, fake_stripe, "o1", "u2", 1)
    assert (await _refund(api, full["purchase_id"]))[0] == 200
    held = await hold(api, "o1", "u3", 1)
    await persister.drain()
    before = {pid: await _get(api, pid) for pid in (paid["purchase_id"], full["purchase_id"], held["purchase_id"])}
    assert await delete_prefix(runtime.redis, runtime.keys.prefix) > 0
    await restore(runtime)
    assert {pid: await _get(api, pid) for pid in before} == before
    assert await inventory(api, "o1") == {"total": 10, "available": 7, "reserved": 1, "sold": 2}
    # the refund ids came back: Stripe's event for the first refund changes nothing
    intent = "pi_" + paid["checkout_session_id"]
    assert (await webhook(api, *fake_stripe.charge_event("charge.refunded", intent)))[1]["outcome"] == "duplicate"
    status, body = await _refund(api, paid["purchase_id"])  # the rest: 45.00
    assert (status, body["refunded_amount"]) == (200, "50.00"), body
    # the cap counts from the restored purchases; the tenant's URL still serves
    assert (await purchase(api, "o1", "u1", 2))[0] == 201  # u1's refunded units no longer count
    assert (await purchase(api, "o1", "u1", 2))[1]["code"] == "USER_LIMIT"
    last = await hold(api, "o1", "u3", 2)
    assert fake_stripe.sessions[last["checkout_session_id"]]["success_url"] == "https://t.test/ok"
    await _stores_agree(runtime, persister, ["o1"])


async def test_a_purchase_canceled_before_its_session_is_attached_still_persists_it(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    """The 201's session is attached just after the answer; a cancel can come first. The
    late attach then carries its own event, so PostgreSQL gets the session too."""
    from dropgate.engine.offers import FinishItem, HoldRequest

    await create_offer(api, "o1", 5)
    kw: dict[str, Any] = dict(hold_ttl_ms=60_000, rate_interval_ms=1.0, rate_burst=100, idem_ttl_ms=60_000,
                              idem_stale_ms=60_000)
    [held] = await runtime.offers.purchase_batch(
        "acme", "o1", [HoldRequest(purchase_id="pu_early", user_id="u1", quantity=1)], [], **kw)
    assert held.ok
    out = await runtime.offers.release("acme", "o1", "pu_early", status="canceled")
    assert out.outcome == "released"
    await runtime.offers.purchase_batch("acme", "o1", [], [FinishItem(
        purchase_id="pu_early", session_id="cs_early", checkout_url="https://pay.test/cs_early")], **kw)
    p = await runtime.offers.purchase("acme", "pu_early")
    assert (p.status, p.session_id, p.version) == ("canceled", "cs_early", 3)
    await persister.drain()
    assert await runtime.pool.fetchval(
        "SELECT checkout_session_id FROM offer_purchases WHERE purchase_id = 'pu_early'") == "cs_early"
    assert (await reconcile(runtime, wait_s=0)).exit_code == 0
