"""The five scenarios of the campaign code pools' source document, through the API."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from tests.conftest import Api
from tests.support.codes import assert_pg_matches_redis, pg_counts, upload_csv


async def test_launch_day_100k_upload_5000_reservations_4800_assigned_rest_expire(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    body = "".join(f"LAUNCH{i:06d}\n" for i in range(100_000))
    status, result = await upload_csv(api, "launch", "tm", body)
    assert status == 200, result
    assert result == {"in": 100_000, "inserted": 100_000, "updated": 0, "skipped": 0}
    # 10,000 per batch by default: ten script calls, ten events
    assert await runtime.redis.xlen(runtime.keys.tenant("acme").log) >= 10

    # long enough that a loaded machine still counts the 200 as reserved before they expire
    ttl_s = 10
    answers = await asyncio.gather(*(
        api.call("POST", "/v1/campaigns/launch/reservations",
                 json={"type": "tm", "count": 5, "ttl_s": ttl_s})
        for _ in range(1_000)))
    assert all(status == 200 for status, _ in answers), answers[:3]
    handed = [code for _, body in answers for code in body["codes"]]
    assert len(handed) == 5_000
    assert len(set(handed)) == 5_000  # no code to two callers
    assert len({body["reserve_id"] for _, body in answers}) == 1_000

    # 960 of the 1,000 fans complete the flow: 4,800 codes assigned under their reservations
    completed = [body for _, body in answers[:960]]
    results = await asyncio.gather(*(
        api.call("POST", "/v1/campaigns/launch/assign",
                 json={"codes": body["codes"], "reserve_id": body["reserve_id"]})
        for body in completed))
    assert sum(body["updated"] for _, body in results) == 4_800
    status, counts = await api.call("GET", "/v1/campaigns/launch/codes/count?type=tm")
    earliest = min(datetime.fromisoformat(b["expires_at"]).timestamp() for _, b in answers)
    assert time.time() < earliest, "the machine took longer than the reservation TTL to get here"
    assert counts == {"available": 95_000, "reserved": 200, "assigned": 4_800}

    # the other 40 walk away: their 200 codes expire and count as available again
    latest = max(datetime.fromisoformat(b["expires_at"]).timestamp() for _, b in answers)
    await asyncio.sleep(max(0.0, latest - time.time()) + 0.05)
    status, counts = await api.call("GET", "/v1/campaigns/launch/codes/count?type=tm")
    assert counts == {"available": 95_200, "reserved": 0, "assigned": 4_800}

    await persister.drain()
    assert await pg_counts(runtime, "acme", "launch", "tm") == counts
    await assert_pg_matches_redis(runtime, "acme", "launch")


async def test_reupload_keeps_each_codes_status(api: Api, runtime: Runtime,
                                                persister: Persister) -> None:
    codes = [f"R{i}" for i in range(10)]
    status, result = await upload_csv(api, "re", "tm", "\n".join(codes))
    assert result == {"in": 10, "inserted": 10, "updated": 0, "skipped": 0}
    _, r = await api.call("POST", "/v1/campaigns/re/reservations", json={"type": "tm", "count": 3})
    _, a = await api.call("POST", "/v1/campaigns/re/assign",
                          json={"codes": r["codes"][:1], "reserve_id": r["reserve_id"]})
    assert a == {"in": 1, "updated": 1}

    status, result = await upload_csv(api, "re", "tm", "\n".join([*codes, "R10", "R11", "R3"]))
    assert status == 200
    assert result == {"in": 13, "inserted": 2, "updated": 10, "skipped": 1}
    _, counts = await api.call("GET", "/v1/campaigns/re/codes/count?type=tm")
    assert counts == {"available": 9, "reserved": 2, "assigned": 1}
    # the reservation survived the re-upload: its holder can still assign
    _, a = await api.call("POST", "/v1/campaigns/re/assign",
                          json={"codes": r["codes"][1:], "reserve_id": r["reserve_id"]})
    assert a == {"in": 2, "updated": 2}
    await persister.drain()
    assert await pg_counts(runtime, "acme", "re", "tm") == {"available": 9, "reserved": 0,
                                                          "assigned": 3}
    await assert_pg_matches_redis(runtime, "acme", "re")


async def test_expiry_and_reuse_with_a_new_reserve_id(api: Api, runtime: Runtime,
                                                      persister: Persister) -> None:
    await upload_csv(api, "exp", "tm", "E1\nE2\nE3\n")
    first = await runtime.codes.reserve("acme", "exp", "tm", 3, ttl_ms=150)
    assert sorted(first.codes) == ["E1", "E2", "E3"]
    assert (await runtime.codes.reserve("acme", "exp", "tm", 1)).codes == []  # pool empty
    await asyncio.sleep(0.2)
    # expired: counted as available before anyone reserves again
    _, counts = await api.call("GET", "/v1/campaigns/exp/codes/count?type=tm")
    assert counts == {"available": 3, "reserved": 0, "assigned": 0}

    _, second = await api.call("POST", "/v1/campaigns/exp/reservations",
                               json={"type": "tm", "count": 2})
    assert second["reserve_id"] != first.reserve_id
    assert len(second["codes"]) == 2 and set(second["codes"]) <= {"E1", "E2", "E3"}
    # the first holder lost the codes someone else took ...
    _, a = await api.call("POST", "/v1/campaigns/exp/assign",
                          json={"codes": second["codes"], "reserve_id": first.reserve_id})
    assert a["updated"] == 0
    # ... but may still assign its expired reservation of the one nobody took
    [left] = {"E1", "E2", "E3"} - set(second["codes"])
    _, a = await api.call("POST", "/v1/campaigns/exp/assign",
                          json={"codes": [left], "reserve_id": first.reserve_id})
    assert a == {"in": 1, "updated": 1}
    _, a = await api.call("POST", "/v1/campaigns/exp/assign",
                          json={"codes": second["codes"], "reserve_id": second["reserve_id"]})
    assert a == {"in": 2, "updated": 2}
    _, counts = await api.call("GET", "/v1/campaigns/exp/codes/count?type=tm")
    assert counts == {"available": 0, "reserved": 0, "assigned": 3}
    await persister.drain()
    await assert_pg_matches_redis(runtime, "acme", "exp")


async def test_two_concurrent_reservers_over_a_pool_of_15(api: Api, runtime: Runtime) -> None:
    await upload_csv(api, "fifteen", "tm", "\n".join(f"F{i}" for i in range(15)))
    (s1, a), (s2, b) = await asyncio.gather(
        api.call("POST", "/v1/campaigns/fifteen/reservations", json={"type": "tm", "count": 10}),
        api.call("POST", "/v1/campaigns/fifteen/reservations", json={"type": "tm", "count": 10}))
    assert s1 == s2 == 200
    assert sorted([len(a["codes"]), len(b["codes"])]) == [5, 10]  # both served
    assert not set(a["codes"]) & set(b["codes"])
    assert set(a["codes"]) | set(b["codes"]) == {f"F{i}" for i in range(15)}
    _, c = await api.call("POST", "/v1/campaigns/fifteen/reservations", json={"type": "tm", "count": 1})
    assert c["codes"] == []


async def test_two_types_are_kept_apart(api: Api, runtime: Runtime, persister: Persister) -> None:
    await upload_csv(api, "types", "tm", "\n".join(f"TM{i}" for i in range(6)))
    await upload_csv(api, "types", "external", "\n".join(f"EX{i}" for i in range(4)))
    _, tm = await api.call("POST", "/v1/campaigns/types/reservations", json={"type": "tm", "count": 10})
    assert sorted(tm["codes"]) == [f"TM{i}" for i in range(6)]
    _, ex = await api.call("POST", "/v1/campaigns/types/reservations",
                           json={"type": "external", "count": 3})
    assert len(ex["codes"]) == 3 and all(c.startswith("EX") for c in ex["codes"])
    # a type filter leaves the other type's codes alone
    _, rel = await api.call("POST", "/v1/campaigns/types/release",
                            json={"codes": tm["codes"] + ex["codes"], "type": "external"})
    assert rel == {"in": 9, "updated": 3}
    _, counts = await api.call("GET", "/v1/campaigns/types/codes/count?type=tm")
    assert counts == {"available": 0, "reserved": 6, "assigned": 0}
    _, counts = await api.call("GET", "/v1/campaigns/types/codes/count?type=external")
    assert counts == {"available": 4, "reserved": 0, "assigned": 0}
    _, counts = await api.call("GET", "/v1/campaigns/types/codes/count")
    assert counts == {"available": 4, "reserved": 6, "assigned": 0}
    # without a type, assign finds each code's own type
    _, a = await api.call("POST", "/v1/campaigns/types/assign", json={"codes": tm["codes"][:2]})
    assert a == {"in": 2, "updated": 2}
    _, counts = await api.call("GET", "/v1/campaigns/types/codes/count?type=tm&status=assigned")
    assert counts == {"assigned": 2}
    await persister.drain()
    assert await pg_counts(runtime, "acme", "types", "tm") == {"available": 0, "reserved": 4,
                                                             "assigned": 2}
    assert await pg_counts(runtime, "acme", "types", "external") == {"available": 4, "reserved": 0,
                                                                   "assigned": 0}
    await assert_pg_matches_redis(runtime, "acme", "types")
