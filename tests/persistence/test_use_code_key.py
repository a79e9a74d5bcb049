"""An invite or promo use's code must exist: migration 0021 keeps the rules the foreign keys
kept (#19), checked once per statement instead of once per row.

Everything the keys refused is still refused with their SQLSTATE (23503, which the persister
dead-letters) and name, nothing of a refused statement stays, a deleted or truncated code
takes its uses with it (the keys' ON DELETE CASCADE), a used code's key cannot change, and
the races the keys' row locks settled are settled alike: a delete of a code waits for a use
being written and then takes it, a use waits for a delete being made and then finds no code.
Each test runs on both tables.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

import asyncpg
import pytest

from dropgate.runtime import Runtime


class Table(NamedTuple):
    codes: str
    uses: str
    key: str  # the foreign key's name, which the triggers' errors still carry
    new_code: str  # INSERT of a code: $1 tenant, $2 code
    new_uses: str  # INSERT of uses in ONE statement: $1 tenants, $2 codes, $3 ids


TABLES = {
    "invites": Table(
        "invite_codes", "invite_code_uses", "invite_code_uses_tenant_id_code_fkey",
        """INSERT INTO invite_codes (tenant_id, code, max_uses, active, created_at, version)
           VALUES ($1, $2, 0, true, now(), 1)""",
        """INSERT INTO invite_code_uses (tenant_id, code, user_id, used_at)
           SELECT t, c, u, now() FROM unnest($1::text[], $2::text[], $3::text[]) AS r (t, c, u)"""),
    "promos": Table(
        "promo_codes", "promo_code_uses", "promo_code_uses_tenant_id_code_fkey",
        """INSERT INTO promo_codes (tenant_id, code, bonus_kind, bonus_amount, currency, active,
                                    created_at, version)
           VALUES ($1, $2, 'fixed', 100, 'usd', true, now(), 1)""",
        """INSERT INTO promo_code_uses (tenant_id, code, use_id, customer_id, base_amount,
                                        bonus_amount, used_at)
           SELECT t, c, u, 'c-' || u, 1000, 100, now()
             FROM unnest($1::text[], $2::text[], $3::text[]) AS r (t, c, u)"""),
}


async def _uses(conn: asyncpg.Connection, table: Table, rows: list[tuple[str, str, str]]) -> None:
    await conn.execute(table.new_uses, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


async def _count(conn: asyncpg.Connection, table: Table) -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM {table.uses}"))


async def _blocked(task: asyncio.Task[object]) -> bool:
    """Whether ``task`` is still waiting (on a row lock) after a moment."""
    await asyncio.sleep(0.5)
    return not task.done()


@pytest.mark.parametrize("name", sorted(TABLES))
async def test_no_per_row_key_is_left(name: str, runtime: Runtime) -> None:
    """The point of 0021: the uses' table has no foreign key of its own (each row's check)."""
    table = TABLES[name]
    keys = await runtime.pool.fetchval(
        "SELECT count(*) FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'f'", table.uses)
    assert keys == 0


@pytest.mark.parametrize("name", sorted(TABLES))
async def test_a_use_of_no_code_is_refused_and_its_statement_leaves_nothing(name: str, runtime: Runtime) -> None:
    table = TABLES[name]
    async with runtime.pool.acquire() as conn:
        await conn.execute(table.new_code, "t1", "A")
        await conn.execute(table.new_code, "t2", "A")
        await _uses(conn, table, [("t1", "A", "u1"), ("t2", "A", "u2")])
        assert await _count(conn, table) == 2
        # one good row and one whose code is another tenant's name: the whole statement goes
        with pytest.raises(asyncpg.ForeignKeyViolationError, match=table.key) as exc:
            await _uses(conn, table, [("t1", "A", "u3"), ("t3", "A", "u4")])
        assert "(t3, A)" in (exc.value.detail or "")
        assert await _count(conn, table) == 2
        with pytest.raises(asyncpg.ForeignKeyViolationError):  # moved to no code, by hand
            await conn.execute(f"UPDATE {table.uses} SET code = 'gone' WHERE tenant_id = 't1'")
        assert await conn.fetchval(f"SELECT code FROM {table.uses} WHERE tenant_id = 't1'") == "A"


@pytest.mark.parametrize("name", sorted(TABLES))
async def test_a_code_takes_its_uses_and_keeps_its_key_while_used(name: str, runtime: Runtime) -> None:
    table = TABLES[name]
    async with runtime.pool.acquire() as conn:
        for code in ("USED", "OTHER", "FREE"):
            await conn.execute(table.new_code, "t1", code)
        await _uses(conn, table, [("t1", "USED", "u1"), ("t1", "USED", "u2"), ("t1", "OTHER", "u3")])
        with pytest.raises(asyncpg.ForeignKeyViolationError, match="still referenced"):
            await conn.execute(f"UPDATE {table.codes} SET code = 'RENAMED' WHERE code = 'USED'")
        await conn.execute(f"UPDATE {table.codes} SET code = 'RENAMED' WHERE code = 'FREE'")
        await conn.execute(f"UPDATE {table.codes} SET active = false WHERE code = 'USED'")
        await conn.execute(f"DELETE FROM {table.codes} WHERE code = 'USED'")  # cascades to its uses
        assert await conn.fetchval(f"SELECT array_agg(code) FROM {table.uses}") == ["OTHER"]
        await conn.execute(f"TRUNCATE {table.codes} CASCADE")
        assert await _count(conn, table) == 0


@pytest.mark.parametrize("name", sorted(TABLES))
async def test_a_delete_racing_an_uncommitted_use_waits_for_it_then_takes_it(name: str, runtime: Runtime) -> None:
    table = TABLES[name]
    async with runtime.pool.acquire() as writer, runtime.pool.acquire() as deleter:
        await writer.execute(table.new_code, "t1", "HOT")
        tx = writer.transaction()
        await tx.start()
        await _uses(writer, table, [("t1", "HOT", "u1")])
        delete = asyncio.create_task(deleter.execute(f"DELETE FROM {table.codes} WHERE code = 'HOT'"))
        assert await _blocked(delete)  # the use's lock on its code holds the delete
        await tx.commit()
        await asyncio.wait_for(delete, 10)
        assert await _count(writer, table) == 0


@pytest.mark.parametrize("name", sorted(TABLES))
async def test_a_use_racing_an_uncommitted_delete_waits_for_it_then_finds_no_code(name: str, runtime: Runtime) -> None:
    table = TABLES[name]
    async with runtime.pool.acquire() as writer, runtime.pool.acquire() as deleter:
        await writer.execute(table.new_code, "t1", "HOT")
        tx = deleter.transaction()
        await tx.start()
        await deleter.execute(f"DELETE FROM {table.codes} WHERE code = 'HOT'")
        write = asyncio.create_task(_uses(writer, table, [("t1", "HOT", "u1")]))
        assert await _blocked(write)  # the delete's lock on the code holds the use
        await tx.commit()
        with pytest.raises(asyncpg.ForeignKeyViolationError, match=table.key):
            await asyncio.wait_for(write, 10)
        assert await _count(writer, table) == 0
