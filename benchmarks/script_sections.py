"""Where a script's time goes inside Redis: its sections timed by Redis's own clock.

Redis counts a script's commands under their own names (``INFO commandstats``), which
leaves the Lua between them as one figure (``offers_script``'s "the Lua itself"). This
module instruments a copy of a script's text: at each named place it reads ``TIME``
(microseconds, Redis's clock; one script runs alone on Redis's thread, so between two
reads only this script ran, unless the machine took the core away), and at the end it
appends the readings to a list beside the script's first key (same hash tag: the same
slot on a cluster). The instrumented copy runs in place of the real one, on the same
calls; the real one's answers are unchanged (it returns what it returned).

A section's cost includes its ``TIME`` call (``offers_script`` prints what Redis counted
for the readings, under ``time``, beside the script's other commands). The places are text of the script: when the
script changes so that one is no longer there (or is there twice), ``instrument``
says which, and ``OFFER_PURCHASE_SECTIONS`` needs updating with it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from redis.asyncio import Redis

TICKS_SUFFIX = ":bench:ticks"


@dataclass(frozen=True)
class Section:
    """A place in the script: ``anchor`` (text found exactly once), the reading taken
    before or after it, and what the time since the previous reading was spent on."""

    anchor: str
    name: str
    after: bool = False


# offer_purchase_batch, in the script's order (each reading ends the section it names)
OFFER_PURCHASE_SECTIONS: tuple[Section, ...] = (
    Section("local finishes = cmsgpack.unpack(ARGV[10])\n", "finishes: decode ARGV[10] (cmsgpack)", after=True),
    Section("idem.load(fin_fields)\n",
            "finishes: which are pending, the others' records, idempotency records (ZMSCORE, HMGET x2)",
            after=True),
    Section("-- written before anything else reads them", "finishes: attach sessions, store responses (Lua strings)"),
    Section("dg_hset_fields(KEYS[6], fin_order, fin_raw)\n", "finishes: write the sessions and records (HSET x2)",
            after=True),
    Section("local requests = cmsgpack.unpack(ARGV[9])\n", "finishes: write the idempotency records (HSET)"),
    Section("local requests = cmsgpack.unpack(ARGV[9])\n", "holds: decode ARGV[9] (cmsgpack)", after=True),
    Section("-- each hold appends one event: the backlog bound", "holds: backlog check, the offer's lazy expiry"),
    Section("local function refuse(code, details)", "holds: read the offer and tenant, shared strings"),
    Section("-- each user's units held or owned (after the lazy",
            "holds: read rate limits and idempotency records (HMGET x2)"),
    Section("local units_dirty = {}\n", "holds: read the users' units (HMGET)", after=True),
    Section("if held > 0 then\n", "holds: decide each request, build its record, append its event (XADD)"),
    Section("dg_hset_fields(KEYS[9], rl_order, rl_values)\n", "holds: write the offer and rate limits (HINCRBY, HSET)",
            after=True),
    Section("dg_hset_fields(KEYS[10], units_order, units_of)\n", "holds: write the users' units (HSET)", after=True),
    Section("dg_hset_fields(KEYS[6], record_order, new_records)\n", "holds: write the records (HSET)", after=True),
    Section("  redis.call('ZADD', KEYS[4], 'LT', expires, tenant .. ':' .. offer_id)\nend\n",
            "holds: the offer's holds and the expiry queue (ZADD x2)", after=True),
)
# the script's last lines, replaced whole: the final reading and the answer's encoding
OFFER_PURCHASE_TAIL = ("idem.flush()\nreturn '[' .. table.concat(out, ',') .. ']'\n",
                       "holds: write the idempotency records (HSET, ZADD)", "the answer (JSON)")
_START = "local tenant, offer_id = ARGV[2], ARGV[3]\n"


def _tick(name: str) -> str:
    return f"__tick({name!r})\n"


def instrument(text: str, sections: tuple[Section, ...] = OFFER_PURCHASE_SECTIONS,
               tail: tuple[str, str, str] = OFFER_PURCHASE_TAIL, start: str = _START) -> str:
    """``text`` with a ``TIME`` reading at each section's place."""
    def once(anchor: str) -> None:
        found = text.count(anchor)
        if found != 1:
            raise ValueError(f"the script's text has {found} of {anchor!r} (exactly one expected): "
                             "update the sections in benchmarks/script_sections.py")

    once(start)
    text = text.replace(start, "local __ticks = {}\nlocal function __tick(name)\n  local t = redis.call('TIME')\n"
                        "  __ticks[#__ticks + 1] = name .. '=' .. string.format('%d', t[1] * 1000000 + t[2])\nend\n"
                        + _tick("start") + start)
    for s in sections:
        once(s.anchor)
        text = text.replace(s.anchor, s.anchor + _tick(s.name) if s.after else _tick(s.name) + s.anchor)
    last, write_name, answer_name = tail
    if not text.endswith(last):
        raise ValueError("the script no longer ends as benchmarks/script_sections.py expects: update its tail")
    return text[:-len(last)] + (
        "idem.flush()\n" + _tick(write_name) + "local __answer = '[' .. table.concat(out, ',') .. ']'\n"
        + _tick(answer_name) + f"redis.call('RPUSH', KEYS[1] .. '{TICKS_SUFFIX}', table.concat(__ticks, '\\t'))\n"
        "return __answer\n")


def ticks_key(first_key: str) -> str:
    return first_key + TICKS_SUFFIX


async def collect(redis: Redis, first_key: str, per: int, skip: int = 0) -> dict[str, list[float]]:
    """Each section's µs per ``per`` (a call's purchases) in every call recorded, and
    ``total``; the list is emptied. ``skip``: the first calls left out (warm-up)."""
    key = ticks_key(first_key)
    rows = await redis.lrange(key, skip, -1)
    await redis.delete(key)
    spent: dict[str, list[float]] = {}
    for row in rows:
        readings = [part.rsplit("=", 1) for part in row.decode().split("\t")]
        previous = int(readings[0][1])
        for name, at in readings[1:]:
            spent.setdefault(name, []).append((int(at) - previous) / per)
            previous = int(at)
        spent.setdefault("total", []).append((previous - int(readings[0][1])) / per)
    return spent


def table(spent: dict[str, list[float]]) -> list[str]:
    """Markdown rows: each section's median and 10th percentile over the calls."""
    lines = ["| section | µs per purchase (median of the calls) | p10 |", "| --- | --- | --- |"]
    for name, values in spent.items():
        ordered = sorted(values)
        lines.append(f"| {name} | {statistics.median(ordered):.2f} | {ordered[len(ordered) // 10]:.2f} |")
    return lines
