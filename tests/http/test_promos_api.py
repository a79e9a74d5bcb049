"""Promo codes over HTTP: the contract, exact bonus arithmetic, refusals, rate limits."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from dropgate.errors import CustomerLimit, NotFound, ValidationError
from dropgate.http.app import create_app
from dropgate.money import exponent, parse_percent
from dropgate.runtime import Runtime, open_runtime
from dropgate.settings import Settings
from tests.conftest import Api
from tests.support.apiserver import ApiServer


async def create(api: Api, code: str, bonus: dict[str, str], currency: str = "usd",
                 **fields: Any) -> dict[str, Any]:
    status, body = await api.call("POST", "/v1/promos", json={
        "code": code, "bonus": bonus, "currency": currency, **fields})
    assert status == 201, body
    return dict(body)


async def redeem(api: Api, code: str, customer: str, base: str) -> tuple[int, Any]:
    return await api.call("POST", f"/v1/promos/{code}/redeem",
                          json={"customer_id": customer, "base_amount": base})


def expected_bonus(base: str, percent: str, currency: str) -> str:
    """The reference: Decimal, half up, to the currency's minor unit."""
    quantum = Decimal(1).scaleb(-exponent(currency))
    return str((Decimal(base) * Decimal(percent) / 100).quantize(quantum, ROUND_HALF_UP))


# percent, base, currency -> bonus, total (written out by hand; also checked against Decimal)
ROUNDING_TABLE = [
    ("12.5", "0.05", "usd", "0.01", "0.06"),        # 0.00625 -> 0.01
    ("12.5", "0.01", "usd", "0.00", "0.01"),        # 0.00125 -> 0.00
    ("10", "0.05", "usd", "0.01", "0.06"),          # exactly half a cent -> up
    ("10", "0.04", "usd", "0.00", "0.04"),          # 0.004 -> down
    ("33.333", "10.00", "usd", "3.33", "13.33"),    # 3.3333
    ("33.3333", "10", "usd", "3.33", "13.33"),
    ("66.6667", "1.00", "usd", "0.67", "1.67"),
    ("0.0001", "100000000000.00", "usd", "100000.00", "100000100000.00"),
    ("100", "99999999999.99", "usd", "99999999999.99", "199999999999.98"),
    ("12.3457", "99999999999.99", "usd", "12345700000.00", "112345699999.99"),  # product > 2^53
    ("12.5", "100", "jpy", "13", "113"),            # 12.5 yen -> 13
    ("12.5", "4", "jpy", "1", "5"),                 # 0.5 yen -> 1
    ("33.3333", "1000", "jpy", "333", "1333"),
    ("49.9999", "1", "jpy", "0", "1"),              # 0.499999 -> 0
    ("12.5", "0.005", "bhd", "0.001", "0.006"),     # three-decimal currency
    ("7.25", "19.99", "eur", "1.45", "21.44"),      # 1.449275 -> 1.45
]


async def test_rounding_table(api: Api) -> None:
    for i, (percent, base, currency, bonus, total) in enumerate(ROUNDING_TABLE):
        assert expected_bonus(base, percent, currency) == bonus, (percent, base)
        await create(api, f"R{i}", {"kind": "percent", "percent": percent}, currency)
        status, body = await redeem(api, f"R{i}", f"c{i}", base)
        assert status == 201, body
        assert (body["bonus_amount"], body["total_amount"]) == (bonus, total), (percent, base, body)
        assert body["currency"] == currency
        status, promo = await api.call("GET", f"/v1/promos/R{i}")
        assert promo["total_bonus_issued"] == bonus and promo["times_used"] == 1


async def test_percent_matches_decimal_reference(runtime: Runtime) -> None:
    """Random percents and amounts up to the 10^13 bound against Decimal half-up."""
    rng = random.Random(4)
    promos = runtime.promos
    for i in range(40):
        units = rng.choice([rng.randint(1, 1_000_000), rng.randint(1, 999), 999_999, 1_000_000])
        percent = f"{units // 10_000}.{units % 10_000:04d}"
        assert parse_percent(percent) == units
        await promos.create("acme", code=f"X{i}", kind="percent", value=units, currency="usd",
                            per_customer_limit=10)
        for base in (rng.randint(1, 10**13), rng.randint(1, 10**6), 10**13, rng.randint(1, 999)):
            r = await promos.redeem_minor("acme", f"X{i}", customer_id=f"c{base % 7}",
                                          base_minor=base, currency="usd")
            want = Decimal(base) * Decimal(units) / Decimal(1_000_000)
            assert r.bonus_amount == int(want.quantize(Decimal(1), ROUND_HALF_UP)), (percent, base)
            assert r.total_amount == base + r.bonus_amount


async def test_fixed_bonus_larger_than_base(api: Api) -> None:
    """A fixed bonus is granted whole, on top of the base: total = base + bonus."""
    await create(api, "BIG", {"kind": "fixed", "amount": "25"}, max_uses=5, per_customer_limit=2)
    status, body = await redeem(api, "BIG", "c1", "0.99")
    assert status == 201, body
    assert (body["bonus_amount"], body["total_amount"], body["base_amount"]) == ("25.00", "25.99", "0.99")
    status, body = await redeem(api, "BIG", "c1", "5")
    assert (body["bonus_amount"], body["total_amount"]) == ("25.00", "30.00")
    status, promo = await api.call("GET", "/v1/promos/BIG")
    assert promo["bonus"] == {"kind": "fixed", "amount": "25.00"}
    assert (promo["times_used"], promo["total_bonus_issued"]) == (2, "50.00")
    await create(api, "YEN", {"kind": "fixed", "amount": "500"}, "jpy")
    status, body = await redeem(api, "YEN", "c1", "100")
    assert (body["bonus_amount"], body["total_amount"]) == ("500", "600")


@pytest.mark.parametrize("base", ["1e3", "-5", "0.001", "0", "0.00", "", " 5", "5.", ".5", "1,5",
                                  "1000000000000000", "NaN", "١٢", "5\n", "100000000000.01"])
async def test_bad_base_amount_is_400(api: Api, base: str) -> None:
    await create(api, "B", {"kind": "percent", "percent": "10"})
    status, body = await redeem(api, "B", "c1", base)
    assert status == 400, body
    assert body["code"] == "VALIDATION_ERROR" and body["details"]["field"] == "base_amount"
    status, promo = await api.call("GET", "/v1/promos/B")
    assert promo["times_used"] == 0


async def test_bad_decimals_for_the_currency_are_400(api: Api) -> None:
    await create(api, "Y", {"kind": "percent", "percent": "10"}, "jpy")
    status, body = await redeem(api, "Y", "c1", "1.5")  # jpy has no minor digits
    assert status == 400 and body["details"]["field"] == "base_amount"
    status, body = await redeem(api, "Y", "c1", "15")
    assert status == 201 and body["bonus_amount"] == "2"  # 1.5 -> 2
    status, body = await api.call("POST", "/v1/promos/Y/redeem",
                                  json={"customer_id": "c2", "base_amount": 15})
    assert status == 400 and body["details"]["field"] == "base_amount"  # a number, not a string


@pytest.mark.parametrize(("bonus", "currency", "field"), [
    ({"kind": "fixed", "amount": "1e3"}, "usd", "bonus.amount"),
    ({"kind": "fixed", "amount": "-5"}, "usd", "bonus.amount"),
    ({"kind": "fixed", "amount": "0.001"}, "usd", "bonus.amount"),
    ({"kind": "fixed", "amount": "0"}, "usd", "bonus.amount"),
    ({"kind": "fixed", "amount": "0.5"}, "jpy", "bonus.amount"),
    ({"kind": "percent", "percent": "0"}, "usd", "bonus.percent"),
    ({"kind": "percent", "percent": "100.0001"}, "usd", "bonus.percent"),
    ({"kind": "percent", "percent": "12.34567"}, "usd", "bonus.percent"),
    ({"kind": "percent", "percent": "-5"}, "usd", "bonus.percent"),
    ({"kind": "percent", "percent": "1e1"}, "usd", "bonus.percent"),
    ({"kind": "percent", "amount": "5"}, "usd", "amount"),  # unknown field of the percent kind
    ({"kind": "gift", "amount": "5"}, "usd", "bonus.kind"),
    ({"kind": "fixed", "amount": "5"}, "USD", "currency"),
])
async def test_bad_definitions_are_400(api: Api, bonus: dict[str, str], currency: str,
                                       field: str) -> None:
    status, body = await api.call("POST", "/v1/promos", json={
        "code": "BAD", "bonus": bonus, "currency": currency})
    assert status == 400, body
    assert body["code"] == "VALIDATION_ERROR"
    assert body["details"].get("field") == field, body
    status, _ = await api.call("GET", "/v1/promos/BAD")
    assert status == 404


async def test_definition_rules(api: Api) -> None:
    now = datetime.now(UTC)
    status, body = await api.call("POST", "/v1/promos", json={
        "code": "W", "bonus": {"kind": "fixed", "amount": "1"}, "currency": "usd",
        "starts_at": now.isoformat(), "ends_at": (now - timedelta(hours=1)).isoformat()})
    assert status == 400 and body["details"]["field"] == "ends_at"
    for extra in ({"max_uses": 0}, {"per_customer_limit": 0}, {"surprise": 1}, {"code": "a b"}):
        status, body = await api.call("POST", "/v1/promos", json={
            "code": "W", "bonus": {"kind": "fixed", "amount": "1"}, "currency": "usd", **extra})
        assert status == 400, (extra, body)
    promo = await create(api, "W", {"kind": "fixed", "amount": "1"})
    assert (promo["max_uses"], promo["per_customer_limit"], promo["active"]) == (None, 1, True)
    status, body = await api.call("POST", "/v1/promos", json={
        "code": "W", "bonus": {"kind": "fixed", "amount": "2"}, "currency": "usd"})
    assert status == 409 and body["code"] == "ALREADY_EXISTS"


async def test_window_by_redis_time(api: Api) -> None:
    now = datetime.now(UTC)
    await create(api, "SOON", {"kind": "fixed", "amount": "1"},
                 starts_at=(now + timedelta(hours=1)).isoformat())
    await create(api, "PAST", {"kind": "fixed", "amount": "1"},
                 starts_at=(now - timedelta(hours=2)).isoformat(),
                 ends_at=(now - timedelta(hours=1)).isoformat())
    assert (await redeem(api, "SOON", "c1", "10"))[1]["code"] == "NOT_STARTED"
    assert (await redeem(api, "PAST", "c1", "10"))[1]["code"] == "EXPIRED"
    status, body = await api.call("PATCH", "/v1/promos/SOON", json={"starts_at": None})
    assert status == 200 and body["starts_at"] is None
    assert (await redeem(api, "SOON", "c1", "10"))[0] == 201
    status, body = await api.call("PATCH", "/v1/promos/PAST", json={"ends_at": None})
    assert (await redeem(api, "PAST", "c1", "10"))[0] == 201
    # a window whose end is not after its start is refused by the script too
    status, body = await api.call("PATCH", "/v1/promos/SOON", json={
        "starts_at": now.isoformat(), "ends_at": (now - timedelta(seconds=1)).isoformat()})
    assert status == 400 and body["details"]["field"] == "ends_at"


async def test_patch_limits_and_rollback_gives_quota_back(api: Api) -> None:
    await create(api, "L", {"kind": "percent", "percent": "10"}, max_uses=2, per_customer_limit=2)
    s1, u1 = await redeem(api, "L", "alice", "10")
    s2, u2 = await redeem(api, "L", "alice", "20")
    assert (s1, s2, u2["times_used"]) == (201, 201, 2)
    assert (await redeem(api, "L", "bob", "10"))[1]["code"] == "EXHAUSTED"
    status, body = await api.call("PATCH", "/v1/promos/L", json={"max_uses": 1})
    assert status == 409 and body["code"] == "CONFLICT"
    status, body = await api.call("PATCH", "/v1/promos/L", json={"max_uses": 3})
    assert status == 200 and body["max_uses"] == 3
    assert (await redeem(api, "L", "alice", "10"))[1]["code"] == "CUSTOMER_LIMIT"
    status, body = await api.call("DELETE", f"/v1/promos/L/uses/{u1['use_id']}")
    assert status == 200
    assert (body["times_used"], body["total_bonus_issued"]) == (1, "2.00")
    status, body = await api.call("DELETE", f"/v1/promos/L/uses/{u1['use_id']}")
    assert status == 404 and body["code"] == "NOT_FOUND"
    status, again = await redeem(api, "L", "alice", "30")  # her quota came back
    assert status == 201 and again["times_used"] == 2
    status, body = await api.call("PATCH", "/v1/promos/L", json={"max_uses": None,
                                                                  "per_customer_limit": 5})
    assert (body["max_uses"], body["per_customer_limit"]) == (None, 5)
    status, promo = await api.call("GET", "/v1/promos/L")
    assert (promo["times_used"], promo["total_bonus_issued"]) == (2, "5.00")  # 2.00 + 3.00
    assert (await api.call("DELETE", "/v1/promos/L/uses/nope"))[0] == 404
    assert (await api.call("DELETE", "/v1/promos/NOPE/uses/x"))[0] == 404
    assert (await api.call("PATCH", "/v1/promos/NOPE", json={"active": False}))[0] == 404
    assert (await redeem(api, "NOPE", "c1", "1"))[0] == 404


async def test_inactive_refuses_and_reactivates(api: Api) -> None:
    await create(api, "OFF", {"kind": "fixed", "amount": "1"}, active=False)
    status, body = await redeem(api, "OFF", "c1", "10")
    assert status == 409 and body["code"] == "INACTIVE"
    await api.call("PATCH", "/v1/promos/OFF", json={"active": True})
    assert (await redeem(api, "OFF", "c1", "10"))[0] == 201


async def test_other_tenants_promo_is_404(api: Api) -> None:
    await create(api, "MINE", {"kind": "fixed", "amount": "1"})
    other = await api.new_tenant("globex")
    headers = {"Authorization": f"Bearer {other}"}
    assert (await api.call("GET", "/v1/promos/MINE", headers=headers))[0] == 404
    status, _ = await api.call("POST", "/v1/promos/MINE/redeem", headers=headers,
                               json={"customer_id": "c1", "base_amount": "1"})
    assert status == 404
    status, body = await api.call("GET", "/v1/promos/MINE", headers=api.as_admin_of("acme"))
    assert status == 200 and body["code"] == "MINE"


async def test_engine_errors_are_typed(runtime: Runtime) -> None:
    await runtime.promos.create("acme", code="E", kind="fixed", value=100, currency="usd")
    await runtime.promos.redeem_minor("acme", "E", customer_id="c1", base_minor=1, currency="usd")
    with pytest.raises(CustomerLimit):
        await runtime.promos.redeem_minor("acme", "E", customer_id="c1", base_minor=1, currency="usd")
    with pytest.raises(NotFound):
        await runtime.promos.rollback("acme", "E", "use_missing")


async def test_openapi_lists_promo_routes(api: Api) -> None:
    status, doc = await api.call("GET", "/openapi.json", headers={})
    assert status == 200
    paths = doc["paths"]
    assert {"post"} <= set(paths["/v1/promos"])
    assert {"get", "patch"} <= set(paths["/v1/promos/{code}"])
    assert "post" in paths["/v1/promos/{code}/redeem"]
    assert "delete" in paths["/v1/promos/{code}/uses/{use_id}"]


async def test_redemptions_are_rate_limited_per_customer(
        isolated: str, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(rate_limit_per_s=1.0, rate_limit_burst=3)
    async with open_runtime(settings, run_persister=False) as rt:
        client = TestClient(ApiServer(create_app(rt)))
        await client.start_server()
        try:
            api = Api(client=client, tenant_id="acme", service_key="")
            api.service_key = await api.new_tenant("acme")
            await create(api, "RL", {"kind": "fixed", "amount": "1"}, per_customer_limit=100)
            answers = await asyncio.gather(*(redeem(api, "RL", "greedy", "5") for _ in range(12)))
            codes = sorted(status for status, _ in answers)
            assert codes.count(201) in (3, 4) and codes.count(429) == 12 - codes.count(201)
            assert all(b["code"] == "RATE_LIMITED" for s, b in answers if s == 429)
            response = await client.post("/v1/promos/RL/redeem", headers=api.service,
                                         json={"customer_id": "greedy", "base_amount": "5"})
            assert response.status == 429
            assert int(response.headers["Retry-After"]) >= 1
            # another customer is not held back by the greedy one
            assert (await redeem(api, "RL", "patient", "5"))[0] == 201
            _, promo = await api.call("GET", "/v1/promos/RL")
            assert promo["times_used"] == codes.count(201) + 1
        finally:
            await client.close()


async def test_cached_currency_is_checked_by_the_script(runtime: Runtime) -> None:
    """The engine caches a code's currency; a code recreated in another one still parses right."""
    promos = runtime.promos
    await promos.create("acme", code="CUR", kind="percent", value=100_000, currency="usd",
                        per_customer_limit=9)
    currency, base, _ = await promos.redeem("acme", "CUR", customer_id="c1", base_amount="1.50")
    assert (currency, base) == ("usd", 150)
    tk = runtime.keys.tenant("acme")
    # as if Redis were rebuilt and the code created again in yen (test-only direct delete)
    await runtime.redis.delete(tk.promo("CUR"), tk.promo_uses("CUR"), tk.promo_customers("CUR"))
    await promos.create("acme", code="CUR", kind="percent", value=100_000, currency="jpy",
                        per_customer_limit=9)
    currency, base, r = await promos.redeem("acme", "CUR", customer_id="c1", base_amount="150")
    assert (currency, base, r.bonus_amount) == ("jpy", 150, 15)
    with pytest.raises(ValidationError):
        await promos.redeem("acme", "CUR", customer_id="c1", base_amount="1.50")
    assert (await promos.get("acme", "CUR")).times_used == 1
