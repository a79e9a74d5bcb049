"""Migration 0022: the purchases' index by offer and status is gone, and what read through
it still finds its rows through a smaller one (#19).

Every purchase a crowd holds was inserted into ``offer_purchases_by_offer`` by the
persister, on the API's cores. The pending holds of a set of offers, which restore reads
back and reconcile compares, are the few rows of the partial index
``offer_purchases_pending``. ``member_rows`` (the query restore runs for them) must go
through it, not through all of an offer's purchases, on a table of many paid purchases
and few pending ones, and must still return exactly the pending ones.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from dropgate.persistence.reconcile.repair import SpecBase
from dropgate.runtime import Runtime
from dropgate.specs.entities import OFFER, OFFER_HOLDS
from tests.support.plans import plan_nodes

_ROWS = 20_000


class _Explaining:
    """The connection ``member_rows`` is given: it runs each query and keeps its plan."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.plans: list[dict[str, Any]] = []

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        self.plans.append(json.loads(await self.conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args))[0]["Plan"])
        rows: list[asyncpg.Record] = await self.conn.fetch(sql, *args)
        return rows


async def test_pending_holds_of_offers_are_read_through_the_pending_index(runtime: Runtime) -> None:
    async with runtime.pool.acquire() as conn:
        indexes = {r["indexname"] for r in await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'offer_purchases'")}
        assert "offer_purchases_by_offer" not in indexes, indexes
        assert {"offer_purchases_pending", "offer_purchases_list_offer"} <= indexes, indexes
        await conn.execute(
            """INSERT INTO offers (tenant_id, offer_id, event_id, name, price_minor, currency, inventory_total,
                                   reserved, sold, max_per_order, active, archived, created_at, version)
               SELECT 't1', 'o' || i, 'e1', 'n', 100, 'usd', 1000000, 0, 0, 5, true, false, now(), 1
                 FROM generate_series(1, 20) i""")
        await conn.execute(
            """INSERT INTO offer_purchases (tenant_id, purchase_id, offer_id, user_id, quantity, status,
                                            amount_minor, currency, hold_expires_at, created_at, updated_at,
                                            version, units)
               SELECT 't1', 'p' || lpad(i::text, 8, '0'), 'o' || (i % 20 + 1), 'u' || i, 1,
                      CASE WHEN i % 97 = 0 THEN 'pending' ELSE 'paid' END, 100, 'usd', now(), now(), now(), 1,
                      CASE WHEN i % 97 = 0 THEN 'held' ELSE 'sold' END
                 FROM generate_series(1, $1::int) i""", _ROWS)
        await conn.execute("ANALYZE offer_purchases")
        explaining = _Explaining(conn)
        owners = [{"_0": "t1", "_1": f"o{i}"} for i in range(1, 6)]
        holds = await SpecBase(OFFER).member_rows(explaining, OFFER, OFFER_HOLDS, owners)
    [plan] = explaining.plans
    used = {node["Index Name"] for node in plan_nodes(plan) if "Index Name" in node}
    assert used == {"offer_purchases_pending"}, plan
    pending = sorted(f"p{i:08d}" for i in range(1, _ROWS + 1) if i % 97 == 0 and i % 20 + 1 <= 5)
    assert sorted(r["_id"] for rows in holds.values() for r in rows) == pending
