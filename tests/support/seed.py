"""The data the tests against a real ``dropgate serve`` start from, seeded over HTTP: a
tenant with a service key and, for crowds, one offer to buy."""

from __future__ import annotations

import aiohttp

from tests.conftest import ADMIN_KEY

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def seed_tenant(http: aiohttp.ClientSession, url: str, *, tenant_id: str = "acme") -> dict[str, str]:
    """Create the tenant and a service key of it; the key's headers."""
    async with http.post(url + "/v1/tenants", headers=ADMIN,
                         json={"tenant_id": tenant_id, "name": tenant_id.title()}) as r:
        assert r.status == 201, await r.text()
    async with http.post(url + "/v1/keys", headers=ADMIN,
                         json={"role": "service", "tenant_id": tenant_id, "name": "svc"}) as r:
        assert r.status == 201, await r.text()
        return {"Authorization": f"Bearer {(await r.json())['key']}"}


async def seed_offer(url: str, *, inventory_total: int, offer_id: str = "hot") -> dict[str, str]:
    """The tenant ``acme``, its service key and an offer of ``inventory_total`` units at
    25.00 usd; the service key's headers."""
    async with aiohttp.ClientSession() as http:
        service = await seed_tenant(http, url)
        async with http.post(url + "/v1/offers", headers=service,
                             json={"offer_id": offer_id, "event_id": "drop", "name": "Hot",
                                   "price": "25.00", "currency": "usd",
                                   "inventory_total": inventory_total}) as r:
            assert r.status == 201, await r.text()
    return service
