"""Hostile bytes at the HTTP edge: every refusal is a 4xx in the error shape, with no
echo of the request and no version banner (issue 21, items 1 and 6)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator

import pytest

from dropgate.http.app import serving
from dropgate.runtime import Runtime
from tests.conftest import ADMIN_KEY
from tests.support.hostile import error_shape, parser_refusals, raw_exchange, request_bytes


@pytest.fixture
async def port(runtime: Runtime) -> AsyncIterator[int]:
    async with serving(runtime, "127.0.0.1", 0) as url:
        yield int(url.rsplit(":", 1)[1])


async def test_parser_refusals_are_json_errors_without_echo(port: int) -> None:
    for raw in parser_refusals(ADMIN_KEY):
        status, headers, body = await raw_exchange(port, raw)
        doc = error_shape(status, headers, body)
        assert doc["code"] == "VALIDATION_ERROR", doc


@pytest.mark.parametrize("header", [b"Authorization", b"Idempotency-Key", b"X-Tenant-Id"])
async def test_latin1_header_bytes_are_a_4xx(port: int, header: bytes) -> None:
    await raw_exchange(port, request_bytes("POST", "/v1/tenants", [
        (b"Authorization", b"Bearer " + ADMIN_KEY.encode()), (b"Content-Type", b"application/json")],
        b'{"tenant_id": "acme", "name": "Acme"}'))
    sent = {b"Authorization": b"Bearer " + ADMIN_KEY.encode(), b"X-Tenant-Id": b"acme",
            b"Content-Type": b"application/json"}
    sent[header] = b"Bearer caf\xe9\xff" if header == b"Authorization" else b"caf\xe9\xff"
    raw = request_bytes("POST", "/v1/offers/hot/purchase", list(sent.items()), b'{"user_id": "u1", "quantity": 1}')
    status, headers, body = await raw_exchange(port, raw)
    doc = error_shape(status, headers, body)
    expected = 401 if header == b"Authorization" else 400
    assert status == expected, doc


@pytest.mark.parametrize("token", [b"*", b"{", b"dg_{_x", b"dg_" + b"k" * 80 + b"_secret", b"a b"])
async def test_a_malformed_bearer_is_401(port: int, token: bytes) -> None:
    status, headers, body = await raw_exchange(
        port, request_bytes("GET", "/v1/tenants/acme", [(b"Authorization", b"Bearer " + token)]))
    doc = error_shape(status, headers, body)
    assert (status, doc["code"]) == (401, "UNAUTHORIZED"), doc
    assert headers.get("www-authenticate") == 'Bearer realm="dropgate"'


async def test_no_version_banner_on_any_answer(port: int) -> None:
    for path in ("/healthz", "/v1/nothing-here"):
        status, headers, _ = await raw_exchange(port, request_bytes("GET", path, []))
        assert headers.get("server") == "dropgate", (path, status, headers)


async def test_a_declared_body_over_the_limit_is_413_before_it_is_read(port: int) -> None:
    """``Content-Length: 999999999`` and 2 bytes sent: refused at once, not after a wait."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST /v1/tenants HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + ADMIN_KEY.encode()
                     + b"\r\nContent-Type: application/json\r\nContent-Length: 999999999\r\n\r\n{}")
        await writer.drain()
        started = time.monotonic()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert time.monotonic() - started < 5
        assert head.startswith(b"HTTP/1.1 413 "), head
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        doc = json.loads(await reader.readexactly(length))
        assert doc["code"] == "PAYLOAD_TOO_LARGE", doc
    finally:
        writer.close()


async def test_a_client_disconnect_is_logged_as_such(port: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dropgate.http")
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/tenants HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer " + ADMIN_KEY.encode()
                 + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"tenant")
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.close()
    deadline = time.monotonic() + 5
    while "client disconnected" not in caplog.text:
        assert time.monotonic() < deadline, caplog.text
        await asyncio.sleep(0.05)
    assert "backing service unavailable" not in caplog.text
