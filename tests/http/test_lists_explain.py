"""Every list query is an index range scan in the list's order: no sequential scan,
no sort, no OFFSET.

The tables are populated first (20 tenants' worth of rows, ANALYZEd), and each query
is planned with each of its filters and with a cursor. Sequential scans and sorts are
priced out (``enable_seqscan``/``enable_sort`` off): on a few thousand rows the
planner rightly sorts a handful of rows, but "off" only makes a plan costly, never
impossible, so a query without an index that yields its order still shows a Seq Scan
or a Sort here, and fails.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from dropgate.http import listspecs
from dropgate.persistence.lists import ListSpec
from dropgate.runtime import Runtime
from tests.support.plans import plan_nodes

N = 4000  # rows per table, over 20 tenants

_POPULATE = f"""
INSERT INTO tenants SELECT 't' || i, 'n', (ARRAY['active','past_due'])[1 + i % 2], NULL, now() - i * interval '1 s', 1
  FROM generate_series(1, {N}) i;
INSERT INTO api_keys SELECT 'k' || i, 'x', 'service', 't' || (i % 20), now() - i * interval '1 s', NULL
  FROM generate_series(1, {N}) i;
INSERT INTO invite_codes SELECT 't' || (i % 20), 'c' || i, 5, 0, i % 2 = 0, NULL, now() - i * interval '1 s', 1
  FROM generate_series(1, {N}) i;
INSERT INTO invite_code_uses SELECT 't1', 'c1', 'u' || i, now() - i * interval '1 s'
  FROM generate_series(1, 5) i;
INSERT INTO invite_code_uses SELECT 't' || (i % 20), 'c' || i, 'u' || i, now() - i * interval '1 s'
  FROM generate_series(2, {N}) i;
INSERT INTO promo_codes (tenant_id, code, bonus_kind, bonus_amount, currency, active, created_at, version)
  SELECT 't' || (i % 20), 'p' || i, 'fixed', 100, 'usd', i % 2 = 0, now() - i * interval '1 s', 1
  FROM generate_series(1, {N}) i;
INSERT INTO promo_code_uses SELECT 't1', 'p1', 'u' || i, 'cu' || (i % 50), 1000, 100, now() - i * interval '1 s'
  FROM generate_series(1, {N}) i;
INSERT INTO promo_code_rolled_back_uses SELECT 't1', 'p1', 'r' || i, 'cu' || (i % 50), 1000, 100,
                                                now() - i * interval '1 s', now()
  FROM generate_series(1, {N} / 10) i;
INSERT INTO offers (tenant_id, offer_id, event_id, name, price_minor, currency, inventory_total,
                    max_per_order, active, created_at, version)
  SELECT 't' || (i % 20), 'o' || i, 'e' || (i % 40), 'n', 100, 'usd', 10, 1, i % 2 = 0,
         now() - i * interval '1 s', 1
  FROM generate_series(1, {N}) i;
INSERT INTO offer_purchases (tenant_id, purchase_id, offer_id, user_id, quantity, status,
                             amount_minor, currency, hold_expires_at, created_at, updated_at, version)
  SELECT 't' || (i % 20), 'pu' || i, 'o' || (20 + i % 20), 'u' || (i % 100), 1, 'released',
         100, 'usd', now(), now() - i * interval '1 s', now(), 1
  FROM generate_series(1, {N}) i;
INSERT INTO payments SELECT 't' || (i % 20), 'pa' || i, 100, 'usd', 'r', 1, now() - i * interval '1 s'
  FROM generate_series(1, {N}) i;
INSERT INTO withdrawals (tenant_id, withdrawal_id, amount_minor, currency, initiated_by, status,
                         created_at, version)
  SELECT 't' || (i % 20), 'w' || i, 1, 'usd', 'a', 'pending', now() - i * interval '1 s', 1
  FROM generate_series(1, {N}) i;
INSERT INTO orders SELECT 't' || (i % 20), 'or' || i, '[]', 1, 'usd', 'placed', now() - i * interval '1 s'
  FROM generate_series(1, {N}) i;
INSERT INTO booking_slots SELECT 't' || (i % 20), 'r' || i, now(), now() + interval '1 h', 10, 0
  FROM generate_series(1, {N}) i;
INSERT INTO bookings SELECT s.tenant_id, 'b' || s.resource_id, s.resource_id, s.slot_start,
                            s.slot_end, 'u', now() FROM booking_slots s;
INSERT INTO campaigns (tenant_id, campaign_id, types, created_at)
  SELECT 't' || (i % 20), 'ca' || i, '{{tm}}', now() - i * interval '1 s' FROM generate_series(1, {N}) i;
INSERT INTO campaign_codes (tenant_id, campaign_id, type, code, uploaded_at, version)
  SELECT 't' || (i % 20), 'ca' || (i % 7), 'tm', 'code' || i, now(), 1 FROM generate_series(1, {N * 5}) i;
INSERT INTO dg_webhook_endpoints (endpoint_id, tenant_id, url, events, secret, created_at)
  SELECT 'we' || i, 't' || (i % 20), 'https://x.test/h', '{{*}}', 's', now() - i * interval '1 s'
  FROM generate_series(1, {N}) i;
INSERT INTO dg_webhook_deliveries (delivery_id, endpoint_id, tenant_id, event_id, event_type, entity,
                                   body, status)
  SELECT 'wd' || i, 'we' || (1 + i % 40), 't1', 'ev' || i, 'invite.used', 'x' || (i % 9), '{{}}',
         (ARRAY['pending','succeeded','failed'])[1 + i % 3]
  FROM generate_series(1, {N * 2}) i;
ANALYZE;
"""

_VALUES: dict[str, Any] = {
    "id": "t1", "type": "tm", "bool": True,
}


def _filter_value(spec: ListSpec, name: str) -> Any:
    f = spec.filters[name]
    if f.kind == "enum":
        return f.values[0]
    if f.kind == "id":
        return {"tenant_id": "t1", "event_id": "e1", "offer_id": "o21", "user_id": "u1",
                "customer_id": "cu1", "resource_id": "r1", "status": "placed"}[name]
    return _VALUES[f.kind]


async def test_every_list_query_walks_an_index(runtime: Runtime) -> None:
    async with runtime.pool.acquire() as conn:
        await conn.execute(_POPULATE)
        await conn.execute("SET enable_seqscan = off; SET enable_sort = off")
        checked = 0
        seen: set[str] = set()
        for spec in listspecs.ALL:
            first = "we1" if spec.scope == ("endpoint_id",) else "t1"
            scope = [first, {"invite_uses": "c1", "promo_uses": "p1", "codes": "ca1"}.get(spec.name, "")][
                :len(spec.scope)]
            names = list(spec.filters)
            shapes = [[], *([n] for n in names)]
            for filters in shapes:
                values = {n: _filter_value(spec, n) for n in filters}
                text, order = spec.sql(len(scope), values, True)
                assert "OFFSET" not in text.upper()
                after = [{"ts": datetime.now(UTC), "int": 2**62}.get(kind, "zzz") for _, kind in spec.keys]
                args = [*scope, *(values[n] for n in order), *after, 11]
                raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {text}", *args)
                plan = json.loads(raw)[0]["Plan"]
                nodes = [node["Node Type"] for node in plan_nodes(plan)]
                assert "Seq Scan" not in nodes, (spec.name, filters, nodes)
                assert not any("Sort" in n for n in nodes), (spec.name, filters, nodes, json.dumps(plan))
                assert any("Index" in n for n in nodes), (spec.name, filters, nodes)
                checked += 1
                seen.add(spec.name)
        assert checked >= 25
        assert {"webhook_endpoints", "webhook_deliveries"} <= seen
