"""The source document's thirteen bugs of a real offers service, each shown impossible.

The issue names twelve (double-counting, checkout-object crash, inventory locked on
provider failure, missing configuration, Redis outage, oversell, duplicate charges,
no rate limiting, N+1, missing indexes, key read at import time, poor logs); the
thirteenth here is the duplicate webhook delivery that confirms twice. The Redis
outage has its own module (test_offers_redis_down.py) as it runs its own Redis.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import stripe

from dropgate.checkout.payments.base import ProviderConfigError
from dropgate.checkout.payments.stripe_provider import StripeProvider
from dropgate.runtime import Runtime, open_runtime
from dropgate.settings import Settings
from tests.conftest import Api
from tests.support.fake_stripe import FakeStripe
from tests.support.offers import (
    create_offer,
    fake_stripe,
    inventory,
    purchase,
    purchase_status,
    stripe_settings_fixture,
    webhook,
)

__all__ = ["fake_stripe"]


settings = stripe_settings_fixture(stripe_timeout_s=1.5)


# 1. inventory double-counting
async def test_confirm_moves_exactly_the_held_quantity(api: Api, fake_stripe: FakeStripe) -> None:
    await create_offer(api, "o1", 10)
    _, a = await purchase(api, "o1", "u1", 3)
    _, b = await purchase(api, "o1", "u2", 2)
    assert await inventory(api, "o1") == {"total": 10, "available": 5, "reserved": 5, "sold": 0}
    await webhook(api, *fake_stripe.event("checkout.session.completed", a["checkout_session_id"]))
    # reserved -> sold by exactly 3: not decremented twice, not counted in both
    assert await inventory(api, "o1") == {"total": 10, "available": 5, "reserved": 2, "sold": 3}
    await webhook(api, *fake_stripe.event("checkout.session.completed", a["checkout_session_id"]))
    assert await inventory(api, "o1") == {"total": 10, "available": 5, "reserved": 2, "sold": 3}
    await webhook(api, *fake_stripe.event("checkout.session.completed", b["checkout_session_id"]))
    assert await inventory(api, "o1") == {"total": 10, "available": 5, "reserved": 0, "sold": 5}


# 2. crashes on the checkout object
async def test_malformed_checkout_session_is_a_provider_failure(api: Api, fake_stripe: FakeStripe) -> None:
    await create_offer(api, "o1", 10)
    for mode in ("malformed", "control"):  # a session without its url; an id with a newline
        fake_stripe.mode = mode
        status, body = await purchase(api, "o1", "u1", 2)
        assert (status, body["code"]) == (503, "PAYMENT_PROVIDER_UNAVAILABLE"), mode
        assert await inventory(api, "o1") == {"total": 10, "available": 10, "reserved": 0, "sold": 0}


# 3. inventory locked forever when the payment provider fails
async def test_provider_failure_releases_hold(api: Api, fake_stripe: FakeStripe, runtime: Runtime) -> None:
    await create_offer(api, "o1", 2)
    fake_stripe.mode = "fail"
    status, body = await purchase(api, "o1", "u1", 2)
    assert (status, body["code"]) == (503, "PAYMENT_PROVIDER_UNAVAILABLE")
    assert await inventory(api, "o1") == {"total": 2, "available": 2, "reserved": 0, "sold": 0}
    purchases = await runtime.redis.hvals(runtime.keys.tenant("acme").purchases())
    assert len(purchases) == 1 and b'"status":"released"' in purchases[0]
    fake_stripe.mode = "ok"
    assert (await purchase(api, "o1", "u2", 2))[0] == 201  # the units are there for the next buyer


async def test_provider_timeout_releases_hold(api: Api, fake_stripe: FakeStripe) -> None:
    await create_offer(api, "o1", 2)
    fake_stripe.mode = "hang"
    started = time.monotonic()
    status, body = await purchase(api, "o1", "u1", 2)
    assert (status, body["code"]) == (503, "PAYMENT_PROVIDER_UNAVAILABLE")
    assert time.monotonic() - started < 4  # bounded by stripe_timeout_s (1.5 s here)
    assert await inventory(api, "o1") == {"total": 2, "available": 2, "reserved": 0, "sold": 0}


# 4. missing configuration crashing purchases
async def test_missing_stripe_configuration_fails_at_startup_not_on_purchase(
        make_settings: Callable[..., Settings], isolated: str) -> None:
    with pytest.raises(ProviderConfigError, match="DROPGATE_STRIPE_API_KEY"):
        async with open_runtime(make_settings(payment_provider="stripe"), run_persister=False):
            pass
    with pytest.raises(ProviderConfigError, match="DROPGATE_STRIPE_WEBHOOK_SECRET"):
        async with open_runtime(make_settings(payment_provider="stripe", stripe_api_key="sk_test_x"),
                                run_persister=False):
            pass
    # a Stripe key alone no longer chooses anything: the provider is what is named
    async with open_runtime(make_settings(stripe_api_key="sk_test_x"), run_persister=False) as rt:
        assert rt.purchases.provider.name == "sandbox"


# 5. a Redis outage crashing everything: tests/http/test_offers_redis_down.py::test_redis_down_fails_fast

# 6. overselling under concurrency
async def test_concurrent_purchases_never_oversell(api: Api, runtime: Runtime) -> None:
    await create_offer(api, "o1", 100, max_per_order=1)
    results = await asyncio.gather(*(
        runtime.purchases.purchase("acme", "o1", user_id=f"u{i}", quantity=1, idempotency_key=None)
        for i in range(300)), return_exceptions=True)
    sold = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(sold) == 100 and all(r.status == 201 for r in sold)
    assert len(refused) == 200 and {type(r).__name__ for r in refused} == {"InsufficientInventory"}
    assert await inventory(api, "o1") == {"total": 100, "available": 0, "reserved": 100, "sold": 0}


# 7. duplicate charges without idempotency keys
async def test_retried_purchase_with_idempotency_key_charges_once(api: Api, fake_stripe: FakeStripe) -> None:
    await create_offer(api, "o1", 10)
    first = await purchase(api, "o1", "u1", 1, key="checkout-42")
    retry = await purchase(api, "o1", "u1", 1, key="checkout-42")
    assert first == retry and first[0] == 201
    assert len(fake_stripe.sessions) == 1  # one session, so one possible charge
    assert await inventory(api, "o1") == {"total": 10, "available": 9, "reserved": 1, "sold": 0}


# 8. no rate limiting
async def test_purchases_are_rate_limited_per_user(api: Api, runtime: Runtime) -> None:
    await create_offer(api, "o1", 1000, max_per_order=1)
    results = await asyncio.gather(*(purchase(api, "o1", "bot", 1)
                                     for _ in range(runtime.settings.rate_limit_burst + 10)))
    limited = [b for s, b in results if s == 429]
    assert len(limited) >= 4 and all(b["code"] == "RATE_LIMITED" for b in limited)
    assert all(b["details"]["retry_after_s"] >= 1 for b in limited)


# 9. N+1 queries
async def test_list_reads_redis_in_one_round_trip(api: Api, runtime: Runtime,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from redis.asyncio.client import Pipeline

    counts: dict[str, int] = {"commands": 0, "pipelines": 0, "sql": 0}
    real_execute, real_pipe = type(runtime.redis).execute_command, Pipeline.execute

    async def counting_execute(self: Any, *args: Any, **kw: Any) -> Any:
        if not background():
            counts["commands"] += 1
        return await real_execute(self, *args, **kw)

    def background() -> bool:
        # The revocation poller's pipeline every 50 ms is not the request's round trip.
        task = asyncio.current_task()
        return task is not None and "_poll_forever" in getattr(task.get_coro(), "__qualname__", "")

    async def counting_pipe(self: Any, *args: Any, **kw: Any) -> Any:
        if not background():
            counts["pipelines"] += 1
        return await real_pipe(self, *args, **kw)

    class NoSql:
        def __getattr__(self, name: str) -> Any:
            counts["sql"] += 1
            raise AssertionError("the list endpoint must not query PostgreSQL")

    for i in range(5):
        await create_offer(api, f"a{i}", 10)
    monkeypatch.setattr(type(runtime.redis), "execute_command", counting_execute)
    monkeypatch.setattr(Pipeline, "execute", counting_pipe)
    monkeypatch.setattr(runtime, "pool", NoSql())
    status, body = await api.call("GET", "/v1/offers?event_id=ev1")
    assert status == 200 and len(body["offers"]) == 5
    few = dict(counts)
    monkeypatch.undo()
    for i in range(45):
        await create_offer(api, f"b{i}", 10)
    counts.update(commands=0, pipelines=0)
    monkeypatch.setattr(type(runtime.redis), "execute_command", counting_execute)
    monkeypatch.setattr(Pipeline, "execute", counting_pipe)
    status, body = await api.call("GET", "/v1/offers?event_id=ev1")
    assert status == 200 and len(body["offers"]) == 50
    assert counts == few  # the same round trips for 50 offers as for 5
    assert counts["pipelines"] == 1 and counts["sql"] == 0


# 10. missing indexes
async def test_list_and_user_purchase_queries_use_indexes(runtime: Runtime) -> None:
    async with runtime.pool.acquire() as conn:
        await conn.execute("SET enable_seqscan = off")
        user_plan = "\n".join(r[0] for r in await conn.fetch(
            "EXPLAIN SELECT * FROM offer_purchases WHERE tenant_id = 'acme' AND user_id = 'u1' "
            "ORDER BY created_at DESC LIMIT 20"))
        list_plan = "\n".join(r[0] for r in await conn.fetch(
            "EXPLAIN SELECT * FROM offers WHERE tenant_id = 'acme' AND event_id = 'ev1' "
            "AND active AND NOT archived AND (expires_at IS NULL OR expires_at > now())"))
        webhook_plan = "\n".join(r[0] for r in await conn.fetch(
            "EXPLAIN SELECT 1 FROM webhook_events WHERE event_id = 'evt_1'"))
    # the lists' (tenant_id, user_id, created_at, purchase_id), read backwards (0018 dropped
    # the v1 index it covers)
    assert "offer_purchases_list_user" in user_plan and "Backward" in user_plan, user_plan
    assert "offers_by_event" in list_plan
    assert "webhook_events_pkey" in webhook_plan


# 11. Stripe key read at import time
def test_stripe_key_is_read_when_the_provider_is_built_not_at_import(
        make_settings: Callable[..., Settings]) -> None:
    env = {**os.environ, "STRIPE_API_KEY": "sk_from_env", "DROPGATE_STRIPE_API_KEY": "sk_from_env"}
    probe = ("import stripe, dropgate.checkout.payments.factory, dropgate.http.app, dropgate.runtime; "
             "print(repr(stripe.api_key))")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "None"  # importing reads no key, sets no global
    one = StripeProvider(make_settings(stripe_api_key="sk_one", stripe_webhook_secret="whsec_1"))
    two = StripeProvider(make_settings(stripe_api_key="sk_two", stripe_webhook_secret="whsec_2"))
    assert one._client._requestor._options.api_key == "sk_one"
    assert two._client._requestor._options.api_key == "sk_two"
    assert stripe.api_key is None


# 12. poor error logs
async def test_provider_failure_log_names_offer_tenant_user_quantity_and_error(
        api: Api, fake_stripe: FakeStripe, caplog: pytest.LogCaptureFixture) -> None:
    await create_offer(api, "o1", 10)
    fake_stripe.mode = "fail"
    with caplog.at_level(logging.WARNING, logger="dropgate.purchases"):
        status, _ = await purchase(api, "o1", "user-77", 3)
    assert status == 503
    lines = [r.getMessage() for r in caplog.records if r.name == "dropgate.purchases"]
    assert len(lines) == 1
    line = lines[0]
    for part in ("offer=o1", "tenant=acme", "user=user-77", "quantity=3", "HTTP 500",
                 "Something went wrong on Stripe's end", "hold released"):
        assert part in line, line


# 13. duplicate webhook deliveries confirming twice
async def test_duplicate_webhook_is_a_noop(api: Api, fake_stripe: FakeStripe) -> None:
    await create_offer(api, "o1", 10)
    _, held = await purchase(api, "o1", "u1", 2)
    payload, headers = fake_stripe.event("checkout.session.completed", held["checkout_session_id"])
    answers = await asyncio.gather(*(webhook(api, payload, headers) for _ in range(20)))
    outcomes = sorted(b["outcome"] for _, b in answers)
    assert outcomes == ["confirmed"] + ["duplicate"] * 19
    assert await inventory(api, "o1") == {"total": 10, "available": 8, "reserved": 0, "sold": 2}
    assert await purchase_status(api, held["purchase_id"]) == "paid"
