"""The webhook lists on the shared list machinery: signed cursors, the shared limit,
the ``status`` filter, ``consistent`` parsed like every list's, tenancy (404)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.conftest import Api
from tests.support.webhooks import Receiver, receiver, register, webhook_settings

__all__ = ["receiver"]


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return webhook_settings(make_settings)


async def _pages(api: Api, path: str, limit: int, **params: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(50):
        q = "&".join(f"{k}={v}" for k, v in {"limit": str(limit), **params,
                                              **({"cursor": cursor} if cursor else {})}.items())
        status, page = await api.call("GET", f"{path}?{q}")
        assert status == 200, page
        assert set(page) == {"data", "has_more", "next_cursor"}
        rows += page["data"]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            return rows
        assert len(page["data"]) == limit
        cursor = page["next_cursor"]
    raise AssertionError("no last page")


async def test_endpoint_pages_and_cursors(api: Api, receiver: Receiver) -> None:
    made = [(await register(api, receiver))["endpoint_id"] for _ in range(5)]
    listed = await _pages(api, "/v1/webhook-endpoints", 2)
    assert [e["endpoint_id"] for e in listed] == made[::-1]  # newest first, no repeat, no skip
    assert all("secret" not in e and e["status"] == "enabled" for e in listed)
    status, page = await api.call("GET", "/v1/webhook-endpoints?limit=2&consistent=true")
    assert status == 200 and page["has_more"] is True
    cursor = page["next_cursor"]
    body_part, _, mac = cursor.partition(".")
    assert mac  # signed, like every other list's
    raw = base64.urlsafe_b64decode(body_part + "=" * (-len(body_part) % 4))
    forged = base64.urlsafe_b64encode(raw.replace(b"webhook_endpoints", b"webhook_deliveries")
                                      ).rstrip(b"=").decode()
    old_style = base64.urlsafe_b64encode(b"s:999999").rstrip(b"=").decode()
    path = f"/v1/webhook-endpoints/{made[0]}/deliveries"
    for url in (f"/v1/webhook-endpoints?cursor={forged}.{mac}",
                f"/v1/webhook-endpoints?cursor={old_style}",
                f"{path}?cursor={cursor}",  # one list's cursor is refused by another
                f"/v1/invites?cursor={cursor}"):
        status, body = await api.call("GET", url)
        assert status == 400 and body["code"] == "VALIDATION_ERROR", (url, body)
        assert body["details"] == {"field": "cursor"}, body
    for q, field in (("limit=1001", "limit"), ("limit=x", "limit"), ("consistent=maybe", "consistent"),
                     ("status=lost", "status")):
        status, body = await api.call("GET", f"{path}?{q}")
        assert status == 400 and body["details"]["field"] == field, (q, body)
    status, body = await api.call("GET", f"/v1/webhook-endpoints?cursor={cursor}")
    assert status == 200 and [e["endpoint_id"] for e in body["data"]] == made[2::-1]


async def test_delivery_pages_by_status(api: Api, runtime: Runtime, receiver: Receiver) -> None:
    endpoint = (await register(api, receiver))["endpoint_id"]
    tenant = await runtime.pool.fetchval(
        "SELECT tenant_id FROM dg_webhook_endpoints WHERE endpoint_id = $1", endpoint)
    statuses = ["pending", "succeeded", "failed"]
    await runtime.pool.executemany(
        """INSERT INTO dg_webhook_deliveries (delivery_id, endpoint_id, tenant_id, event_id,
                                              event_type, entity, body, status)
           VALUES ($1, $2, $3, $4, 'invite.used', 'e', '{}', $5)""",
        [(f"wd_l{i:03}", endpoint, tenant, f"ev_l{i:03}", statuses[i % 3]) for i in range(25)])
    path = f"/v1/webhook-endpoints/{endpoint}/deliveries"
    every = await _pages(api, path, 4, consistent="true")
    assert [d["event_id"] for d in every] == [f"ev_l{i:03}" for i in reversed(range(25))]
    failed = await _pages(api, path, 3, status="failed")
    assert [d["event_id"] for d in failed] == [f"ev_l{i:03}" for i in reversed(range(25)) if i % 3 == 2]
    assert all(d["status"] == "failed" and "next_attempt_at" not in d for d in failed)
    pending = await _pages(api, path, 100, status="pending")
    assert len(pending) == 9 and all("next_attempt_at" in d for d in pending)
    other = await api.new_tenant("initech")
    status, body = await api.call("GET", path, headers={"Authorization": f"Bearer {other}"})
    assert status == 404 and body["code"] == "NOT_FOUND"
