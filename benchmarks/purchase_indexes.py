"""What each index of ``offer_purchases`` costs a purchase in PostgreSQL, and what byte-order keys would save.

    .venv/bin/python -m benchmarks.purchase_indexes [--rounds 12] [--holds 1000] [--rows 200000]

Why (issue #19): PostgreSQL's share of a purchase is the third largest on the API's cores
(``make bench``: about 20-25 µs a purchase), and ``benchmarks.purchase_statement`` shows
nearly all of it in the insert. This splits the insert by what it maintains, with the
measure ``benchmarks.purchase_param`` uses: the backend's own on-CPU time
(``/proc/<pid>/schedstat``), which a busy machine disturbs far less than a drain rate.

On a fresh schema (``private_runtime``: the real migrations) with one offer, ``--rows``
purchases are applied and committed first, so every index has a crowd's depth. Then each
round applies ``--holds`` new holds with the offers applier's own statement
(``appliers/offers.py: _PURCHASES_APPLY``, the record bytes the purchase script writes)
once per variant, the variants' order rotating from round to round, each in a transaction
that is rolled back (the table is the same for every variant; a ``VACUUM`` after each round
clears what the rollbacks left):

- ``as is``: the schema as migrated;
- ``without <index>``: the same, that index dropped first (in the transaction), one variant
  per index of the table but its primary key; ``without all of them``: every one of those
  dropped (the costs need not add up: an index less leaves the others more of the caches);
- ``keys in byte order``: the indexed text columns (tenant, purchase, offer, user) declared
  ``COLLATE "C"``, as the machine's database collation is not ``C`` (their ids are ASCII, so
  the order is the same; PostgreSQL compares them with ``memcmp`` instead of ``strcoll``).

It prints PostgreSQL's CPU per hold for each variant and its difference from ``as is``: what
that index (or the collation) costs a purchase. Nothing is kept: the variants' changes are
all rolled back, and the schema is dropped at the end. It exits 1 unless every variant
applied every hold. PostgreSQL must run on this machine (its backend's ``/proc`` is read).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg

from benchmarks.common import backend_cpu_s, private_runtime, require_local_backend, stores
from benchmarks.purchase_statement import OFFER_SQL, hold_events, purchase_ids
from dropgate.persistence.appliers.base import raw_rows
from dropgate.persistence.appliers.offers import _PURCHASES_APPLY

AS_IS = "as is"
BYTE_ORDER = "keys in byte order"
NONE = "without all of them"
# the view over the table blocks a column's type change: dropped and made again around it
# (its definition read from the catalog, so it is the migrated one)
_BYTE_ORDER_SQL = """DROP VIEW offer_purchase_history;
ALTER TABLE offer_purchases
    ALTER COLUMN tenant_id TYPE text COLLATE "C", ALTER COLUMN purchase_id TYPE text COLLATE "C",
    ALTER COLUMN offer_id TYPE text COLLATE "C", ALTER COLUMN user_id TYPE text COLLATE "C";
CREATE VIEW offer_purchase_history AS {view}"""


async def _variants(conn: asyncpg.Connection) -> dict[str, str]:
    """Variant name -> the DDL that makes it (run inside the measured round's transaction)."""
    indexes = await conn.fetch(
        """SELECT c.relname FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
            WHERE x.indrelid = 'offer_purchases'::regclass AND NOT x.indisprimary ORDER BY 1""")
    view = await conn.fetchval("SELECT pg_get_viewdef('offer_purchase_history'::regclass)")
    variants = {AS_IS: ""}
    for (name,) in indexes:
        variants[f"without {name}"] = f'DROP INDEX "{name}"'
    variants[NONE] = "; ".join(f'DROP INDEX "{name}"' for (name,) in indexes)
    variants[BYTE_ORDER] = _BYTE_ORDER_SQL.format(view=view)
    return variants


async def main(args: argparse.Namespace) -> None:
    s = stores()
    async with private_runtime(s, persister_enabled=False) as rt, rt.pool.acquire() as conn:
        await conn.execute(OFFER_SQL)
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        require_local_backend(backend, s.database_url, "purchase_indexes")
        collation = await conn.fetchval("SELECT datcollate FROM pg_database WHERE datname = current_database()")
        now = int(time.time() * 1000)
        version = 1
        for start in range(0, args.rows, 10_000):  # the crowd before: committed, indexed
            n = min(10_000, args.rows - start)
            await conn.execute(_PURCHASES_APPLY, raw_rows(hold_events(purchase_ids("ordered", n), now, version)))
            version += n
        await conn.execute("VACUUM ANALYZE offer_purchases")
        variants = await _variants(conn)
        names = list(variants)
        pg_us: dict[str, list[float]] = {name: [] for name in names}
        for rnd in range(args.rounds):
            shift = rnd % len(names)
            for name in names[shift:] + names[:shift]:
                param = raw_rows(hold_events(purchase_ids("ordered", args.holds), int(time.time() * 1000), version))
                version += args.holds
                tr = conn.transaction()
                await tr.start()
                try:
                    if variants[name]:
                        await conn.execute(variants[name])
                    c0 = backend_cpu_s(backend)
                    await conn.execute(_PURCHASES_APPLY, param)
                    pg_us[name].append((backend_cpu_s(backend) - c0) * 1e6 / args.holds)
                    applied = await conn.fetchval("SELECT count(*) FROM offer_purchases")
                    if applied != args.rows + args.holds:
                        raise SystemExit(f"{name}: {applied} purchases, expected {args.rows + args.holds}")
                finally:
                    await tr.rollback()
            await conn.execute("VACUUM offer_purchases")
    base = statistics.median(pg_us[AS_IS])
    print(f"{args.rounds} rounds of {args.holds:,} holds per variant on {args.rows:,} purchases "
          f"(database collation {collation}), PostgreSQL's CPU per hold (medians of the rounds; p25-p75):")
    print("\n| variant | PostgreSQL CPU µs | less than as is, µs |\n| --- | --- | --- |")
    for name in names:
        q = statistics.quantiles(pg_us[name], n=4)
        med = statistics.median(pg_us[name])
        print(f"| {name} | {med:.2f} ({q[0]:.2f}-{q[2]:.2f}) | {'' if name == AS_IS else f'{base - med:.2f}'} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--holds", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=200_000)
    asyncio.run(main(parser.parse_args()))
