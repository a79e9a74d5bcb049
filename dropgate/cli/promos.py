"""``dropgate promos stats CODE --tenant T``: one promo code in Redis and PostgreSQL, side by side.

For each side it shows the counters (``times_used``, ``total_bonus_issued``) next to
the same figures computed from the use records (Redis hash / PostgreSQL rows), and
how many of the code's events are still in the log (not yet persisted: PostgreSQL
is behind by exactly those, which is lag, not drift). Exit status: 0 when both
sides agree (or differ only by pending events), 1 on drift, 2 when the code is
unknown. Reads only.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

import msgspec

from dropgate.cli.common import AddCommand, Invocation
from dropgate.engine.events import parse_entry
from dropgate.errors import NotFound
from dropgate.ids import text
from dropgate.money import format_amount

if TYPE_CHECKING:
    from dropgate.runtime import Runtime

_XRANGE_CHUNK = 1000


def register(add: AddCommand) -> None:
    promos = add("promos", "Inspect promo codes.", run)
    promos_sub = promos.add_subparsers(dest="promos_command", required=True)
    add_stats_arguments(promos_sub.add_parser(
        "stats", help="Redis and PostgreSQL side by side", description="One promo code in Redis and "
        "PostgreSQL, side by side.", epilog=promos.epilog, formatter_class=promos.formatter_class))


async def run(call: Invocation) -> int:
    async with call.runtime() as runtime:
        return await run_stats(runtime, call.args.tenant, call.args.code, as_json=call.args.json)


async def _pending_events(runtime: Runtime, tenant_id: str, code: str) -> tuple[int, int]:
    """(events of this code still in the log, all unpersisted events of its partition)."""
    tk = runtime.keys.tenant(tenant_id)
    entity = f"promo:{tenant_id}:{code}"
    mine, start = 0, "-"
    while True:
        entries: Any = await runtime.redis.xrange(tk.log, min=start, count=_XRANGE_CHUNK) or []
        for entry_id, fields in entries:
            if fields and parse_entry(tk.partition, entry_id, fields).entity == entity:
                mine += 1
        if len(entries) < _XRANGE_CHUNK:
            break
        start = "(" + text(entries[-1][0])
    return mine, int(await runtime.redis.xlen(tk.log))


async def stats(runtime: Runtime, tenant_id: str, code: str) -> dict[str, Any]:
    """Both sides of one promo code; raises NotFound when Redis does not know it."""
    state = await runtime.promos.get(tenant_id, code)
    uses = await runtime.promos.uses(tenant_id, code)
    redis_side = {
        "times_used": state.times_used,
        "total_bonus_issued": state.total_bonus_issued,
        "use_records": len(uses),
        "use_records_bonus": sum(u.bonus_amount for u in uses.values()),
        "active": state.active,
        "version": state.version,
    }
    row = await runtime.pool.fetchrow(
        """SELECT p.times_used, p.total_bonus_issued, p.active, p.version,
                  count(u.use_id) AS n, coalesce(sum(u.bonus_amount), 0) AS bonus
             FROM promo_codes p
             LEFT JOIN promo_code_uses u ON u.tenant_id = p.tenant_id AND u.code = p.code
            WHERE p.tenant_id = $1 AND p.code = $2
            GROUP BY p.tenant_id, p.code""",
        tenant_id, code,
    )
    pg_side: dict[str, Any] | None = None
    if row is not None:
        pg_side = {
            "times_used": row["times_used"],
            "total_bonus_issued": int(row["total_bonus_issued"]),
            "use_records": int(row["n"]),
            "use_records_bonus": int(row["bonus"]),
            "active": row["active"],
            "version": int(row["version"]),
        }
    pending, partition_backlog = await _pending_events(runtime, tenant_id, code)
    problems: list[str] = []
    for name, side in (("redis", redis_side), ("postgresql", pg_side)):
        if side is None:
            continue
        if side["times_used"] != side["use_records"]:
            problems.append(f"{name}: times_used != number of use records")
        if side["total_bonus_issued"] != side["use_records_bonus"]:
            problems.append(f"{name}: total_bonus_issued != sum of use bonuses")
    if pending == 0:
        if pg_side is None:
            problems.append("postgresql: no row although every event is persisted")
        elif any(pg_side[k] != redis_side[k] for k in redis_side):
            problems.append("redis and postgresql differ with no event pending")
    return {
        "tenant_id": tenant_id,
        "code": code,
        "currency": state.currency,
        "redis": redis_side,
        "postgresql": pg_side,
        "pending_events": pending,
        "partition": runtime.keys.tenant(tenant_id).partition,
        "partition_backlog": partition_backlog,
        "drift": problems,
    }


def render(report: dict[str, Any]) -> str:
    """The report as a fixed-width table."""
    cur = report["currency"]
    r, p = report["redis"], report["postgresql"] or {}

    def money(v: Any) -> str:
        return "-" if v is None else format_amount(int(v), cur)

    def plain(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, bool):
            return "yes" if v else "no"
        return str(v)

    rows = [
        ("times_used", plain(r["times_used"]), plain(p.get("times_used"))),
        ("use records", plain(r["use_records"]), plain(p.get("use_records"))),
        ("total_bonus_issued", money(r["total_bonus_issued"]), money(p.get("total_bonus_issued"))),
        ("sum of use bonuses", money(r["use_records_bonus"]), money(p.get("use_records_bonus"))),
        ("active", plain(r["active"]), plain(p.get("active"))),
        ("version", plain(r["version"]), plain(p.get("version"))),
    ]
    w0 = max(len(x[0]) for x in rows)
    w1 = max(len("redis"), *(len(x[1]) for x in rows))
    lines = [f"promo {report['code']} (tenant {report['tenant_id']}, {cur})",
             f"{'':<{w0}}  {'redis':>{w1}}  postgresql"]
    lines += [f"{a:<{w0}}  {b:>{w1}}  {c:>10}" for a, b, c in rows]
    lines.append(f"pending events: {report['pending_events']} of this code "
                 f"({report['partition_backlog']} unpersisted in partition {report['partition']})")
    if report["drift"]:
        lines += ["DRIFT:"] + [f"  {d}" for d in report["drift"]]
    elif report["pending_events"]:
        lines.append("state: consistent; PostgreSQL is behind by the pending events")
    else:
        lines.append("state: in sync")
    return "\n".join(lines)


def add_stats_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dropgate promos stats``."""
    parser.add_argument("code", help="the promo code")
    parser.add_argument("--tenant", required=True, help="tenant id that owns the code")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


async def run_stats(runtime: Runtime, tenant_id: str, code: str, *, as_json: bool = False) -> int:
    """Print the report; the exit status (0 in sync or only pending, 1 drift, 2 unknown)."""
    try:
        report = await stats(runtime, tenant_id, code)
    except NotFound:
        print(f"dropgate: no promo code {code!r} for tenant {tenant_id!r}", file=sys.stderr)
        return 2
    print(msgspec.json.encode(report).decode() if as_json else render(report))
    return 1 if report["drift"] else 0
