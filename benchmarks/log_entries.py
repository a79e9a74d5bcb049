"""What one log entry per script call would save against one entry per event, on paper first.

    .venv/bin/python -m benchmarks.log_entries [--rounds 5] [--calls 300] [--batch 64]

Why: every hot script appends one stream entry per request it decides (``dg_emit``), so a
batch of 64 purchases is 64 ``XADD`` calls inside the script, and the persister reads,
parses and acknowledges 64 entries. Folding a call's events into one entry changes the
log's format, the persister's unit of progress, the backlog bound's unit and the outbound
webhooks' event ids; before building that, this measures the most it can save.

Both layouts run on a ``redis-server`` of this run's own (127.0.0.1, a free port, no
persistence, stopped by its pid), so that ``INFO`` counts their work only, with the same
arguments: ``--batch`` purchase records of a real purchase's shape (about 330 bytes),
built by the script from the same pieces the purchase script uses.

- ``per_event``: ``XADD`` per record, fields ``t e v d`` (dropgate's log today);
- ``per_call``: one ``XADD`` per call, fields ``t n d``, ``d`` the records as one JSON array.

Per round, both layouts alternate: ``--calls`` script calls each (the write side: Redis CPU
and ``EVALSHA`` time per event), then the persister's read side over what they wrote: an
``XREADGROUP`` of about 1,000 events, each entry parsed into its typed payload
(``parse_entry`` for ``per_event``, the array decoded into the same structs for
``per_call``), and an ``XACK`` of the entries read. Printed: medians over the rounds of
Redis CPU µs per event (write and read) and this process's CPU µs per event (read).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
from redis.asyncio import Redis

from benchmarks.redis_costs import private_redis
from benchmarks.storecpu import redis_cpu_s
from dropgate.engine.events import OfferPurchase, parse_entry

# A purchase record as offer_purchase_batch-11.lua builds it: the per-hold head, the
# call's shared tail (tenant, offer, status, expiry, timestamps).
WRITE = """
local n = tonumber(ARGV[1])
local tail = ARGV[2]
local per_call = ARGV[3] == '1'
local records = {}
for i = 1, n do
  local pid = string.format('pur_01JEXAMPLE%012d', i)
  local record = '{"purchase_id":' .. cjson.encode(pid) .. ',"user_id":' .. cjson.encode('user-' .. i)
    .. string.format(',"quantity":%d,"amount_minor":%d,"offer_version":%d', 1, 1999, i) .. tail
  if per_call then
    records[#records + 1] = record
  else
    redis.call('XADD', KEYS[1], '*', 't', 'offer.purchase', 'e', 'purchase:tenant-a:' .. pid, 'v', '1', 'd', record)
  end
end
if per_call then
  local array = '[' .. table.concat(records, ',') .. ']'
  redis.call('XADD', KEYS[1], '*', 't', 'offer.purchase', 'n', tostring(n), 'd', array)
end
return n
"""
_TAIL = (',"tenant_id":"tenant-a","offer_id":"offer-launch-0001","status":"pending","units":"held",'
         '"refunded_minor":0,"currency":"eur","hold_expires_ms":1765000000000,"created_ms":1764999100000,'
         '"updated_ms":1764999100000,"version":1}')
_ARRAY = msgspec.json.Decoder(list[OfferPurchase], strict=False)
LAYOUTS = ("per_event", "per_call")


async def evalsha_usec(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("usec", 0))


async def write(redis: Redis, sha: str, stream: str, layout: str, calls: int, batch: int) -> dict[str, float]:
    cpu0, usec0 = await redis_cpu_s(redis), await evalsha_usec(redis)
    for _ in range(calls):
        await redis.evalsha(sha, 1, stream, batch, _TAIL, "1" if layout == "per_call" else "0")
    cpu1, usec1 = await redis_cpu_s(redis), await evalsha_usec(redis)
    events = calls * batch
    return {"write_redis_cpu": (cpu1 - cpu0) * 1e6 / events, "write_evalsha": (usec1 - usec0) / events}


async def read(redis: Redis, stream: str, layout: str, batch: int, expected: int) -> dict[str, float]:
    """Read everything back as the persister does: ~1,000 events per XREADGROUP, parse, XACK."""
    await redis.xgroup_create(stream, "g", id="0")
    per_read = 1000 if layout == "per_event" else max(1, 1000 // batch)
    events, own_cpu, cpu0 = 0, 0.0, await redis_cpu_s(redis)
    while True:
        t0 = time.process_time()
        reply: Any = await redis.xreadgroup("g", "c", {stream: ">"}, count=per_read)
        if not reply:
            break
        entries = reply[0][1]
        if layout == "per_event":
            parsed = [parse_entry(0, eid, fields).data for eid, fields in entries]
        else:
            parsed = [p for _, fields in entries for p in _ARRAY.decode(fields[b"d"])]
        if not all(isinstance(p, OfferPurchase) for p in parsed):  # what is timed must be the real parse
            raise SystemExit(f"{layout}: an entry did not decode into a purchase: {parsed[:1]}")
        events += len(parsed)
        await redis.xack(stream, "g", *[eid for eid, _ in entries])
        own_cpu += time.process_time() - t0
    cpu1 = await redis_cpu_s(redis)
    if events != expected:
        raise SystemExit(f"{layout}: read {events} events back, wrote {expected}")
    return {"read_redis_cpu": (cpu1 - cpu0) * 1e6 / events, "read_own_cpu": own_cpu * 1e6 / events}


async def run(args: argparse.Namespace) -> None:
    results: dict[str, list[dict[str, float]]] = {layout: [] for layout in LAYOUTS}
    with tempfile.TemporaryDirectory(prefix="dropgate-log-entries-") as tmp:
        async with private_redis(Path(tmp), "log-entries") as (_url, redis, _pid):
            sha = await redis.script_load(WRITE)
            for rnd in range(args.rounds):
                for layout in (LAYOUTS if rnd % 2 == 0 else LAYOUTS[::-1]):
                    stream = f"bench:log:{layout}:{rnd}"
                    row = await write(redis, sha, stream, layout, args.calls, args.batch)
                    row["entries"] = float(await redis.xlen(stream))
                    row["memory"] = float((await redis.memory_usage(stream)) or 0) / (args.calls * args.batch)
                    row.update(await read(redis, stream, layout, args.batch, args.calls * args.batch))
                    await redis.delete(stream)
                    results[layout].append(row)
                    print(f"round {rnd + 1} {layout:9s} " + "  ".join(f"{k} {v:.2f}" for k, v in row.items()),
                          flush=True)
    columns = [("write_evalsha", "EVALSHA µs per event"), ("write_redis_cpu", "Redis CPU µs per event, writing"),
               ("read_redis_cpu", "Redis CPU µs per event, reading and acking"),
               ("read_own_cpu", "reader's CPU µs per event"), ("memory", "stream bytes per event"),
               ("entries", "stream entries per round")]
    print(f"\nmedians of {args.rounds} rounds, {args.calls} calls of {args.batch} events per layout and round\n")
    print("| | " + " | ".join(LAYOUTS) + " | per_call / per_event |")
    print("| --- | --- | --- | --- |")
    for key, title in columns:
        a, b = (statistics.median(r[key] for r in results[layout]) for layout in LAYOUTS)
        print(f"| {title} | {a:.2f} | {b:.2f} | {b / a if a else float('nan'):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
