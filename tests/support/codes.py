"""Helpers of the campaign code pool tests: uploads and Redis <-> PostgreSQL checks."""

from __future__ import annotations

from typing import Any

from dropgate.ids import text
from dropgate.runtime import Runtime
from tests.conftest import Api

_NAMES = {"a": "available", "r": "reserved", "s": "assigned"}


async def upload_csv(api: Api, campaign: str, type: str, body: bytes | str,
                     headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = body.encode() if isinstance(body, str) else body
    response = await api.client.post(
        f"/v1/campaigns/{campaign}/codes?type={type}", data=data,
        headers={**(headers or api.service), "Content-Type": "text/csv"})
    return response.status, await response.json()


async def redis_rows(rt: Runtime, tenant: str, campaign: str) -> dict[str, tuple[Any, ...]]:
    """code -> (type, status, reserve_id, reserved_at_ms, assigned_at_ms) from the records hash."""
    raw = await rt.redis.hgetall(rt.keys.tenant(tenant).codes_records(campaign))
    rows: dict[str, tuple[Any, ...]] = {}
    for code, record in raw.items():
        f = text(record).partition("#")[0].split("|") + [""] * 6  # less its upload mark
        rows[text(code)] = (f[0], _NAMES[f[1]], f[2] or None, int(f[3]) if f[3] else None,
                            int(f[5]) if f[5] else None)
    return rows


async def pg_rows(rt: Runtime, tenant: str, campaign: str) -> dict[str, tuple[Any, ...]]:
    rows = await rt.pool.fetch(
        """SELECT code, type, status, reserve_id,
                  (extract(epoch FROM reserved_at) * 1000)::bigint AS reserved_ms,
                  (extract(epoch FROM assigned_at) * 1000)::bigint AS assigned_ms
             FROM campaign_codes WHERE tenant_id = $1 AND campaign_id = $2""",
        tenant, campaign)
    return {r["code"]: (r["type"], r["status"], r["reserve_id"], r["reserved_ms"], r["assigned_ms"])
            for r in rows}


async def pg_counts(rt: Runtime, tenant: str, campaign: str, type: str) -> dict[str, int]:
    """Counts by status computed by SQL over the rows (expired reservations are available)."""
    row = await rt.pool.fetchrow(
        """SELECT count(*) FILTER (WHERE status = 'available'
                                     OR (status = 'reserved' AND expires_at <= now())) AS available,
                  count(*) FILTER (WHERE status = 'reserved' AND expires_at > now()) AS reserved,
                  count(*) FILTER (WHERE status = 'assigned') AS assigned
             FROM campaign_codes WHERE tenant_id = $1 AND campaign_id = $2 AND type = $3""",
        tenant, campaign, type)
    assert row is not None
    return dict(row)


async def assert_pg_matches_redis(rt: Runtime, tenant: str, campaign: str) -> None:
    redis_side = await redis_rows(rt, tenant, campaign)
    pg_side = await pg_rows(rt, tenant, campaign)
    assert len(pg_side) == len(redis_side)
    differing = [c for c in redis_side if redis_side[c] != pg_side.get(c)]
    assert not differing, [(c, redis_side[c], pg_side.get(c)) for c in differing[:5]]
