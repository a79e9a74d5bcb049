"""Requests the API must refuse, found while extending the client and its fuzzing (#8).

Free text of offers and payments refuses NUL, which PostgreSQL text cannot hold: an
offer named ``"a\\u0000b"`` was accepted (201) and lived in Redis, but every event
carrying the name failed in the persister and was dead-lettered, so PostgreSQL never
had the offer (a payment's row went the same way while Redis counted it in the
balance): the two stores drifted. Tenant names were fixed the same way before.

``make fuzz`` (2,000 cases per operation, fresh randomness) found more of the same kind on
2026-12-07: URLs and key names taking NUL, times no answer could render, and (looking for
their like) an order amount past what the purchase script keeps exact.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec.inspect as mi

from dropgate.http.routes import ROUTE_TABLES
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from tests.conftest import Api


async def test_offer_names_and_payment_references_refuse_nul(api: Api, runtime: Runtime,
                                                             persister: Persister) -> None:
    offer = {"offer_id": "nul", "event_id": "e", "name": "a\u0000b", "price": "1",
             "currency": "usd", "inventory_total": 1}
    status, body = await api.call("POST", "/v1/offers", json=offer)
    assert (status, body["code"], body["details"]["field"]) == (400, "VALIDATION_ERROR", "name")
    payment = {"amount": "1", "currency": "usd", "reference": "r\u0000"}
    status, body = await api.call("POST", "/v1/payments", json=payment)
    assert (status, body["code"], body["details"]["field"]) == (400, "VALIDATION_ERROR", "reference")
    # any other text still goes through, and reaches PostgreSQL
    status, body = await api.call("POST", "/v1/offers", json={**offer, "name": "ä \t\u2028 ok"})
    assert status == 201, body
    status, body = await api.call("POST", "/v1/payments", json={**payment, "reference": "ref \u00e9"})
    assert status == 201, body
    await persister.drain()
    async with runtime.pool.acquire() as conn:
        assert await conn.fetchval("SELECT name FROM offers WHERE offer_id = 'nul'") == "ä \t\u2028 ok"
        assert await conn.fetchval("SELECT count(*) FROM payments WHERE reference = 'ref \u00e9'") == 1
        assert await conn.fetchval("SELECT count(*) FROM dg_dead_letters") == 0


async def test_urls_and_key_names_refuse_control_characters(api: Api, runtime: Runtime,
                                                             persister: Persister) -> None:
    """make fuzz: a tenant's success URL with a NUL was accepted (200), and its event was
    dead-lettered, so PostgreSQL never had the URLs; the offers' URLs, a key's name (a NUL
    inside it) and a webhook endpoint's URL (other control characters) took the same way in."""
    refused = [
        ("PUT", "/v1/tenants/acme/checkout", {"success_url": "https://t.test/\u0000"}, "success_url", True),
        ("PUT", "/v1/tenants/acme/checkout", {"cancel_url": "https://t.te\u0001st/"}, "cancel_url", True),
        ("POST", "/v1/offers", {"offer_id": "u", "event_id": "e", "name": "n", "price": "1", "currency": "usd",
                                "inventory_total": 1, "success_url": "https://t.test/a\u0000b"}, "success_url", False),
        ("POST", "/v1/keys", {"role": "service", "tenant_id": "acme", "name": "a\u0000b"}, "name", True),
        ("POST", "/v1/keys", {"role": "service", "tenant_id": "acme", "name": "a\u007fb"}, "name", True),
        ("POST", "/v1/webhook-endpoints", {"url": "https://t.test/\u0007", "events": ["*"]}, "url", False),
    ]
    for method, path, body, field, admin in refused:
        status, answer = await api.call(method, path, json=body, **({"headers": api.admin} if admin else {}))
        assert (status, answer["code"], answer["details"]["field"]) == (400, "VALIDATION_ERROR", field), (body, answer)
    await create_offer_with_urls(api)
    status, answer = await api.call("PATCH", "/v1/offers/u", json={"cancel_url": "https://t.test/\u0000"})
    assert (status, answer["details"]["field"]) == (400, "cancel_url"), answer
    # what is not refused goes through and reaches PostgreSQL, with nothing dead-lettered
    status, _ = await api.call("PUT", "/v1/tenants/acme/checkout", headers=api.admin,
                               json={"success_url": "https://t.test/done?s={CHECKOUT_SESSION_ID}"})
    assert status == 200
    status, key = await api.call("POST", "/v1/keys", headers=api.admin,
                                 json={"role": "service", "tenant_id": "acme", "name": "Zoë's ops"})
    assert status == 201, key
    await persister.drain()
    async with runtime.pool.acquire() as conn:
        assert await conn.fetchval("SELECT success_url FROM tenants WHERE tenant_id = 'acme'") == \
            "https://t.test/done?s={CHECKOUT_SESSION_ID}"
        assert await conn.fetchval("SELECT success_url FROM offers WHERE offer_id = 'u'") == "https://t.test/ok"
        assert await conn.fetchval("SELECT name FROM api_keys WHERE key_id = $1", key["key_id"]) == "Zoë's ops"
        assert await conn.fetchval("SELECT count(*) FROM dg_dead_letters") == 0


async def test_times_no_answer_could_render_are_refused(api: Api, runtime: Runtime, persister: Persister) -> None:
    """make fuzz: an invite expiring at 0001-01-01T00:00:00Z was taken, and the list read it
    back from PostgreSQL as "0001-01-01T00:00:00", with no offset (asyncpg sends that instant
    as -infinity); a time in year 0 once in UTC, RFC 3339 all the same, could not be made
    into an answer at all; and a booking ending at 9999-12-31T23:59:59.999Z reached the
    persister in year 10000 (Redis's cjson writes 14 significant digits). Each is a 400
    naming its field, with nothing written."""
    first, year0 = "0001-01-01T00:00:00Z", "0001-01-01T00:30:00+01:00"
    year10000, year5000 = "9999-12-31T23:30:00-01:00", "5000-01-01T00:00:00Z"
    booking = {"resource_id": "room", "slot_start": "2030-01-01T10:00:00Z", "slot_end": "2030-01-01T11:00:00Z",
               "user_id": "u1"}
    refused = [
        ("POST", "/v1/invites", {"code": "T0", "max_uses": 1, "expires_at": first}, "expires_at", False),
        ("POST", "/v1/invites", {"code": "T0", "max_uses": 1, "expires_at": year0}, "expires_at", False),
        ("POST", "/v1/invites", {"code": "T0", "max_uses": 1, "expires_at": year10000}, "expires_at", False),
        ("POST", "/v1/bookings", {**booking, "slot_start": year0}, "slot_start", False),
        ("POST", "/v1/bookings", {**booking, "slot_end": year5000}, "slot_end", False),
        ("POST", "/v1/offers", {"offer_id": "t", "event_id": "e", "name": "n", "price": "1", "currency": "usd",
                                "inventory_total": 1, "expires_at": first}, "expires_at", False),
        ("POST", "/v1/promos", {"code": "TP", "bonus": {"kind": "percent", "percent": "5"}, "currency": "usd",
                                "ends_at": year10000}, "ends_at", False),
        ("POST", "/v1/tenants", {"tenant_id": "t0", "name": "t", "subscription_status": "trialing",
                                 "trial_end": year0}, "trial_end", True),
    ]
    for method, path, body, field, admin in refused:
        status, answer = await api.call(method, path, json=body, **({"headers": api.admin} if admin else {}))
        assert (status, answer["code"], answer["details"]["field"]) == (400, "VALIDATION_ERROR", field), (body, answer)
    status, answer = await api.call("POST", "/v1/invites", json={"code": "T1", "max_uses": 1})
    assert status == 201, answer
    status, answer = await api.call("PATCH", "/v1/invites/T1", json={"expires_at": year0})
    assert (status, answer["details"]["field"]) == (400, "expires_at"), answer
    # the millisecond after and before the bounds are times like any other, in Redis and PostgreSQL
    # (before 5000 a time's milliseconds have 14 digits, all of which cjson writes)
    status, answer = await api.call("PATCH", "/v1/invites/T1", json={"expires_at": "0001-01-01T00:00:00.001Z"})
    assert status == 200 and answer["expires_at"] == "0001-01-01T00:00:00.001000Z", answer
    status, answer = await api.call("POST", "/v1/bookings", json={**booking, "slot_end": "4999-12-31T23:59:59.999Z"})
    assert status == 201 and answer["slot_end"] == "4999-12-31T23:59:59.999000Z", answer
    await persister.drain()
    status, page = await api.call("GET", "/v1/invites")
    assert status == 200 and [i["expires_at"] for i in page["data"]] == ["0001-01-01T00:00:00.001000Z"], page
    status, page = await api.call("GET", "/v1/bookings")
    assert status == 200 and [b["slot_end"] for b in page["data"]] == ["4999-12-31T23:59:59.999000Z"], page
    async with runtime.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM invite_codes WHERE code = 'T0'") == 0
        assert await conn.fetchval("SELECT count(*) FROM dg_dead_letters") == 0


async def test_an_offer_whose_order_could_cost_more_than_one_amount_is_refused(api: Api) -> None:
    """The purchase script computes an order's amount in Lua's doubles and its event carries
    it through cjson's 14 significant digits: price x max_per_order is held to the largest
    amount (10^13 minor units), which both keep exact."""
    offer = {"offer_id": "big", "event_id": "e", "name": "n", "price": "1000000000.00", "currency": "usd",
             "inventory_total": 1, "max_per_order": 101}
    status, body = await api.call("POST", "/v1/offers", json=offer)
    assert (status, body["code"], body["details"]["field"]) == (400, "VALIDATION_ERROR", "max_per_order"), body
    assert "100000000000.00 usd" in body["error"], body
    status, body = await api.call("POST", "/v1/offers", json={**offer, "max_per_order": 100})
    assert status == 201 and body["price"] == "1000000000.00", body


async def create_offer_with_urls(api: Api) -> None:
    status, body = await api.call("POST", "/v1/offers", json={
        "offer_id": "u", "event_id": "e", "name": "n", "price": "1", "currency": "usd", "inventory_total": 1,
        "success_url": "https://t.test/ok"})
    assert status == 201, body


def test_every_text_a_request_body_carries_refuses_nul() -> None:
    """Every string field of every route's body refuses NUL by its schema (PostgreSQL text
    cannot hold it: an accepted one dead-letters its event), but those checked by name
    against a closed list before anything is written."""
    checked_by_name = {("POST", "/v1/webhook-endpoints", ".events[]")}  # EVENT_TYPES (webhooks/store.py)
    found: list[tuple[str, str, str]] = []

    def walk(t: Any, path: str, route: tuple[str, str]) -> None:
        if isinstance(t, mi.Metadata):
            walk(t.type, path, route)
        elif isinstance(t, mi.StructType):
            for f in t.fields:
                walk(f.type, f"{path}.{f.name}", route)
        elif isinstance(t, mi.UnionType):
            for member in t.types:
                walk(member, path, route)
        elif isinstance(t, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
            walk(t.item_type, path + "[]", route)
        elif isinstance(t, mi.DictType):
            walk(t.key_type, path + "{}", route)
            walk(t.value_type, path + "{}", route)
        elif isinstance(t, mi.StrType):
            pattern = t.pattern
            # a NUL where each kind of pattern would otherwise take the text: free text, a URL
            if pattern is None or any(re.search(pattern, text) for text in
                                      ("a\x00b", "a\x00", "https://a.test/\x00", "https://a\x00.test/")):
                found.append((*route, path))

    for table in ROUTE_TABLES:
        for spec in table.specs:
            if spec.body is not None:
                walk(mi.type_info(spec.body), "", (spec.method, spec.path))
    assert found and set(found) == checked_by_name, sorted(set(found) - checked_by_name)


async def test_api_routes_refuse_query_parameters_they_do_not_declare(api: Api) -> None:
    # schemathesis: GET /v1/offers?event_id=y&y=null answered 200, as did a count with
    # ?statuss=: a misspelt filter silently meant "no filter"
    for path, field in (("/v1/offers?event_id=e&evnt=x", "evnt"),
                        ("/v1/campaigns/c/codes/count?statuss=assigned", "statuss"),
                        ("/v1/invites/X?debug=1", "debug"),
                        ("/v1/offers?event_id=e&event_id=e&", None)):
        status, body = await api.call("GET", path)
        if field is None:
            assert status == 200, body  # repeats and an empty tail are not unknown names
            continue
        assert (status, body["code"], body["details"]["field"]) == (400, "VALIDATION_ERROR", field)
    status, body = await api.call("GET", "/v1/tenants/acme?x=1", headers=api.admin)
    assert (status, body["details"]["field"]) == (400, "x")
    # public routes (probes, the webhook, the sandbox's pages) keep accepting them
    status, body = await api.call("GET", "/healthz?probe=1", headers={})
    assert status == 200, body
    # and the declared ones still work
    await api.call("POST", "/v1/campaigns", json={"campaign_id": "c", "types": ["tm"]})
    status, body = await api.call("GET", "/v1/campaigns/c/codes/count?type=tm&status=assigned")
    assert (status, body) == (200, {"assigned": 0})
