"""Hundreds of simultaneous callers on one pool: exact counts, no code twice, PostgreSQL agrees."""

from __future__ import annotations

import asyncio
import random

from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from tests.codes_support import assert_pg_matches_redis, pg_counts, upload_csv
from tests.conftest import Api


async def test_1000_concurrent_reservations_over_a_pool_smaller_than_demand(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    pool = 2_000
    await upload_csv(api, "crowd", "tm", "\n".join(f"P{i:05d}" for i in range(pool)))
    rng = random.Random(3)
    wanted = [rng.randint(1, 5) for _ in range(1_000)]
    assert sum(wanted) > pool  # demand exceeds the pool
    answers = await asyncio.gather(*(
        api.call("POST", "/v1/campaigns/crowd/reservations", json={"type": "tm", "count": n})
        for n in wanted))
    assert all(status == 200 for status, _ in answers)  # a low pool answers fewer, never an error
    handed = [code for _, body in answers for code in body["codes"]]
    assert len(handed) == len(set(handed)) == pool  # every code once, none twice
    assert all(len(body["codes"]) <= n for (_, body), n in zip(answers, wanted, strict=True))
    _, counts = await api.call("GET", "/v1/campaigns/crowd/codes/count?type=tm")
    assert counts == {"available": 0, "reserved": pool, "assigned": 0}

    # concurrently: half the holders assign, the other half release (twice, idempotent)
    holders = [body for _, body in answers if body["codes"]]
    assigning, releasing = holders[::2], holders[1::2]
    results = await asyncio.gather(
        *(api.call("POST", "/v1/campaigns/crowd/assign",
                   json={"codes": b["codes"], "reserve_id": b["reserve_id"]}) for b in assigning),
        *(api.call("POST", "/v1/campaigns/crowd/release",
                   json={"codes": b["codes"], "reserve_id": b["reserve_id"]})
          for b in releasing for _ in range(2)))
    assigned = sum(len(b["codes"]) for b in assigning)
    released = sum(len(b["codes"]) for b in releasing)
    assert sum(body["updated"] for _, body in results) == assigned + released
    _, counts = await api.call("GET", "/v1/campaigns/crowd/codes/count?type=tm")
    assert counts == {"available": released, "reserved": 0, "assigned": assigned}

    # released codes go out again, to new holders only
    again = await asyncio.gather(*(
        runtime.codes.reserve("acme", "crowd", "tm", 5) for _ in range(300)))
    regained = [c for r in again for c in r.codes]
    assert len(regained) == len(set(regained)) == released

    await persister.drain()
    assert await pg_counts(runtime, "acme", "crowd", "tm") == {
        "available": 0, "reserved": released, "assigned": assigned}
    await assert_pg_matches_redis(runtime, "acme", "crowd")


async def test_concurrent_uploads_of_overlapping_files_insert_each_code_once(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    files = [[f"U{(k * 300 + i) % 1000:04d}" for i in range(600)] for k in range(8)]
    answers = await asyncio.gather(*(
        upload_csv(api, "overlap", "tm", "\n".join(codes)) for codes in files))
    assert all(status == 200 for status, _ in answers)
    assert sum(body["inserted"] for _, body in answers) == 1_000
    assert all(body["inserted"] + body["updated"] == 600 for _, body in answers)
    _, counts = await api.call("GET", "/v1/campaigns/overlap/codes/count")
    assert counts == {"available": 1_000, "reserved": 0, "assigned": 0}
    await persister.drain()
    assert await pg_counts(runtime, "acme", "overlap", "tm") == counts
    await assert_pg_matches_redis(runtime, "acme", "overlap")
