"""A purchase's offer must exist: migration 0019 keeps the rule the foreign key kept (#19).

The key checked each purchase row with a lookup of its offer; statement triggers check
each statement's offers once. Everything the key refused is still refused with the key's
SQLSTATE (23503, which the persister dead-letters), nothing of a refused statement stays,
and the races the key's row lock settled are settled the same way: a delete of an offer
waits for a purchase being written and then sees it, a purchase waits for a delete being
made and then finds no offer.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from dropgate.runtime import Runtime

_NOW = int(time.time() * 1000)


async def _offer(conn: asyncpg.Connection, tenant: str, offer: str) -> None:
    await conn.execute(
        """INSERT INTO offers (tenant_id, offer_id, event_id, name, price_minor, currency,
                               inventory_total, max_per_order, active, created_at, version)
           VALUES ($1, $2, 'drop', $2, 500, 'usd', 100, 3, true, now(), 1)""", tenant, offer)


async def _purchases(conn: asyncpg.Connection, rows: list[tuple[str, str, str]]) -> None:
    """(tenant, purchase, offer) rows, pending, in ONE statement (as the persister writes)."""
    await conn.execute(
        """INSERT INTO offer_purchases (tenant_id, purchase_id, offer_id, user_id, quantity, status,
                                        amount_minor, currency, hold_expires_at, created_at,
                                        updated_at, version)
           SELECT t, p, o, 'u-' || p, 1, 'pending', 500, 'usd', now() + interval '10 minutes',
                  now(), now(), 1
             FROM unnest($1::text[], $2::text[], $3::text[]) AS r (t, p, o)""",
        [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


async def _counts(conn: asyncpg.Connection) -> tuple[int, int]:
    purchases = await conn.fetchval("SELECT count(*) FROM offer_purchases")
    reserved = await conn.fetchval("SELECT coalesce(sum(reserved), 0) FROM offers")
    return purchases, reserved


async def test_a_purchase_of_no_offer_is_refused_and_its_statement_leaves_nothing(runtime: Runtime) -> None:
    async with runtime.pool.acquire() as conn:
        await _offer(conn, "t1", "a")
        await _offer(conn, "t2", "a")
        await _purchases(conn, [("t1", "pu_1", "a"), ("t2", "pu_2", "a")])
        assert await _counts(conn) == (2, 2)
        # one good row and one whose offer is another tenant's name: the whole statement goes
        with pytest.raises(asyncpg.ForeignKeyViolationError, match="offer_purchases_tenant_id_offer_id_fkey") as exc:
            await _purchases(conn, [("t1", "pu_3", "a"), ("t3", "pu_4", "a")])
        assert "(t3, a)" in (exc.value.detail or "")
        assert await _counts(conn) == (2, 2)
        # moving a purchase to an offer that does not exist, by hand
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute("UPDATE offer_purchases SET offer_id = 'gone' WHERE purchase_id = 'pu_1'")
        assert await conn.fetchval("SELECT offer_id FROM offer_purchases WHERE purchase_id = 'pu_1'") == "a"


async def test_an_offer_a_purchase_names_cannot_be_deleted_rekeyed_or_truncated(runtime: Runtime) -> None:
    async with runtime.pool.acquire() as conn:
        await _offer(conn, "t1", "bought")
        await _offer(conn, "t1", "unbought")
        await _purchases(conn, [("t1", "pu_1", "bought")])
        with pytest.raises(asyncpg.ForeignKeyViolationError, match="still referenced"):
            await conn.execute("DELETE FROM offers WHERE offer_id = 'bought'")
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute("UPDATE offers SET offer_id = 'renamed' WHERE offer_id = 'bought'")
        with pytest.raises(asyncpg.ForeignKeyViolationError, match="cannot truncate offers"):
            await conn.execute("TRUNCATE offers")
        # what no purchase names moves freely, and any other column of a bought offer does too
        await conn.execute("UPDATE offers SET offer_id = 'renamed' WHERE offer_id = 'unbought'")
        await conn.execute("DELETE FROM offers WHERE offer_id = 'renamed'")
        await conn.execute("UPDATE offers SET name = 'still here' WHERE offer_id = 'bought'")
        assert await conn.fetchval("SELECT count(*) FROM offers") == 1
        # once the purchase is gone, so may the offer
        await conn.execute("DELETE FROM offer_purchases")
        await conn.execute("DELETE FROM offers")
        assert await conn.fetchval("SELECT count(*) FROM offers") == 0


async def _blocked(task: asyncio.Task[object]) -> bool:
    """Whether ``task`` is still waiting (on a row lock) after a moment."""
    await asyncio.sleep(0.5)
    return not task.done()


async def test_a_delete_racing_an_uncommitted_purchase_waits_for_it_then_refuses(runtime: Runtime) -> None:
    async with runtime.pool.acquire() as writer, runtime.pool.acquire() as deleter:
        await _offer(writer, "t1", "hot")
        tx = writer.transaction()
        await tx.start()
        await _purchases(writer, [("t1", "pu_1", "hot")])
        delete = asyncio.create_task(deleter.execute("DELETE FROM offers WHERE offer_id = 'hot'"))
        assert await _blocked(delete)  # the purchase's lock on its offer holds the delete
        await tx.commit()
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await asyncio.wait_for(delete, 10)
        assert await writer.fetchval("SELECT count(*) FROM offers") == 1


async def test_a_purchase_racing_an_uncommitted_delete_waits_for_it_then_finds_no_offer(runtime: Runtime) -> None:
    async with runtime.pool.acquire() as writer, runtime.pool.acquire() as deleter:
        await _offer(writer, "t1", "hot")
        tx = deleter.transaction()
        await tx.start()
        await deleter.execute("DELETE FROM offers WHERE offer_id = 'hot'")
        write = asyncio.create_task(_purchases(writer, [("t1", "pu_1", "hot")]))
        assert await _blocked(write)  # the delete's lock on the offer holds the purchase
        await tx.commit()
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await asyncio.wait_for(write, 10)
        assert await _counts(writer) == (0, 0)
