"""Uploads: from S3 (moto's real S3 endpoint on loopback) and from a posted text/csv body."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from dropgate.engine.codestore import s3_chunks
from dropgate.errors import StorageUnavailable
from dropgate.ids import text
from dropgate.persistence.persister import Persister
from dropgate.persistence.reconcile.runner import reconcile
from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.conftest import Api
from tests.support.codes import assert_pg_matches_redis, upload_csv

CAMPAIGN = "s3camp"


@dataclass
class S3:
    url: str
    bucket: str
    client: Any

    def put(self, key: str, body: bytes | str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key,
                               Body=body.encode() if isinstance(body, str) else body)


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    """moto's S3 server on a free loopback port, for this module; stopped after."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                            ("AWS_SESSION_TOKEN", "testing"), ("AWS_DEFAULT_REGION", "us-east-1")):
            mp.setenv(name, value)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            url = f"http://{host}:{port}"
            client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
            bucket = "codes-" + uuid.uuid4().hex[:8]
            client.create_bucket(Bucket=bucket)
            yield S3(url=url, bucket=bucket, client=client)
        finally:
            server.stop()


@pytest.fixture
def settings(make_settings: Callable[..., Settings], s3: S3) -> Settings:
    """Small batches (4 codes) and a small CSV limit, so every path shows with small files."""
    return make_settings(s3_bucket=s3.bucket, s3_endpoint_url=s3.url, s3_region="us-east-1",
                         code_upload_batch_size=4, csv_body_limit_bytes=4096)


async def post_key(api: Api, file_key: str, campaign: str = CAMPAIGN) -> tuple[int, Any]:
    return await api.call("POST", f"/v1/campaigns/{campaign}/codes", json={"file_key": file_key})


async def count(api: Api, campaign: str = CAMPAIGN, type: str = "tm") -> dict[str, int]:
    """The type's counts; a campaign or type that does not exist (v1.1: 404 / 400
    UNKNOWN_TYPE) has nothing live: zeros."""
    status, body = await api.call("GET", f"/v1/campaigns/{campaign}/codes/count?type={type}")
    if (status, body.get("code")) in ((404, "NOT_FOUND"), (400, "UNKNOWN_TYPE")):
        return {"available": 0, "reserved": 0, "assigned": 0}
    assert status == 200, body
    return dict(body)


async def leftover_upload_sets(runtime: Runtime) -> list[Any]:
    return [k async for k in runtime.redis.scan_iter(match=f"{runtime.keys.prefix}:*:upload:*")]


async def test_upload_from_s3_streams_trims_and_deduplicates(
        api: Api, runtime: Runtime, persister: Persister, s3: S3) -> None:
    s3.put(f"codes/{CAMPAIGN}/tm/launch.csv",
           "\ufeffA1\r\n  A2  \n\n\tA3\nA1\nA4\nA5\n   \nA2\nA6\nA7\nA8\nA9\nA3")
    status, body = await post_key(api, f"codes/{CAMPAIGN}/tm/launch.csv")
    assert status == 200, body
    assert body == {"in": 12, "inserted": 9, "updated": 0, "skipped": 3}
    assert await count(api) == {"available": 9, "reserved": 0, "assigned": 0}
    assert await leftover_upload_sets(runtime) == []  # the cross-batch de-duplication set is gone
    # the same object again: every code known, statuses kept
    status, body = await post_key(api, f"codes/{CAMPAIGN}/tm/launch.csv")
    assert body == {"in": 12, "inserted": 0, "updated": 9, "skipped": 3}
    # the type comes from the key
    s3.put(f"codes/{CAMPAIGN}/external/x.csv", "X1\nX2\n")
    status, body = await post_key(api, f"codes/{CAMPAIGN}/external/x.csv")
    assert body == {"in": 2, "inserted": 2, "updated": 0, "skipped": 0}
    assert await count(api, type="external") == {"available": 2, "reserved": 0, "assigned": 0}
    await persister.drain()
    await assert_pg_matches_redis(runtime, "acme", CAMPAIGN)


@pytest.mark.parametrize("file_key", [
    "codes/another/tm/file.csv",     # another campaign
    "uploads/s3camp/tm/file.csv",    # not under codes/
    "codes/s3camp/TM/file.csv",      # not a valid type
    "codes/s3camp/tm/",              # no file name
    "codes/s3camp/file.csv",         # no type
])
async def test_s3_key_must_follow_the_pattern(api: Api, file_key: str) -> None:
    status, body = await post_key(api, file_key)
    assert status == 400, body
    assert body["code"] == "VALIDATION_ERROR" and body["details"]["field"] == "file_key"


async def test_s3_missing_object_is_404(api: Api) -> None:
    status, body = await post_key(api, f"codes/{CAMPAIGN}/tm/nothing-here.csv")
    assert status == 404, body
    assert body["code"] == "NOT_FOUND"
    assert body["details"]["file_key"] == f"codes/{CAMPAIGN}/tm/nothing-here.csv"
    assert await count(api) == {"available": 0, "reserved": 0, "assigned": 0}


async def test_s3_store_failures_are_502(make_settings: Callable[..., Settings], s3: S3) -> None:
    missing_bucket = make_settings(s3_bucket="no-such-bucket", s3_endpoint_url=s3.url,
                                   s3_region="us-east-1")
    with pytest.raises(StorageUnavailable) as caught:
        async with contextlib.aclosing(s3_chunks(missing_bucket, "codes/c/tm/f")) as chunks:
            async for _ in chunks:
                pass
    assert caught.value.details["storage_error"] == "NoSuchBucket"
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    unreachable = make_settings(s3_bucket="b", s3_endpoint_url=f"http://127.0.0.1:{dead_port}",
                                s3_region="us-east-1")
    with pytest.raises(StorageUnavailable):
        async with contextlib.aclosing(s3_chunks(unreachable, "codes/c/tm/f")) as chunks:
            async for _ in chunks:
                pass
    with pytest.raises(StorageUnavailable):
        async with contextlib.aclosing(s3_chunks(make_settings(), "codes/c/tm/f")) as chunks:
            async for _ in chunks:
                pass


async def test_malformed_s3_file_names_the_line_and_applies_nothing(
        api: Api, s3: S3) -> None:
    lines = [f"M{i}" for i in range(1, 10)] + ["bad\x00\x01binary"] + ["M10", "M11"]
    s3.put(f"codes/{CAMPAIGN}/tm/bad.csv", "\n".join(lines).encode())
    status, body = await post_key(api, f"codes/{CAMPAIGN}/tm/bad.csv")
    assert status == 400, body
    assert body["details"]["line"] == 10 and "binary" in body["error"]
    # batches of 4: lines 1-8 were staged, and discarded with the refusal (#21)
    assert body["details"]["applied"]["inserted"] == 0
    assert await count(api) == {"available": 0, "reserved": 0, "assigned": 0}


async def test_posted_csv(api: Api, runtime: Runtime, persister: Persister) -> None:
    status, body = await upload_csv(api, "csv", "tm", "C1\n C2 \r\n\nC1\nC3\nC4\nC5\nC2\nC6")
    assert status == 200, body
    assert body == {"in": 8, "inserted": 6, "updated": 0, "skipped": 2}
    # streamed in any chunking: a body sent chunked (no Content-Length) parses the same
    async def pieces() -> AsyncIterator[bytes]:
        for piece in (b"C6\nC", b"7\n  C8", b"\n\nC9"):
            yield piece
    response = await api.client.post("/v1/campaigns/csv/codes?type=tm", data=pieces(),
                                     headers={**api.service, "Content-Type": "text/csv"})
    assert await response.json() == {"in": 4, "inserted": 3, "updated": 1, "skipped": 0}
    assert await count(api, "csv") == {"available": 9, "reserved": 0, "assigned": 0}
    await persister.drain()
    await assert_pg_matches_redis(runtime, "acme", "csv")


@pytest.mark.parametrize(("body", "line", "words"), [
    ("OK1\nOK2\nnot valid!\n", 3, "invalid characters"),
    ("OK1\n" + "L" * 300 + "\nOK2\n", 2, "longer than 256"),
    ("OK1\n" + "L" * 65 + "\n", 2, "longer than 64"),
    ("OK1\nOK2\nOK3\nOK4\nOK5\n\n\xff\xfe\x00\n", 7, "binary"),
    ("OK1\nOK2\nOK3\nOK4\nOK5\n" + "x" * 2000, 6, "longer than 256"),  # no newline at all
])
async def test_malformed_csv_is_400_naming_the_line(api: Api, body: str, line: int,
                                                    words: str) -> None:
    data = body.encode("latin-1")
    status, answer = await upload_csv(api, "mal", "tm", data)
    assert status == 400, answer
    assert answer["code"] == "VALIDATION_ERROR"
    assert answer["details"]["line"] == line and words in answer["error"]
    assert answer["details"]["applied"]["inserted"] == 0  # all or nothing (#21)
    assert (await count(api, "mal"))["available"] == 0


async def test_csv_over_the_limit_is_413(api: Api) -> None:
    big = "".join(f"BIG{i:05d}\n" for i in range(1_000))  # 9,000 bytes > 4,096
    status, body = await upload_csv(api, "big", "tm", big)
    assert status == 413 and body["code"] == "PAYLOAD_TOO_LARGE"
    assert await count(api, "big") == {"available": 0, "reserved": 0, "assigned": 0}

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: caught while streaming
        for i in range(0, len(big), 1000):
            yield big[i:i + 1000].encode()
    response = await api.client.post("/v1/campaigns/big/codes?type=tm", data=chunked(),
                                     headers={**api.service, "Content-Type": "text/csv"})
    answer = await response.json()
    assert response.status == 413 and answer["code"] == "PAYLOAD_TOO_LARGE"


async def test_code_of_another_type_refuses_its_batch(api: Api) -> None:
    await upload_csv(api, "conf", "tm", "K1\nK2\n")
    status, body = await upload_csv(api, "conf", "external", "E1\nK2\nE3\n")
    assert status == 409, body
    assert body["code"] == "CONFLICT" and body["details"]["code"] == "K2"
    assert body["details"]["type"] == "tm"
    assert await count(api, "conf", "external") == {"available": 0, "reserved": 0, "assigned": 0}


async def test_upload_request_errors(api: Api) -> None:
    response = await api.client.post("/v1/campaigns/c/codes", data=b"A\n",
                                     headers={**api.service, "Content-Type": "text/csv"})
    assert response.status == 400 and (await response.json())["details"]["field"] == "type"
    response = await api.client.post("/v1/campaigns/c/codes?type=tm", data=b"A\n",
                                     headers={**api.service, "Content-Type": "application/xml"})
    assert response.status == 400
    status, body = await api.call("POST", "/v1/campaigns/c/codes",
                                  json={"file_key": "codes/c/tm/f", "extra": 1})
    assert status == 400 and body["details"]["field"] == "extra"
    status, body = await api.call("POST", "/v1/campaigns/c/codes?type=external",
                                  json={"file_key": "codes/c/tm/f"})
    assert status == 400 and body["details"]["field"] == "type"
    status, body = await api.call("POST", "/v1/campaigns/c/codes?type=tm", headers={})
    assert status == 401


async def test_repeats_across_batches_are_skipped_even_after_their_status_changed(
        runtime: Runtime, persister: Persister) -> None:
    """An upload of several batches recognises its own earlier codes by the upload mark
    in their records; reserve, assign and release in between must keep that mark, and
    codes that existed before count as updated once, however often they repeat."""
    codes = runtime.codes
    await runtime.tenants.create("mk", name="mk", status="active", trial_end_ms=None)
    await codes.upload_batch("mk", "marks", "tm", ["P1", "P2", "P3"])  # before the upload
    records = runtime.keys.tenant("mk").codes_records("marks")

    async def chunks() -> AsyncIterator[bytes]:
        yield b"N1\nN2\nP1\nN3\nN4\n"  # batches of 3: [N1 N2 P1] is applied while we wait
        for _ in range(500):
            if await runtime.redis.hexists(records, "N2"):
                break
            await asyncio.sleep(0.01)
        held = await codes.reserve("mk", "marks", "tm", 10)
        # the upload's own codes are staged: not reservable before it commits (#21)
        assert set(held.codes) == {"P1", "P2", "P3"}
        await codes.assign("mk", "marks", ["P2"])
        await codes.release("mk", "marks", ["P3"])  # P2 assigned, P3 available again, P1 reserved
        yield b"N2\nN1\nP1\nP2\nN5\nP2\nN3\nN4\nP3\n"

    result = await codes.upload("mk", "marks", "tm", chunks(), batch_size=3)
    assert (result.lines, result.inserted, result.updated, result.skipped) == (14, 5, 3, 6)
    statuses = {c: s for c, s in zip(
        ["P2", "P3", "P1", "N5"], [text(v).partition("#")[0] for v in await runtime.redis.hmget(
            records, ["P2", "P3", "P1", "N5"])], strict=True)}
    assert statuses["P2"].startswith("tm|s|") and statuses["P3"].startswith("tm|a")
    assert statuses["P1"].startswith("tm|r|") and statuses["N5"] == "tm|a"
    assert (await codes.count("mk", "marks", "tm")).available == 6  # N1-N5 live now, and P3
    # the marks stay in Redis: PostgreSQL and the reconciler see the same records
    await persister.drain()
    await assert_pg_matches_redis(runtime, "mk", "marks")
    report = await reconcile(runtime, wait_s=0, entities=["codes"])
    assert report.exit_code == 0, report.drifts
