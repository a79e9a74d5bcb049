"""Hundreds of simultaneous callers on one pool: exact counts, no code twice, PostgreSQL agrees."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from dropgate.engine.codes import UploadResult
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from tests.conftest import Api
from tests.support.codes import assert_pg_matches_redis, pg_counts, upload_csv


@pytest.mark.cluster
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


async def test_concurrent_multi_batch_uploads_with_repeats_count_exactly_while_codes_are_reserved(
        runtime: Runtime, persister: Persister) -> None:
    """16 uploads of overlapping files, each in batches of 50 with codes repeated across its
    own batches, beside 300 reservations of the same pool: every upload's counts are exact
    (repeats skipped even when a reservation rewrote the code's record in between)."""
    await runtime.tenants.create("mb", name="mb", status="active", trial_end_ms=None)
    await runtime.codes.save_campaign("mb", "multi", create=True, types=["tm"])  # v1.1: reserve needs it
    rng = random.Random(11)
    files = []
    for k in range(16):
        distinct = [f"M{(k * 97 + i) % 1500:04d}" for i in range(400)]
        files.append(distinct + rng.sample(distinct, 150))  # 150 repeats, mostly in later batches
        rng.shuffle(files[-1])

    async def upload(codes: list[str]) -> UploadResult:
        data = ("\n".join(codes) + "\n").encode()

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(data), 512):
                yield data[i:i + 512]
                await asyncio.sleep(0)

        return await runtime.codes.upload("mb", "multi", "tm", chunks(), batch_size=50)

    async def reserve() -> list[str]:
        await asyncio.sleep(rng.random() * 0.2)
        return (await runtime.codes.reserve("mb", "multi", "tm", rng.randint(1, 3))).codes

    results = await asyncio.gather(*(upload(f) for f in files), *(reserve() for _ in range(300)))
    uploads = [r for r in results if isinstance(r, UploadResult)]
    handed = [c for r in results if isinstance(r, list) for c in r]
    universe = {c for f in files for c in f}
    for result, codes in zip(uploads, files, strict=True):
        assert result.lines == len(codes) == 550
        assert result.skipped == 150, result  # exactly the file's own repeats
        assert result.inserted + result.updated == 400, result
    assert sum(r.inserted for r in uploads) == len(universe)  # each code inserted by one upload
    assert len(handed) == len(set(handed)) and set(handed) <= universe
    counts = await runtime.codes.count("mb", "multi", "tm")
    assert (counts.available, counts.reserved, counts.assigned) == (len(universe) - len(handed), len(handed), 0)
    await persister.drain()
    await assert_pg_matches_redis(runtime, "mb", "multi")
