"""Campaigns as things (v1.1): registry, 404 / UNKNOWN_TYPE, all-or-nothing reservations,
assigned_to, per-code lookup, export; and hundreds of concurrent assigners."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import datetime
from typing import Any

from dropgate.persistence.persister import Persister
from dropgate.persistence.reconcile.runner import reconcile
from dropgate.runtime import Runtime
from tests.conftest import Api
from tests.support.codes import assert_pg_matches_redis, pg_counts, upload_csv


async def test_create_get_patch_and_validation(api: Api, persister: Persister) -> None:
    status, c = await api.call("POST", "/v1/campaigns", json={
        "campaign_id": "spring", "name": "Spring", "types": ["tm", "external"],
        "reservation_ttl_s": 60, "low_watermark": 10})
    assert status == 201, c
    assert (c["types"], c["reservation_ttl_s"], c["low_watermark"]) == (["external", "tm"], 60, 10)
    assert c["counts"] == {t: {"available": 0, "reserved": 0, "assigned": 0} for t in c["types"]}
    status, body = await api.call("POST", "/v1/campaigns", json={"campaign_id": "spring", "types": ["tm"]})
    assert status == 409 and body["code"] == "ALREADY_EXISTS"
    for bad in ({"campaign_id": "x", "types": []}, {"campaign_id": "x", "types": ["TM"]},
                {"campaign_id": "x"}, {"campaign_id": "x", "types": ["tm"], "low_watermark": -1}):
        status, body = await api.call("POST", "/v1/campaigns", json=bad)
        assert status == 400 and body["code"] == "VALIDATION_ERROR", (bad, body)
    status, c = await api.call("PATCH", "/v1/campaigns/spring",
                               json={"types": ["vip"], "low_watermark": None, "name": "S2"})
    assert status == 200 and c["types"] == ["external", "tm", "vip"] and c["low_watermark"] is None
    assert c["name"] == "S2" and c["reservation_ttl_s"] == 60
    status, _ = await api.call("PATCH", "/v1/campaigns/nope", json={"name": "n"})
    assert status == 404
    await upload_csv(api, "spring", "tm", "A1\nA2\nA3\n")
    status, c = await api.call("GET", "/v1/campaigns/spring")
    assert status == 200 and c["counts"]["tm"] == {"available": 3, "reserved": 0, "assigned": 0}
    # the campaign's TTL is the reservations' default
    status, r = await api.call("POST", "/v1/campaigns/spring/reservations", json={"type": "tm", "count": 1})
    assert status == 200
    status, code = await api.call("GET", f"/v1/campaigns/spring/codes/{r['codes'][0]}")
    ttl = datetime.fromisoformat(r["expires_at"]) - datetime.fromisoformat(code["reserved_at"])
    assert ttl.total_seconds() == 60
    await persister.drain()
    status, page = await api.call("GET", "/v1/campaigns")
    assert [c["campaign_id"] for c in page["data"]] == ["spring"]
    assert page["data"][0]["types"] == ["external", "tm", "vip"]


async def test_unknown_campaign_and_type(api: Api) -> None:
    for method, path, body in (
            ("POST", "/v1/campaigns/ghost/reservations", {"type": "tm", "count": 1}),
            ("POST", "/v1/campaigns/ghost/assign", {"codes": ["A"]}),
            ("POST", "/v1/campaigns/ghost/release", {"codes": ["A"]}),
            ("GET", "/v1/campaigns/ghost/codes/count", None),
            ("GET", "/v1/campaigns/ghost/codes", None),
            ("GET", "/v1/campaigns/ghost/codes/export", None),
            ("GET", "/v1/campaigns/ghost/codes/A", None),
            ("GET", "/v1/campaigns/ghost", None)):
        status, answer = await api.call(method, path, json=body)
        assert status == 404 and answer["code"] == "NOT_FOUND", (path, answer)
    await upload_csv(api, "real", "tm", "T1\nT2\n")
    status, answer = await api.call("POST", "/v1/campaigns/real/reservations",
                                    json={"type": "tn", "count": 1})  # misspelt tm
    assert status == 400 and answer["code"] == "UNKNOWN_TYPE" and answer["details"]["types"] == ["tm"]
    status, answer = await api.call("GET", "/v1/campaigns/real/codes/count?type=tn")
    assert status == 400 and answer["code"] == "UNKNOWN_TYPE"
    status, answer = await api.call("POST", "/v1/campaigns/real/assign", json={"codes": ["T1"], "type": "tn"})
    assert status == 400 and answer["code"] == "UNKNOWN_TYPE"
    for path in ("assign", "release"):
        status, answer = await api.call("POST", f"/v1/campaigns/real/{path}", json={"codes": []})
        assert status == 400 and answer["details"]["field"] == "codes", answer
    status, answer = await api.call("GET", "/v1/campaigns/real/codes/count")
    assert answer == {"available": 2, "reserved": 0, "assigned": 0}  # nothing of the above changed


async def test_all_or_nothing_reservations(api: Api) -> None:
    await upload_csv(api, "short", "tm", "\n".join(f"S{i}" for i in range(5)))
    status, answer = await api.call("POST", "/v1/campaigns/short/reservations",
                                    json={"type": "tm", "count": 6, "partial": False})
    assert status == 409 and answer["code"] == "INSUFFICIENT_CODES"
    assert answer["details"] == {"available": 5}
    _, counts = await api.call("GET", "/v1/campaigns/short/codes/count")
    assert counts == {"available": 5, "reserved": 0, "assigned": 0}
    status, answer = await api.call("POST", "/v1/campaigns/short/reservations",
                                    json={"type": "tm", "count": 5, "partial": False})
    assert status == 200 and len(answer["codes"]) == 5
    # the v1 default still answers fewer
    status, answer = await api.call("POST", "/v1/campaigns/short/reservations",
                                    json={"type": "tm", "count": 3})
    assert status == 200 and answer["codes"] == []


async def test_concurrent_all_or_nothing_never_splits(api: Api, runtime: Runtime) -> None:
    await upload_csv(api, "race", "tm", "\n".join(f"R{i}" for i in range(100)))
    results = await asyncio.gather(*(
        api.call("POST", "/v1/campaigns/race/reservations",
                 json={"type": "tm", "count": 3, "partial": False}) for _ in range(50)))
    won = [a for s, a in results if s == 200]
    lost = [a for s, a in results if s == 409]
    assert len(won) == 33 and len(lost) == 17  # 33 x 3 = 99: one code left, never a partial grant
    assert all(len(a["codes"]) == 3 for a in won)
    assert len({c for a in won for c in a["codes"]}) == 99
    assert all(a["code"] == "INSUFFICIENT_CODES" and a["details"]["available"] < 3 for a in lost)


async def test_assigned_to_lookup_list_and_export(api: Api, runtime: Runtime,
                                                  persister: Persister) -> None:
    await upload_csv(api, "who", "tm", "\n".join(f"W{i}" for i in range(6)))
    _, r = await api.call("POST", "/v1/campaigns/who/reservations", json={"type": "tm", "count": 3})
    status, a = await api.call("POST", "/v1/campaigns/who/assign",
                               json={"codes": r["codes"][:2], "assigned_to": "user-7"})
    assert (status, a) == (200, {"in": 2, "updated": 2})
    first = r["codes"][0]
    status, code = await api.call("GET", f"/v1/campaigns/who/codes/{first}")
    assert status == 200 and code["status"] == "assigned" and code["assigned_to"] == "user-7"
    assert code["reserve_id"] == r["reserve_id"] and code["assigned_at"] is not None
    status, code = await api.call("GET", f"/v1/campaigns/who/codes/{r['codes'][2]}")
    assert code["status"] == "reserved" and code["assigned_to"] is None
    status, _ = await api.call("GET", "/v1/campaigns/who/codes/NOPE")
    assert status == 404
    await persister.drain()
    status, page = await api.call("GET", "/v1/campaigns/who/codes?status=assigned")
    assert status == 200 and sorted(c["code"] for c in page["data"]) == sorted(r["codes"][:2])
    assert {c["assigned_to"] for c in page["data"]} == {"user-7"}
    status, page = await api.call("GET", "/v1/campaigns/who/codes?status=available&limit=2")
    assert len(page["data"]) == 2 and page["has_more"]
    response = await api.client.get("/v1/campaigns/who/codes/export", headers=api.service)
    assert response.status == 200 and response.content_type == "text/csv"
    assert response.headers["X-Request-Id"]
    rows = list(csv.reader(io.StringIO(await response.text())))
    assert rows[0] == ["code", "type", "status", "reserve_id", "reserved_at", "assigned_at", "assigned_to"]
    by_code = {row[0]: row for row in rows[1:]}
    assert len(by_code) == 6
    assert by_code[first][2] == "assigned" and by_code[first][6] == "user-7"
    assert by_code[first][5].endswith("Z") and "T" in by_code[first][5]
    response = await api.client.get("/v1/campaigns/who/codes/export?status=reserved",
                                    headers=api.service)
    rows = list(csv.reader(io.StringIO(await response.text())))
    assert [row[0] for row in rows[1:]] == [r["codes"][2]]
    await assert_pg_matches_redis(runtime, "acme", "who")


async def test_hundreds_of_concurrent_assigners_count_exactly(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    await upload_csv(api, "crowd", "tm", "\n".join(f"C{i:04d}" for i in range(1000)))
    _, r = await api.call("POST", "/v1/campaigns/crowd/reservations", json={"type": "tm", "count": 600})
    codes = r["codes"]
    # 300 assigners, each code claimed by two of them: every code is assigned exactly once
    calls: list[Any] = []
    for i in range(300):
        mine = codes[(i * 2) % 600:(i * 2) % 600 + 4]
        calls.append(api.call("POST", "/v1/campaigns/crowd/assign",
                              json={"codes": mine, "assigned_to": f"u{i}"}))
    results = await asyncio.gather(*calls)
    assert all(s == 200 for s, _ in results), [a for s, a in results if s != 200][:3]
    assert sum(a["updated"] for _, a in results) == 600
    _, counts = await api.call("GET", "/v1/campaigns/crowd/codes/count")
    assert counts == {"available": 400, "reserved": 0, "assigned": 600}
    await persister.drain()
    assert await pg_counts(runtime, "acme", "crowd", "tm") == counts
    await assert_pg_matches_redis(runtime, "acme", "crowd")
    owners = await runtime.pool.fetchval(
        "SELECT count(*) FROM campaign_codes WHERE campaign_id = 'crowd' AND assigned_to IS NOT NULL")
    assert owners == 600
    report = await reconcile(runtime, wait_s=0, entities=["codes"])
    assert report.exit_code == 0, report.drifts


async def test_reconcile_agrees_on_created_campaigns_and_staged_uploads(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    await api.call("POST", "/v1/campaigns", json={"campaign_id": "empty", "types": ["tm"]})
    await api.call("POST", "/v1/campaigns", json={"campaign_id": "staged", "types": ["tm"]})
    await api.call("PATCH", "/v1/campaigns/staged", json={"name": "S"})
    data = "".join(f"ST{i:05d}\n" for i in range(25_000))
    status, body = await upload_csv(api, "staged", "tm", data)  # three staged batches
    assert status == 200 and body["inserted"] == 25_000
    status, body = await upload_csv(api, "staged", "tm", data + "bad code!\n")
    assert status == 400
    await persister.drain()
    await assert_pg_matches_redis(runtime, "acme", "staged")
    report = await reconcile(runtime, wait_s=0, entities=["codes"])
    assert report.exit_code == 0, report.drifts
