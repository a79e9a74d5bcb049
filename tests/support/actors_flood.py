"""A payment flood with a suspension in the middle, and the checks that follow it.

Shared by the one-process test (the aiohttp test client) and the two-process test
(two real servers sharing Redis): ``send(method, path, json, admin, i)`` sends one
request (``i`` picks the server) and returns (status, body).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from dropgate.engine.events import PaymentCreated, TenantSaved, parse_entry
from dropgate.ids import text
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime

Send = Callable[[str, str, Any, bool, int], Awaitable[tuple[int, Any]]]


def amount_of(i: int) -> tuple[str, int]:
    """The i-th payment's amount as sent and in cents."""
    cents = 100 + (i * 37) % 900
    return f"{cents // 100}.{cents % 100:02d}", cents


async def flood_with_suspension(send: Send, tenant_id: str, *, n: int = 1000,
                                suspend_after: int = 300) -> dict[str, int]:
    """Send ``n`` payments at once; once ``suspend_after`` have answered, suspend the
    tenant. Returns {payment_id: cents} of the payments that succeeded."""
    answered = 0
    trigger = asyncio.Event()

    async def pay(i: int) -> tuple[int, int, Any]:
        nonlocal answered
        sent, _ = amount_of(i)
        status, body = await send("POST", "/v1/payments",
                                  {"amount": sent, "currency": "usd", "reference": f"r{i}"}, False, i)
        answered += 1
        if answered == suspend_after:
            trigger.set()
        return i, status, body

    async def suspend() -> None:
        await trigger.wait()
        status, body = await send("PUT", f"/v1/tenants/{tenant_id}/subscription",
                                  {"subscription_status": "suspended"}, True, 1)
        assert status == 200, body

    *results, _ = await asyncio.gather(*(pay(i) for i in range(n)), suspend())
    succeeded: dict[str, int] = {}
    refused = 0
    for i, status, body in results:
        if status == 201:
            succeeded[body["payment_id"]] = amount_of(i)[1]
        else:
            assert status == 403, body
            assert body["code"] == "SUBSCRIPTION_INACTIVE"
            assert body["details"] == {"subscription_status": "suspended", "trial_end_date": None}
            refused += 1
    assert len(succeeded) + refused == n
    assert len(succeeded) >= suspend_after and refused > 0, (len(succeeded), refused)
    return succeeded


async def check_log_and_balances(runtime: Runtime, persister: Persister, tenant_id: str,
                                 succeeded: dict[str, int]) -> list[PaymentCreated]:
    """The log orders everything: every payment event before the suspension event is a
    payment that succeeded, none comes after it; balances agree in Redis and PostgreSQL.
    Returns the tenant's payment events (payloads)."""
    tk = runtime.keys.tenant(tenant_id)
    entries = await runtime.redis.xrange(tk.log)
    events = [parse_entry(tk.partition, eid, fields) for eid, fields in entries]
    mine = [e.data for e in events if getattr(e.data, "tenant_id", None) == tenant_id]
    suspensions = [i for i, d in enumerate(mine)
                   if isinstance(d, TenantSaved) and d.status == "suspended"]
    assert len(suspensions) == 1
    cut = suspensions[0]
    before = {d.payment_id for d in mine[:cut] if isinstance(d, PaymentCreated)}
    after = [d for d in mine[cut:] if isinstance(d, PaymentCreated)]
    assert after == []
    assert before == set(succeeded)

    expected = sum(succeeded.values())
    assert int(text(await runtime.redis.hget(tk.tenant(), "bal:usd") or b"0")) == expected
    await persister.drain()
    rows = await runtime.pool.fetch(
        "SELECT payment_id, amount_minor FROM payments WHERE tenant_id = $1", tenant_id)
    assert {r["payment_id"]: r["amount_minor"] for r in rows} == succeeded
    assert await runtime.pool.fetchval(
        "SELECT balance_minor FROM tenant_balances_from_rows WHERE tenant_id = $1 AND currency = 'usd'",
        tenant_id) == expected
    assert await runtime.pool.fetchval(
        "SELECT balance_minor FROM tenant_balances WHERE tenant_id = $1 AND currency = 'usd'",
        tenant_id) == expected
    assert await runtime.pool.fetchval(
        "SELECT subscription_status FROM tenants WHERE tenant_id = $1", tenant_id) == "suspended"
    return [d for d in mine if isinstance(d, PaymentCreated)]
