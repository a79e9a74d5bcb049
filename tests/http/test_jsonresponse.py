"""``JsonResponse`` sends the bytes aiohttp's ``web.Response`` sends, on every kind of connection.

The same answers are served both ways by one aiohttp server, and read off a raw socket:
the status line, every header and the body must be equal (``Date`` aside, which is the
second's), on HTTP/1.1 and 1.0, kept alive or closed, for HEAD, with extra headers and
with headers added after the answer was built.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from dropgate.http.connections import SERVER_NAME
from dropgate.http.jsonresponse import JsonResponse

BODY = b'{"use_id":"use_1","times_used":7}'


def _plain(status: int = 201, extra: dict[str, str] | None = None) -> web.Response:
    """What the API answered with before: web.Response, then the middleware's two headers."""
    response = web.Response(body=BODY, status=status, content_type="application/json", headers=extra)
    response.headers["X-Request-Id"] = "req-1"
    response.headers["Server"] = SERVER_NAME
    return response


def _written(status: int = 201, extra: dict[str, str] | None = None) -> JsonResponse:
    response = JsonResponse(BODY, status, extra)
    response.identify("req-1")
    return response


async def _allow_plain(request: web.Request) -> web.StreamResponse:
    response = _plain(405)
    response.headers["Allow"] = "GET, POST"
    return response


async def _allow_written(request: web.Request) -> web.StreamResponse:
    response = JsonResponse(BODY, 405)
    response.headers["Allow"] = "GET, POST"  # after it was built: the headers become aiohttp's
    response.identify("req-1")
    return response


async def _injected(request: web.Request) -> web.StreamResponse:
    response = JsonResponse(BODY, 200, {"X-Note": "a\r\nInjected: yes"})
    response.identify("req-1")
    return response


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    app = web.Application()

    async def plain(request: web.Request) -> web.StreamResponse:
        return _plain()

    async def written(request: web.Request) -> web.StreamResponse:
        return _written()

    async def plain_429(request: web.Request) -> web.StreamResponse:
        return _plain(429, {"Retry-After": "3"})

    async def written_429(request: web.Request) -> web.StreamResponse:
        return _written(429, {"Retry-After": "3"})

    app.router.add_post("/plain", plain)
    app.router.add_post("/written", written)
    app.router.add_get("/plain", plain)  # add_get serves HEAD too
    app.router.add_get("/written", written)
    app.router.add_post("/plain-429", plain_429)
    app.router.add_post("/written-429", written_429)
    app.router.add_post("/plain-405", _allow_plain)
    app.router.add_post("/written-405", _allow_written)
    app.router.add_post("/injected", _injected)
    test_server = TestServer(app)
    await test_server.start_server()
    yield test_server
    await test_server.close()


async def _exchange(server: TestServer, raw: bytes, answers: int = 1) -> list[bytes]:
    """Send ``raw`` (one or more requests) and read ``answers`` whole answers."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(raw)
        out: list[bytes] = []
        for _ in range(answers):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            is_head = raw.startswith(b"HEAD")
            body = b"" if is_head else await asyncio.wait_for(reader.readexactly(length), 10)
            out.append(head + body)
        return out
    finally:
        writer.close()


def _request(method: str, path: str, version: str = "1.1", extra: str = "") -> bytes:
    body = b'{"x":1}' if method == "POST" else b""
    return (f"{method} {path} HTTP/{version}\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def _dated(answer: bytes) -> tuple[list[bytes], bytes]:
    """The answer's lines with the Date's value taken out, and its body."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    dates = [line for line in lines if line.startswith(b"Date: ")]
    assert len(dates) == 1 and dates[0].endswith(b" GMT")
    return [b"Date: ..." if line.startswith(b"Date: ") else line for line in lines], body


@pytest.mark.parametrize(("method", "version", "extra"), [
    ("POST", "1.1", ""),  # kept alive: no Connection header
    ("POST", "1.1", "Connection: close\r\n"),  # Connection: close in the answer
    ("POST", "1.0", ""),  # HTTP/1.0 closes: no Connection header, HTTP/1.0 status line
    ("POST", "1.0", "Connection: keep-alive\r\n"),  # HTTP/1.0 kept alive: Connection: keep-alive
    ("GET", "1.1", ""),
    ("HEAD", "1.1", ""),  # the headers (Content-Length included), no body
])
async def test_the_bytes_are_web_responses(server: TestServer, method: str, version: str,
                                           extra: str) -> None:
    [plain] = await _exchange(server, _request(method, "/plain", version, extra))
    [written] = await _exchange(server, _request(method, "/written", version, extra))
    assert _dated(written) == _dated(plain)
    assert written.startswith(f"HTTP/{version} 201 Created\r\n".encode())
    assert (b"\r\nContent-Length: 33\r\n" in written) and (written.endswith(BODY) != (method == "HEAD"))
    connection = [line for line in _dated(written)[0] if line.startswith(b"Connection")]
    assert connection == {"": [], "Connection: close\r\n": [b"Connection: close"],
                          "Connection: keep-alive\r\n": [b"Connection: keep-alive"]}[extra]


async def test_a_kept_alive_connection_answers_each_request_in_turn(server: TestServer) -> None:
    answers = await _exchange(server, _request("POST", "/written") * 3, answers=3)
    assert [_dated(a) for a in answers] == [_dated(answers[0])] * 3
    assert all(a.endswith(BODY) for a in answers)


async def test_extra_headers_and_headers_added_later_are_sent(server: TestServer) -> None:
    for name, header in (("429", b"Retry-After: 3"), ("405", b"Allow: GET, POST")):
        [plain] = await _exchange(server, _request("POST", f"/plain-{name}"))
        [written] = await _exchange(server, _request("POST", f"/written-{name}"))
        (plain_lines, plain_body), (written_lines, written_body) = _dated(plain), _dated(written)
        assert written_lines[0] == plain_lines[0]  # the status line
        assert sorted(written_lines[1:]) == sorted(plain_lines[1:])  # the same headers, each once
        assert header in written_lines and b"X-Request-Id: req-1" in written_lines, written_lines
        assert written_body == plain_body == BODY


async def test_a_header_value_with_a_line_break_is_never_sent(server: TestServer) -> None:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(_request("POST", "/injected"))
        received = await asyncio.wait_for(reader.read(), 10)  # aiohttp answers 500 or closes
    finally:
        writer.close()
    assert b"Injected: yes" not in received.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]
    assert not received.startswith(b"HTTP/1.1 200")


def test_an_answer_without_a_body_is_not_a_json_response() -> None:
    for body, status in ((b"", 200), (BODY, 204), (BODY, 304), (BODY, 101)):
        with pytest.raises(ValueError, match="carries a body"):
            JsonResponse(body, status)
    response = JsonResponse(BODY, 201)
    assert response.status == 201 and response.reason == "Created" and response.body == BODY
    assert response.content_type == "application/json"  # read through aiohttp's own helper
    assert not response.prepared


async def test_a_head_answer_ends_with_its_headers(server: TestServer) -> None:
    received = []
    for path in ("/plain", "/written"):
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:
            writer.write(_request("HEAD", path, extra="Connection: close\r\n"))
            received.append(await asyncio.wait_for(reader.read(), 10))  # to the end: all that was sent
        finally:
            writer.close()
    assert received[1].endswith(b"\r\n\r\n") and b"Content-Length: 33\r\n" in received[1]
    assert _dated(received[1]) == _dated(received[0]) == (_dated(received[1])[0], b"")


def test_a_header_it_cannot_send_safely_is_refused_when_built() -> None:
    with pytest.raises(ValueError, match="Forbidden control character"):
        JsonResponse(BODY, 429, {"Retry-After": "3\r\nSet-Cookie: a=b"})
    with pytest.raises(ValueError, match="Forbidden control character"):
        JsonResponse(BODY, 201).identify("req\n1")
    for own in ("Content-Length", "server", "X-Request-Id", "Connection"):
        with pytest.raises(ValueError, match="itself"):
            JsonResponse(BODY, 201, {own: "1"})
