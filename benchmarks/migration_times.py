"""How long this round's purchase migrations take on a large table, and what waits meanwhile.

    .venv/bin/python -m benchmarks.migration_times [--purchases 1000000] [--from-version 22]

An operator upgrading a running installation applies the migrations its database has not
seen at the first start (README, "Upgrading a running installation"). Migrations that
rewrite or re-index ``offer_purchases`` (0023 deletes a history row per purchase, 0024
builds the table's primary key again) hold their table's lock while they work, so the
figure an operator needs is their time at the table's size, and what waits meanwhile.

On a fresh schema (``private_settings``) migrated up to ``--from-version``, the table is
filled as an earlier release left it: ``--purchases`` purchases of one tenant over ten
offers, ids in time order (``new_purchase_id``'s shape), nine in ten paid (history versions
1 and 2), the rest pending (version 1), and a refund row for every hundredth; then
``VACUUM ANALYZE``, as autovacuum would have left them. Each later migration is then applied
as ``dropgate.persistence.migrate`` applies it (one transaction, the migration lock), while
two probes on connections of their own repeat, every 20 ms, what a running installation
does meanwhile: the return page's lookup of a purchase by id (``TENANT_OF_PURCHASE_SQL``)
and a persister's write to one purchase row (an ``UPDATE`` rolled back). Printed per
migration: its time and the longest each probe waited. It exits 1 unless the migrations
left what they promise on every row (``check``: the purchases all kept, one history row
each for the paid ones' second version only after 0023, the key led by the id after 0024)
and both probes ran during each.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field

import asyncpg

from benchmarks.common import private_settings, stores
from dropgate.http.routes.offers import TENANT_OF_PURCHASE_SQL
from dropgate.persistence.database import create_pool
from dropgate.persistence.migrate import migrate, migration_files
from dropgate.settings import Settings

FILL_CHUNK = 100_000
PROBE_EVERY_S = 0.02

OFFERS_SQL = """INSERT INTO offers (tenant_id, offer_id, event_id, name, price_minor, currency,
                                    inventory_total, max_per_order, active, created_at, version)
                SELECT 't1', 'o' || i, 'drop', 'offer ' || i, 500, 'usd', 1000000000, 3, true, now(), 1
                  FROM generate_series(0, 9) i"""

# ids shaped as new_purchase_id's (the time first): 'pu_' and 24 hex digits, increasing
PURCHASES_SQL = """
INSERT INTO offer_purchases (tenant_id, purchase_id, offer_id, user_id, quantity, status, amount_minor,
                             currency, hold_expires_at, checkout_session_id, created_at, updated_at,
                             version, units)
SELECT 't1', 'pu_' || lpad(to_hex(g), 24, '0'), 'o' || (g % 10), 'u' || (g % 50000), 1,
       CASE WHEN g % 10 = 0 THEN 'pending' ELSE 'paid' END, 500, 'usd',
       now() + interval '10 minutes', 'cs_' || g, now(), now(),
       CASE WHEN g % 10 = 0 THEN 1 ELSE 2 END, CASE WHEN g % 10 = 0 THEN 'held' ELSE 'sold' END
  FROM generate_series($1::bigint, $2::bigint) g"""

HISTORY_SQL = """
INSERT INTO offer_purchase_history (tenant_id, purchase_id, version, status, at)
SELECT 't1', 'pu_' || lpad(to_hex(g), 24, '0'), v, CASE WHEN v = 1 THEN 'pending' ELSE 'paid' END, now()
  FROM generate_series($1::bigint, $2::bigint) g, generate_series(1, 2) v
 WHERE v = 1 OR g % 10 <> 0"""

REFUNDS_SQL = """
INSERT INTO offer_refunds (tenant_id, refund_id, purchase_id, amount_minor, created_at)
SELECT 't1', 're_' || g, 'pu_' || lpad(to_hex(g), 24, '0'), 500, now()
  FROM generate_series($1::bigint, $2::bigint) g
 WHERE g % 100 = 1"""

WRITE_PROBE_SQL = "UPDATE offer_purchases SET updated_at = now() WHERE tenant_id = 't1' AND purchase_id = $1"


def purchase_id(n: int) -> str:
    return "pu_" + format(n, "x").rjust(24, "0")


@dataclass
class Probe:
    """One repeated statement of a running installation, and the longest it waited."""

    name: str
    longest_s: float = 0.0
    runs: int = 0
    errors: list[str] = field(default_factory=list)


async def probe_loop(settings: Settings, probe: Probe, target: str, stop: asyncio.Event) -> None:
    """Repeat the probe's statement every ``PROBE_EVERY_S`` until ``stop``; on a connection
    of its own, without a client timeout (a wait is what it measures)."""
    assert settings.database_url is not None
    conn = await asyncpg.connect(settings.database_url,
                                 server_settings={"search_path": settings.database_schema or "public"})
    try:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                if probe.name == "read":
                    await conn.fetch(TENANT_OF_PURCHASE_SQL, target)
                else:
                    write = conn.transaction()
                    await write.start()
                    try:
                        await conn.execute(WRITE_PROBE_SQL, target)
                    finally:
                        await write.rollback()
            except asyncpg.PostgresError as exc:  # e.g. a table renamed under it: say so
                probe.errors.append(type(exc).__name__)
            probe.longest_s = max(probe.longest_s, time.perf_counter() - started)
            probe.runs += 1
            await asyncio.sleep(PROBE_EVERY_S)
    finally:
        await conn.close()


async def fill(pool: asyncpg.Pool, purchases: int) -> None:
    async with pool.acquire() as conn:
        await conn.execute(OFFERS_SQL)
        started = time.perf_counter()
        for first in range(1, purchases + 1, FILL_CHUNK):
            last = min(first + FILL_CHUNK - 1, purchases)
            async with conn.transaction():
                await conn.execute(PURCHASES_SQL, first, last)
                await conn.execute(HISTORY_SQL, first, last)
                await conn.execute(REFUNDS_SQL, first, last)
            print(f"  filled {last:,} of {purchases:,} purchases ({time.perf_counter() - started:.0f} s)",
                  flush=True)
        await conn.execute("VACUUM ANALYZE offer_purchases")
        await conn.execute("VACUUM ANALYZE offer_purchase_history")
        await conn.execute("VACUUM ANALYZE offer_refunds")


async def check(pool: asyncpg.Pool, purchases: int) -> list[str]:
    """What the migrations after 22 promise of the filled rows; the failures, if any."""
    failures = []
    paid = purchases - purchases // 10
    async with pool.acquire() as conn:
        kept = await conn.fetchval("SELECT count(*) FROM offer_purchases")
        if kept != purchases:
            failures.append(f"offer_purchases holds {kept} rows, not {purchases}")
        if await conn.fetchval("SELECT to_regclass('offer_purchase_changes')") is not None:
            changes = await conn.fetchval("SELECT count(*) FROM offer_purchase_changes")
            firsts = await conn.fetchval("SELECT count(*) FROM offer_purchase_changes WHERE version = 1")
            if changes != paid or firsts:
                failures.append(f"offer_purchase_changes holds {changes} rows ({firsts} first versions), "
                                f"not the {paid} paid ones' second versions")
        key = await conn.fetchval("SELECT pg_get_indexdef('offer_purchases_pkey'::regclass)")
        if await conn.fetchval("SELECT max(version) FROM dg_schema_migrations") >= 24 \
                and "(purchase_id, tenant_id)" not in key:
            failures.append(f"the key after 0024: {key}")
    return failures


async def run(args: argparse.Namespace) -> None:
    s = stores()
    try:
        async with private_settings(s) as settings:
            assert settings.database_url is not None
            pool = await create_pool(settings, settings.database_url, max_size=2)
            try:
                await migrate(pool, through=args.from_version)
                print(f"schema at migration {args.from_version}; filling {args.purchases:,} purchases", flush=True)
                await fill(pool, args.purchases)
                target = purchase_id(args.purchases // 2 + 1)
                rows = []
                failures: list[str] = []
                for version, path in migration_files():
                    if version <= args.from_version:
                        continue
                    stop = asyncio.Event()
                    probes = [Probe("read"), Probe("write")]
                    tasks = [asyncio.create_task(probe_loop(settings, p, target, stop)) for p in probes]
                    await asyncio.sleep(0.2)
                    started = time.perf_counter()
                    await migrate(pool, through=version)
                    took = time.perf_counter() - started
                    stop.set()
                    await asyncio.gather(*tasks)
                    rows.append((path.name, took, probes))
                    print(f"  {path.name}: {took:.2f} s", flush=True)
                    failures += [f"{path.name}: the {p.name} probe never ran" for p in probes if not p.runs]
                failures += await check(pool, args.purchases)
            finally:
                await pool.close()
    finally:
        if s.stack is not None:
            s.stack.close()
    print()
    print(f"{args.purchases:,} purchases (a refund for every 100th, 9 in 10 paid), applied one by one "
          f"as `dropgate migrate` does, probes every {PROBE_EVERY_S * 1000:.0f} ms:")
    print()
    print("| migration | its time | the longest lookup by id meanwhile | the longest purchase write meanwhile |")
    print("| --- | --- | --- | --- |")
    for name, took, probes in rows:
        cells = []
        for p in probes:
            errors = f" ({len(p.errors)} refused: {', '.join(sorted(set(p.errors)))})" if p.errors else ""
            cells.append(f"{p.longest_s:.2f} s{errors}")
        print(f"| {name} | {took:.2f} s | {cells[0]} | {cells[1]} |")
    if failures:
        print("\nFAILED: " + "; ".join(failures))
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--purchases", type=int, default=1_000_000)
    parser.add_argument("--from-version", type=int, default=22,
                        help="the schema's migration before the ones timed (default 22: 0023 and 0024 timed)")
    args = parser.parse_args()
    if args.purchases < 1:
        parser.error("--purchases: at least 1")
    if not 19 <= args.from_version <= 22:
        parser.error("--from-version: 19 to 22 (the fill writes the history table 0023 turns into a view)")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
