"""``codes_commit-5.lua``: a staged upload joins the pool by each of the script's ways
(a rename, the smaller set poured into the larger either way, one union of sets of
similar size), and each gives exactly their union."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dropgate.ids import text
from dropgate.persistence.persister import Persister
from dropgate.persistence.reconcile.runner import reconcile
from dropgate.runtime import Runtime
from tests.support.codes import assert_pg_matches_redis


async def _file(codes: list[str]) -> AsyncIterator[bytes]:
    yield "".join(f"{c}\n" for c in codes).encode()


@pytest.mark.parametrize(("pooled", "uploaded"), [
    (0, 45),       # no pool yet: the staged set becomes it
    (300, 45),     # the upload under a third of the pool: its codes move into the pool
    (5000, 1210),  # the same, over several SPOPs of 1,000
    (20, 300),     # the pool under a third: its codes move into the staged set, which becomes the pool
    (1210, 5000),  # the same, over several SPOPs
    (300, 290),    # sizes within 3x: one SUNIONSTORE
])
async def test_a_staged_upload_joins_the_pool_as_their_union(
        runtime: Runtime, persister: Persister, pooled: int, uploaded: int) -> None:
    tenant, campaign = "cm", f"commit{pooled}x{uploaded}"
    await runtime.tenants.create(tenant, name=tenant, status="active", trial_end_ms=None)
    codes = runtime.codes
    before = [f"OLD{i}" for i in range(pooled)]
    if before:
        await codes.upload_batch(tenant, campaign, "tm", before)
    # ten codes repeat pool codes (skipped, not staged); the rest are new
    repeated = before[:10]
    new = [f"NEW{i}" for i in range(uploaded - len(repeated))]
    result = await codes.upload(tenant, campaign, "tm", _file(new + repeated), batch_size=40)
    assert result.inserted == len(new)

    tk = runtime.keys.tenant(tenant)
    available = tk.codes_available(campaign, "tm")
    members = {text(m) for m in await runtime.redis.smembers(available)}
    assert members == set(before) | set(new)
    assert await runtime.redis.ttl(available) == -1  # a staged set's expiry never follows it
    assert not [k async for k in runtime.redis.scan_iter(match=f"{tk.base}:codes:{campaign}:upload:*")]  # staged, seen
    assert (await codes.count(tenant, campaign, "tm")).available == len(members)

    # every code is reservable exactly once, and PostgreSQL agrees
    held = await codes.reserve(tenant, campaign, "tm", len(members) + 5)
    assert sorted(held.codes) == sorted(members)
    await persister.drain()
    await assert_pg_matches_redis(runtime, tenant, campaign)
    report = await reconcile(runtime, wait_s=0, entities=["codes"])
    assert report.exit_code == 0, report.drifts
