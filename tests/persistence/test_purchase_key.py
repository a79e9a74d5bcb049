"""Migration 0024: offer_purchases' primary key leads with the purchase id, and the index by
id alone is gone (#19).

The return pages find a purchase by its id alone; the primary key (purchase_id, tenant_id)
now serves that lookup, which ``offer_purchases_by_purchase_id`` served beside a key of
(tenant_id, purchase_id) holding the same ids. What must not change: the same columns are
unique, so two tenants' purchases may share an id and each keeps its own row through every
version; the refunds' foreign key still cascades; a schema migrated from 0023 keeps its rows.
"""

from __future__ import annotations

import asyncio
import json

import asyncpg

from dropgate.engine.offers import HoldRequest, new_purchase_id
from dropgate.http.routes.offers import TENANT_OF_PURCHASE_SQL
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.support.plans import plan_nodes
from tests.support.schemas import migrate_rest, schema_at

_ROWS = 20_000
_CROWD = 150  # holds per tenant, each its own caller, the same ids in both tenants


async def _key_columns(conn: asyncpg.Connection | asyncpg.Pool) -> list[str]:
    return [r["attname"] for r in await conn.fetch(
        """SELECT a.attname FROM pg_index x
             JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, n) ON true
             JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
            WHERE x.indrelid = 'offer_purchases'::regclass AND x.indisprimary ORDER BY k.n""")]


async def _indexes(conn: asyncpg.Connection | asyncpg.Pool) -> set[str]:
    return {r["indexname"] for r in await conn.fetch(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'offer_purchases'")}


async def _refund_key(conn: asyncpg.Connection | asyncpg.Pool) -> tuple[str, str]:
    """The refunds' foreign key to the purchases: its definition and its delete action."""
    row = await conn.fetchrow(
        """SELECT pg_get_constraintdef(oid) AS def, confdeltype::text AS on_delete FROM pg_constraint
            WHERE conrelid = 'offer_refunds'::regclass AND contype = 'f'
              AND confrelid = 'offer_purchases'::regclass""")
    assert row is not None
    return row["def"], row["on_delete"]


async def test_the_primary_key_finds_a_purchase_by_its_id_alone(runtime: Runtime) -> None:
    async with runtime.pool.acquire() as conn:
        assert await _key_columns(conn) == ["purchase_id", "tenant_id"]
        assert "offer_purchases_by_purchase_id" not in await _indexes(conn)
        assert await _refund_key(conn) == (
            "FOREIGN KEY (tenant_id, purchase_id) REFERENCES offer_purchases(tenant_id, purchase_id) "
            "ON DELETE CASCADE", "c")
        await conn.execute(
            """INSERT INTO offers (tenant_id, offer_id, event_id, name, price_minor, currency, inventory_total,
                                   reserved, sold, max_per_order, active, archived, created_at, version)
               SELECT 't' || i, 'o1', 'e1', 'n', 100, 'usd', 1000000, 0, 0, 5, true, false, now(), 1
                 FROM generate_series(0, 6) i""")
        await conn.execute(
            """INSERT INTO offer_purchases (tenant_id, purchase_id, offer_id, user_id, quantity, status,
                                            amount_minor, currency, hold_expires_at, created_at, updated_at,
                                            version, units)
               SELECT 't' || (i % 7), 'pu_' || lpad(i::text, 8, '0'), 'o1', 'u' || i, 1, 'paid', 100, 'usd',
                      now(), now(), now(), 1, 'sold'
                 FROM generate_series(1, $1::int) i""", _ROWS)
        await conn.execute("ANALYZE offer_purchases")
        plan = json.loads(await conn.fetchval("EXPLAIN (FORMAT JSON) " + TENANT_OF_PURCHASE_SQL,
                                              "pu_00012345"))[0]["Plan"]
        used = {node["Index Name"] for node in plan_nodes(plan) if "Index Name" in node}
        assert used == {"offer_purchases_pkey"}, plan
        assert [r["tenant_id"] for r in await conn.fetch(TENANT_OF_PURCHASE_SQL, "pu_00012345")] == ["t4"]


async def _crowd(runtime: Runtime, tenant: str, ids: list[str]) -> None:
    async def hold(i: int) -> None:
        [result] = await runtime.offers.purchase_batch(
            tenant, "o1", [HoldRequest(purchase_id=ids[i], user_id=f"{tenant}-u{i}", quantity=1 + i % 2,
                                       idem_digest="", fingerprint="")], [],
            hold_ttl_ms=1_800_000, rate_interval_ms=0.001, rate_burst=10**6, idem_ttl_ms=86_400_000,
            idem_stale_ms=60_000)
        assert result.ok, result

    await asyncio.gather(*(hold(i) for i in range(len(ids))))


async def test_two_tenants_sharing_purchase_ids_keep_a_row_each(runtime: Runtime, persister: Persister) -> None:
    for tenant in ("ta", "tb"):
        await runtime.tenants.create(tenant, name=tenant, status="active", trial_end_ms=None)
        await runtime.offers.create(tenant, offer_id="o1", event_id="drop", name="Hot", price_minor=2500,
                                    currency="usd", total=10**6, max_per_order=3, expires_at_ms=None, active=True)
    ids = [new_purchase_id() for _ in range(_CROWD)]
    await asyncio.gather(_crowd(runtime, "ta", ids), _crowd(runtime, "tb", ids))
    # a second version for a third of one tenant's purchases only
    released = ids[::3]
    outcomes = await asyncio.gather(*(runtime.offers.release("ta", "o1", pid, status="released")
                                      for pid in released))
    assert [o.outcome for o in outcomes] == ["released"] * len(released), outcomes
    await persister.drain()

    rows = {(r["tenant_id"], r["purchase_id"]): r for r in await runtime.pool.fetch(
        "SELECT tenant_id, purchase_id, user_id, quantity, status, version FROM offer_purchases")}
    assert len(rows) == 2 * _CROWD
    for tenant in ("ta", "tb"):
        for pid in ids:
            record = await runtime.offers.purchase(tenant, pid)
            row = rows[(tenant, pid)]
            assert (row["user_id"], row["quantity"], row["status"], row["version"]) == (
                record.user_id, record.quantity, record.status, record.version), (tenant, pid)
    assert {pid for (tenant, pid), r in rows.items() if r["status"] == "released"} == set(released)
    assert all(rows[("tb", pid)]["status"] == "pending" for pid in ids)
    for tenant in ("ta", "tb"):  # the offers' counters, which the rows' triggers keep, agree too
        live = await runtime.offers.read(tenant, "o1")
        counted = await runtime.pool.fetchrow(
            "SELECT reserved, sold FROM offers WHERE tenant_id = $1 AND offer_id = 'o1'", tenant)
        assert (counted["reserved"], counted["sold"]) == (live.reserved, live.sold), (tenant, live)
    # an id two tenants share is nobody's by id alone (the page answers 404, not a guess)
    assert len(await runtime.pool.fetch(TENANT_OF_PURCHASE_SQL, ids[0])) == 2


async def test_a_schema_from_0023_keeps_its_purchases_and_refunds(settings: Settings, isolated: str) -> None:
    async with schema_at(settings, 23) as pool:
        async with pool.acquire() as conn:
            await conn.execute(
                """INSERT INTO offer_purchases (tenant_id, purchase_id, offer_id, user_id, quantity, status,
                                                amount_minor, currency, hold_expires_at, created_at, updated_at,
                                                version, units)
                   SELECT 't1', 'p' || i, 'o1', 'u' || i, 1, 'paid', 100, 'usd', now(), now(), now(), 2, 'sold'
                     FROM generate_series(1, 30) i""")
            await conn.execute(
                """INSERT INTO offer_refunds (tenant_id, refund_id, purchase_id, amount_minor, created_at)
                   SELECT 't1', 're' || i, 'p' || i, 50, now() FROM generate_series(1, 10) i""")
            before = await conn.fetch("SELECT * FROM offer_purchases ORDER BY purchase_id")
            refunds = await conn.fetch("SELECT * FROM offer_refunds ORDER BY refund_id")
            assert await _key_columns(conn) == ["tenant_id", "purchase_id"]

        await migrate_rest(pool, 23)

        async with pool.acquire() as conn:
            assert await _key_columns(conn) == ["purchase_id", "tenant_id"]
            assert "offer_purchases_by_purchase_id" not in await _indexes(conn)
            assert await conn.fetch("SELECT * FROM offer_purchases ORDER BY purchase_id") == before
            assert await conn.fetch("SELECT * FROM offer_refunds ORDER BY refund_id") == refunds
            assert (await _refund_key(conn))[1] == "c"
            # the foreign key still holds both ways: a refund of no purchase is refused, and a
            # purchase deleted by hand takes its refunds
            try:
                await conn.execute("""INSERT INTO offer_refunds (tenant_id, refund_id, purchase_id, amount_minor,
                                                                 created_at) VALUES ('t2', 'rx', 'p1', 5, now())""")
            except asyncpg.ForeignKeyViolationError:
                pass
            else:
                raise AssertionError("a refund of another tenant's purchase id was taken")
            await conn.execute("DELETE FROM offer_purchases WHERE purchase_id = 'p3'")
            assert await conn.fetchval("SELECT count(*) FROM offer_refunds WHERE purchase_id = 'p3'") == 0
            assert await conn.fetchval("SELECT count(*) FROM offer_refunds") == 9
