"""Assign / release / reserve / count semantics of campaign code pools, and their scripts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from dropgate.engine.scripts import sources
from dropgate.errors import ERRORS, PersistenceLagging
from dropgate.ids import text
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime, open_runtime
from dropgate.settings import Settings
from tests.conftest import Api
from tests.support.codes import assert_pg_matches_redis, pg_counts, redis_rows, upload_csv


async def reserve(api: Api, campaign: str, count: int, type: str = "tm") -> dict[str, object]:
    status, body = await api.call("POST", f"/v1/campaigns/{campaign}/reservations",
                                  json={"type": type, "count": count})
    assert status == 200, body
    return dict(body)


async def test_release_is_idempotent_and_never_touches_assigned_codes(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    await upload_csv(api, "rel", "tm", "\n".join(f"R{i}" for i in range(6)))
    r = await reserve(api, "rel", 4)
    codes = list(r["codes"])  # type: ignore[call-overload]
    await api.call("POST", "/v1/campaigns/rel/assign", json={"codes": codes[:1]})
    _, rel = await api.call("POST", "/v1/campaigns/rel/release", json={"codes": codes})
    assert rel == {"in": 4, "updated": 3}  # the assigned one stays assigned
    _, rel = await api.call("POST", "/v1/campaigns/rel/release", json={"codes": codes})
    assert rel == {"in": 4, "updated": 0}  # twice: nothing more
    _, counts = await api.call("GET", "/v1/campaigns/rel/codes/count?type=tm")
    assert counts == {"available": 5, "reserved": 0, "assigned": 1}
    # a released code cannot be assigned by its former holder any more
    _, a = await api.call("POST", "/v1/campaigns/rel/assign",
                          json={"codes": codes[1:], "reserve_id": r["reserve_id"]})
    assert a == {"in": 3, "updated": 0}
    # neither never-reserved nor unknown codes are assigned
    never = sorted({f"R{i}" for i in range(6)} - set(codes))
    _, a = await api.call("POST", "/v1/campaigns/rel/assign", json={"codes": [*never, "NOPE"]})
    assert a == {"in": 3, "updated": 0}
    await persister.drain()
    assert await pg_counts(runtime, "acme", "rel", "tm") == counts
    await assert_pg_matches_redis(runtime, "acme", "rel")


async def test_reserve_id_scopes_assign_and_release(api: Api) -> None:
    await upload_csv(api, "rid", "tm", "\n".join(f"Q{i}" for i in range(4)))
    a = await reserve(api, "rid", 2)
    b = await reserve(api, "rid", 2)
    both = [*a["codes"], *b["codes"]]  # type: ignore[misc]
    _, res = await api.call("POST", "/v1/campaigns/rid/assign",
                            json={"codes": both, "reserve_id": a["reserve_id"]})
    assert res == {"in": 4, "updated": 2}  # only a's codes
    _, res = await api.call("POST", "/v1/campaigns/rid/release",
                            json={"codes": both, "reserve_id": a["reserve_id"]})
    assert res == {"in": 4, "updated": 0}  # b's codes are not a's to release
    _, res = await api.call("POST", "/v1/campaigns/rid/release",
                            json={"codes": both, "reserve_id": b["reserve_id"]})
    assert res == {"in": 4, "updated": 2}
    _, counts = await api.call("GET", "/v1/campaigns/rid/codes/count")
    assert counts == {"available": 2, "reserved": 0, "assigned": 2}


async def test_codes_of_another_campaign_or_tenant_are_not_touched(api: Api) -> None:
    await upload_csv(api, "one", "tm", "S1\nS2\n")
    await upload_csv(api, "two", "tm", "S1\nS2\n")  # the same codes in another campaign
    r = await reserve(api, "one", 2)
    _, res = await api.call("POST", "/v1/campaigns/two/assign", json={"codes": r["codes"]})
    assert res == {"in": 2, "updated": 0}
    _, counts = await api.call("GET", "/v1/campaigns/two/codes/count")
    assert counts == {"available": 2, "reserved": 0, "assigned": 0}
    other = await api.new_tenant("other")
    headers = {"Authorization": f"Bearer {other}"}
    status, counts = await api.call("GET", "/v1/campaigns/one/codes/count", headers=headers)
    assert status == 404 and counts["code"] == "NOT_FOUND"  # another tenant's campaign (v1.1)
    status, res = await api.call("POST", "/v1/campaigns/one/release",
                                 json={"codes": r["codes"]}, headers=headers)
    assert status == 404, res
    # an admin acts on a tenant's pool with X-Tenant-Id
    _, counts = await api.call("GET", "/v1/campaigns/one/codes/count?status=reserved",
                               headers=api.as_admin_of("acme"))
    assert counts == {"reserved": 2}


async def test_expired_reservations_return_lazily_inside_reserve(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    await upload_csv(api, "lazy", "tm", "\n".join(f"Z{i}" for i in range(10)))
    old = await runtime.codes.reserve("acme", "lazy", "tm", 8, ttl_ms=100)
    reserved_key = runtime.keys.tenant("acme").codes_reserved("lazy", "tm")
    await asyncio.sleep(0.15)
    assert await runtime.redis.zcard(reserved_key) == 8  # nothing swept them: no cron
    new = await runtime.codes.reserve("acme", "lazy", "tm", 1)
    assert len(new.codes) == 1
    assert [text(c) for c in await runtime.redis.zrange(reserved_key, 0, -1)] == new.codes
    # release of an expired reservation counts the reservation it removes
    rest = [c for c in old.codes if c not in new.codes]
    changed = await runtime.codes.release("acme", "lazy", rest, reserve_id=old.reserve_id)
    assert changed.updated == len(rest)
    assert (await runtime.codes.release("acme", "lazy", rest)).updated == 0
    await persister.drain()
    await assert_pg_matches_redis(runtime, "acme", "lazy")


async def test_request_validation(api: Api) -> None:
    for body in ({"type": "tm", "count": 0}, {"type": "TM", "count": 1},
                 {"type": "tm", "count": 10_001}, {"type": "tm"},
                 {"type": "tm", "count": 1, "extra": True}):
        status, answer = await api.call("POST", "/v1/campaigns/v/reservations", json=body)
        assert status == 400, (body, answer)
    status, answer = await api.call("POST", "/v1/campaigns/v/assign", json={"codes": ["bad code"]})
    assert status == 400
    status, answer = await api.call("GET", "/v1/campaigns/v/codes/count?status=sold")
    assert status == 400 and answer["details"]["field"] == "status"
    status, answer = await api.call("GET", "/v1/campaigns/v/codes/count?type=Bad")
    assert status == 400
    status, answer = await api.call("GET", "/v1/campaigns/v/codes/count")
    assert status == 404 and answer["code"] == "NOT_FOUND"  # v1.1: an unknown campaign
    status, answer = await api.call("POST", "/v1/campaigns", json={"campaign_id": "v", "types": ["tm"]})
    assert status == 201, answer
    status, answer = await api.call("GET", "/v1/campaigns/v/codes/count")
    assert (status, answer) == (200, {"available": 0, "reserved": 0, "assigned": 0})
    status, answer = await api.call("POST", "/v1/campaigns/v/reservations",
                                    json={"type": "tm", "count": 3})
    assert status == 200 and answer["codes"] == []  # an empty pool answers none, not an error


async def test_one_event_per_upload_batch(runtime: Runtime, api: Api) -> None:
    log = runtime.keys.tenant("acme").log
    before = await runtime.redis.xlen(log)
    big = "".join(f"B{i}\n" for i in range(25_000))
    _, body = await upload_csv(api, "events", "tm", big)
    assert body["inserted"] == 25_000
    entries = await runtime.redis.xrange(log)
    uploaded = [f for _, f in entries if f[b"t"] == b"codes.uploaded"]
    committed = [f for _, f in entries if f[b"t"] == b"codes.committed"]
    # 10k + 10k + 5k staged, then one commit makes them live at once
    assert len(uploaded) == 3 and len(committed) == 1
    assert await runtime.redis.xlen(log) - before == 4


async def test_writes_refused_while_persistence_lags(
        isolated: str, make_settings: Callable[..., Settings]) -> None:
    async with open_runtime(make_settings(max_backlog=2), run_persister=False) as rt:
        codes = rt.codes
        await codes.upload_batch("acme", "lag", "tm", ["L1", "L2", "L3"])
        await codes.reserve("acme", "lag", "tm", 1)
        with pytest.raises(PersistenceLagging):
            await codes.reserve("acme", "lag", "tm", 1)
        with pytest.raises(PersistenceLagging):
            await codes.upload_batch("acme", "lag", "tm", ["L4"])
        # coalesced callers each get the refusal
        refused = await asyncio.gather(*(codes.reserve("acme", "lag", "tm", 1) for _ in range(20)),
                                       return_exceptions=True)
        assert all(isinstance(r, PersistenceLagging) for r in refused)
        assert (await codes.count("acme", "lag", "tm")).available == 2


def test_script_headers_match_files() -> None:
    for name, src in sources().items():
        if not name.startswith("codes_"):
            continue
        assert src.declared_keys == tuple(range(1, src.num_keys + 1)), name
        assert all(code in ERRORS for code in src.declared_errors), name


async def test_openapi_covers_the_code_pool_routes(api: Api) -> None:
    status, doc = await api.call("GET", "/openapi.json", headers={})
    assert status == 200
    paths = doc["paths"]
    upload = paths["/v1/campaigns/{campaign_id}/codes"]["post"]
    assert set(upload["requestBody"]["content"]) == {"application/json", "text/csv",
                                                     "multipart/form-data"}
    assert {"404", "409", "413", "502"} <= set(upload["responses"])
    for path in ("reservations", "assign", "release"):
        assert "post" in paths[f"/v1/campaigns/{{campaign_id}}/{path}"]
    assert "get" in paths["/v1/campaigns/{campaign_id}/codes/count"]


async def test_one_call_decides_its_reservations_in_order_as_if_alone(runtime: Runtime) -> None:
    """``codes_reserve`` takes the codes of a whole batch with one SPOP: each reservation
    still gets what it would alone, in order (partial ones what is left, all-or-nothing
    ones all or nothing, ``short`` = the codes left at their turn), never a code twice."""
    from dropgate.engine.codes import _Ask

    await runtime.tenants.create("tb", name="tb", status="active", trial_end_ms=None)
    await runtime.codes.upload_batch("tb", "cb", "tm", [f"B{i}" for i in range(10)])
    asks = [_Ask("r1", 3), _Ask("r2", 4, partial=False), _Ask("r3", 4, partial=False),
            _Ask("r4", 2), _Ask("r5", 5), _Ask("r6", 1, partial=False), _Ask("r7", 2)]
    answers = await runtime.codes._reserve_batch(("tb", "cb", "tm", 0), asks)
    assert [(a.reserve_id, len(a.codes), a.short) for a in answers] == [
        ("r1", 3, None), ("r2", 4, None), ("r3", 0, 3), ("r4", 2, None), ("r5", 1, None),
        ("r6", 0, 0), ("r7", 0, None)]
    taken = [c for a in answers for c in a.codes]
    assert sorted(taken) == sorted(f"B{i}" for i in range(10))  # each once
    rows = await redis_rows(runtime, "tb", "cb")
    for a in answers:
        for code in a.codes:
            assert rows[code][1:3] == ("reserved", a.reserve_id), rows[code]
    counts = await runtime.codes.count("tb", "cb", "tm")
    assert (counts.available, counts.reserved) == (0, 10)
