"""Real CSV uploads (v1.1) and all-or-nothing uploads (#21): headers, quoted fields, BOM,
CRLF, multipart/form-data, ``dropgate codes upload s3://``, and a file refused at its
last line leaving nothing live, in Redis or in PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from dropgate.cli.codes import upload_file
from dropgate.errors import ValidationError
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime, open_runtime
from dropgate.settings import Settings
from tests.conftest import Api
from tests.engine.test_codes_upload import S3, s3  # noqa: F401  (the moto server fixture)
from tests.support.codes import assert_pg_matches_redis, upload_csv


async def counts(api: Api, campaign: str, type: str | None = None) -> dict[str, int] | None:
    q = f"?type={type}" if type else ""
    status, body = await api.call("GET", f"/v1/campaigns/{campaign}/codes/count{q}")
    if status == 404:
        return None
    assert status == 200, body
    return dict(body)


async def post_csv(api: Api, campaign: str, data: bytes, query: str = "") -> tuple[int, dict]:
    response = await api.client.post(f"/v1/campaigns/{campaign}/codes{query}", data=data,
                                     headers={**api.service, "Content-Type": "text/csv"})
    return response.status, await response.json()


async def test_header_line_is_not_a_code(api: Api) -> None:
    status, body = await upload_csv(api, "hdr", "tm", "code\nH1\nH2\n")
    assert (status, body) == (200, {"in": 2, "inserted": 2, "updated": 0, "skipped": 0})
    status, _ = await api.call("GET", "/v1/campaigns/hdr/codes/code")
    assert status == 404
    # "Code" later in the file is an ordinary code
    status, body = await upload_csv(api, "hdr", "tm", "H3\ncode\n")
    assert body["inserted"] == 2


async def test_code_type_header_quotes_bom_and_crlf(api: Api, persister: Persister,
                                                   runtime: Runtime) -> None:
    data = b'\xef\xbb\xbfcode,type\r\n"Q1",tm\r\n Q2 , external\r\n"Q3","tm"\r\n\r\nQ1,tm\r\n'
    status, body = await post_csv(api, "typed", data)  # no ?type=: the column names it
    assert (status, body) == (200, {"in": 4, "inserted": 3, "updated": 0, "skipped": 1})
    assert await counts(api, "typed", "tm") == {"available": 2, "reserved": 0, "assigned": 0}
    assert await counts(api, "typed", "external") == {"available": 1, "reserved": 0, "assigned": 0}
    status, code = await api.call("GET", "/v1/campaigns/typed/codes/Q2")
    assert status == 200 and code["type"] == "external"
    await persister.drain()
    await assert_pg_matches_redis(runtime, "acme", "typed")
    status, body = await post_csv(api, "plain", b'"P1"\r\n"P2"\n', "?type=tm")
    assert (status, body["inserted"]) == (200, 2)


@pytest.mark.parametrize(("data", "line", "words"), [
    (b"code,type\nA1,tm\nA2\n", 3, "1 fields"),
    (b"A1\nA2,tm\n", 2, "2 fields"),
    (b"code,type\nA1,TM\n", 2, "invalid type"),
    (b'A1\n"A2\n', 2, "malformed CSV"),
    (b'A1\n"A 2"\n', 2, "invalid characters"),
])
async def test_bad_rows_name_the_line(api: Api, data: bytes, line: int, words: str) -> None:
    status, body = await post_csv(api, "bad", data, "?type=tm")
    assert status == 400 and body["code"] == "VALIDATION_ERROR", body
    assert body["details"]["line"] == line and words in body["error"], body
    assert await counts(api, "bad") is None  # nothing live, not even the campaign


async def test_no_type_anywhere_is_400(api: Api) -> None:
    status, body = await post_csv(api, "nt", b"A1\n")
    assert status == 400 and body["details"]["field"] == "type"


async def test_multipart_form_data(api: Api) -> None:
    form = aiohttp.FormData()
    form.add_field("note", "ignored")
    form.add_field("file", b"code\nM1\nM2\nM3\n", filename="codes.csv", content_type="text/csv")
    response = await api.client.post("/v1/campaigns/mp/codes?type=tm", data=form, headers=api.service)
    assert response.status == 200, await response.text()
    assert await response.json() == {"in": 3, "inserted": 3, "updated": 0, "skipped": 0}
    form = aiohttp.FormData()
    form.add_field("other", b"M9\n", filename="x.csv", content_type="text/csv")
    response = await api.client.post("/v1/campaigns/mp/codes?type=tm", data=form, headers=api.service)
    body = await response.json()
    assert response.status == 400 and body["details"]["field"] == "file"


async def test_bad_line_at_the_end_of_20000_codes_leaves_nothing_live(
        api: Api, runtime: Runtime, persister: Persister) -> None:
    await upload_csv(api, "big", "tm", "OLD1\nOLD2\n")
    data = "".join(f"BIG{i:05d}\n" for i in range(20_000)) + "not a code!\n"
    status, body = await post_csv(api, "big", data.encode(), "?type=tm")
    assert status == 400 and body["details"]["line"] == 20_001, body
    assert body["details"]["applied"]["inserted"] == 0
    assert await counts(api, "big") == {"available": 2, "reserved": 0, "assigned": 0}
    status, r = await api.call("POST", "/v1/campaigns/big/reservations", json={"type": "tm", "count": 10})
    assert sorted(r["codes"]) == ["OLD1", "OLD2"]
    records = runtime.keys.tenant("acme").codes_records("big")
    assert await runtime.redis.hlen(records) == 2  # the staged records were removed too
    leftovers = [k async for k in runtime.redis.scan_iter(match=f"{runtime.keys.prefix}:*:upload:*")]
    assert leftovers == []
    await persister.drain()
    assert await runtime.pool.fetchval(
        "SELECT count(*) FROM campaign_codes WHERE campaign_id = 'big'") == 2
    assert await runtime.pool.fetchval("SELECT count(*) FROM campaign_pending_uploads") == 0
    # the same file, fixed, goes live in one step
    status, body = await post_csv(api, "big", data.rsplit("not", 1)[0].encode(), "?type=tm")
    assert (status, body["inserted"]) == (200, 20_000)
    await persister.drain()
    await assert_pg_matches_redis(runtime, "acme", "big")
    assert await runtime.pool.fetchval("SELECT count(*) FROM campaign_pending_uploads") == 0


async def test_cli_upload_reads_s3(isolated: str, make_settings: Callable[..., Settings],
                                   s3: S3, tmp_path: Path) -> None:  # noqa: F811
    s3.put("anywhere/spring.csv", "code\nS3A\nS3B\n")
    settings = make_settings(s3_endpoint_url=s3.url, s3_region="us-east-1")
    async with open_runtime(settings, run_persister=False) as rt:
        await rt.tenants.create("acme", name="Acme", status="active", trial_end_ms=None)
        result = await upload_file(rt, "acme", f"s3://{s3.bucket}/anywhere/spring.csv", "s3c", "tm")
        assert (result.lines, result.inserted) == (2, 2)
        assert (await rt.codes.count("acme", "s3c", "tm")).available == 2
        with pytest.raises(ValidationError):
            await upload_file(rt, "acme", "s3://bucket-only", "s3c", "tm")


async def test_malformed_multipart_is_400(api: Api) -> None:
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"\x06bad\"\r\n"
            f"Bad\x01Header: x\r\n\r\nx\r\n--{boundary}--\r\n").encode("latin-1")
    response = await api.client.post(
        "/v1/campaigns/mpx/codes?type=tm", data=body,
        headers={**api.service, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    answer = await response.json()
    assert response.status == 400 and answer["code"] == "VALIDATION_ERROR", answer
