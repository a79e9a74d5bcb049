"""Where PostgreSQL's time goes in the offers persister's statement: ``EXPLAIN ANALYZE`` of it.

    .venv/bin/python -m benchmarks.purchase_statement [--holds 1000] [--warmup 3] [--runs 3]
    .venv/bin/python -m benchmarks.purchase_statement --ids random --undo 18,19 --warmup 0 --runs 300 --every 50

On a fresh schema (``private_runtime``) with one offer, the statement the purchases' applier
sends per round (``appliers/offers.py: _PURCHASES_APPLY``) runs on ``--holds`` new holds of
that offer, committed as the persister's are, so each run inserts into a growing table; the
first ``--warmup`` runs are not printed (``--every N``: every Nth, with the median execution of
the N before it). The purchase ids are ``new_purchase_id``'s, in time order, or with ``--ids
random`` the random ones used before (users' ids are random either way); ``--undo 18,19`` puts
back what those migrations took away (an index, the per-row key). Per run it prints
the execution time and its parts: the ``json_to_recordset`` scan, the purchases' insert (its
node's time less the scan's), the history insert (the CTE), and each trigger (the counters,
and since 0019 the offers' check per statement; before it, the key's check per row). It tells
which part a cheaper statement must cut; the persister's whole drain is
``benchmarks.persister_breakdown``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
from typing import Any

from benchmarks.common import private_runtime, stores
from dropgate.engine.events import Event, OfferPurchase, parse_entry
from dropgate.engine.offers import new_purchase_id
from dropgate.ids import new_id, random_hex
from dropgate.persistence.appliers import offers as offers_applier
from dropgate.persistence.appliers.base import raw_rows

_TIME = re.compile(r"actual time=[\d.]+\.\.([\d.]+)")


def _parts(plan: list[str]) -> dict[str, float]:
    """The plan's lines -> ms per part (a node's total time is the second 'actual time')."""
    parts: dict[str, float] = {}
    node = ""
    for line in plan:
        text = line.strip().removeprefix("->").strip()
        if text.startswith("Insert on offer_purchases "):
            node = "insert"
        elif text.startswith("Function Scan on json_to_recordset"):
            node = "json"
        elif text.startswith("Insert on offer_purchase_changes"):
            node = "history"
        else:
            node = ""
        found = _TIME.search(text)
        if node and found and node not in parts:
            parts[node] = float(found.group(1))
        if text.startswith("Trigger"):
            name = text.split(" on offer_purchases")[0].removeprefix("Trigger ")
            parts["trigger " + name] = float(text.split("time=")[1].split()[0])
        if text.startswith("Execution Time"):
            parts["execution"] = float(text.split(":")[1].split()[0])
    if "insert" in parts and "json" in parts:  # the insert node's time includes the scan under it
        parts["insert"] -= parts["json"]
    return parts


def purchase_ids(style: str, n: int) -> list[str]:
    """``n`` purchase ids of a style: ``random`` (``new_id``: 80 random bits, the ids before
    ``new_purchase_id``, each on a random leaf of every index it keys) or ``ordered``
    (``new_purchase_id``: the time first, so new rows land at the right edge)."""
    if style == "random":
        return [new_id("pu_") for _ in range(n)]
    return [new_purchase_id() for _ in range(n)]


OFFER_SQL = """INSERT INTO offers (tenant_id, offer_id, event_id, name, price_minor, currency,
                                   inventory_total, max_per_order, active, created_at, version)
               VALUES ('t1', 'a', 'drop', 'a', 500, 'usd', 1000000000, 3, true, now(), 1)"""


def hold_events(ids: list[str], now_ms: int, first_version: int) -> list[Event[Any]]:
    """New holds of offer ``a`` of tenant ``t1`` (``OFFER_SQL``), one per id, as the persister
    reads their events: each record's bytes as the purchase script writes them
    (``offer_purchase_batch-11.lua``: its keys, in its order, none of what a hold has not got
    yet), parsed by ``parse_entry``. The offer's version grows by one a hold from
    ``first_version``."""
    events = []
    for i, pid in enumerate(ids):
        raw = (f'{{"purchase_id":"{pid}","user_id":"u{random_hex(6)}","quantity":1,"amount_minor":500,'
               f'"offer_version":{first_version + i},"tenant_id":"t1","offer_id":"a","status":"pending",'
               f'"units":"held","refunded_minor":0,"currency":"usd","hold_expires_ms":{now_ms + 600_000},'
               f'"created_ms":{now_ms},"updated_ms":{now_ms},"version":1}}').encode()
        event = parse_entry(0, f"1-{first_version + i}", {b"t": b"offer.purchase",
                                                         b"e": f"purchase:t1:{pid}".encode(), b"v": b"1", b"d": raw})
        if not isinstance(event.data, OfferPurchase):
            raise ValueError(f"a hold's record did not decode: {event.data}")
        events.append(event)
    return events


def new_holds(ids: list[str], now_ms: int, first_version: int) -> str:
    """The applier's parameter for these holds (``raw_rows``: their events' bytes)."""
    return raw_rows(hold_events(ids, now_ms, first_version))


# what each later migration of offer_purchases took away, put back (``--undo``): the
# statement measured on the schema before it, in a run of today's code
UNDO = {
    18: "CREATE INDEX offer_purchases_by_user ON offer_purchases (tenant_id, user_id, created_at DESC)",
    19: """DROP TRIGGER offer_purchases_offer_exists_inserted ON offer_purchases;
           DROP TRIGGER offer_purchases_offer_exists_updated ON offer_purchases;
           ALTER TABLE offer_purchases ADD CONSTRAINT offer_purchases_tenant_id_offer_id_fkey
               FOREIGN KEY (tenant_id, offer_id) REFERENCES offers (tenant_id, offer_id)""",
}


async def main(holds: int, warmup: int, runs: int, ids: str = "ordered", every: int = 1,
               undo: tuple[int, ...] = ()) -> None:
    async with private_runtime(stores(), persister_enabled=False) as rt:
        async with rt.pool.acquire() as conn:
            for version in undo:
                await conn.execute(UNDO[version])
            await conn.execute(OFFER_SQL)
            now = int(time.time() * 1000)
            totals: list[float] = []
            for r in range(warmup + runs):
                rows: Any = await conn.fetch("EXPLAIN (ANALYZE, TIMING ON) " + offers_applier._PURCHASES_APPLY,
                                             new_holds(purchase_ids(ids, holds), now, r * holds + 1))
                if r < warmup:
                    continue
                parts = _parts([row[0] for row in rows])
                totals.append(parts.get("execution", 0.0))
                if (r - warmup + 1) % every:
                    continue
                print(f"run {r - warmup + 1}: {holds:,} holds, median execution of the last {every} "
                      f"{statistics.median(totals[-every:]):.1f} ms; "
                      + ", ".join(f"{name} {ms:.1f} ms" for name, ms in parts.items()), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--holds", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ids", choices=("random", "ordered"), default="ordered",
                        help="the purchase ids: new_purchase_id's (ordered) or the random ones before")
    parser.add_argument("--every", type=int, default=1, help="print every Nth run (the table grows by each)")
    parser.add_argument("--undo", default="", help=f"migrations to take back, comma-separated, of {sorted(UNDO)}: "
                        "the schema before them")
    args = parser.parse_args()
    undo = tuple(int(v) for v in args.undo.split(",") if v)
    if any(v not in UNDO for v in undo):
        parser.error(f"--undo takes {', '.join(map(str, sorted(UNDO)))}, not {args.undo}")
    asyncio.run(main(args.holds, args.warmup, args.runs, args.ids, args.every, undo))
