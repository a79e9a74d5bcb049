"""A JSON answer written in one piece: the same bytes as ``web.Response``, a fraction of its cost.

Why (issue #19 item 4, BENCHMARKS.md "One write per answer"): every profile showed
aiohttp's answer among the largest shares of a request, the no-op's included: the
response object's ``CIMultiDict`` and content-type parsing, then ``prepare`` ->
``_start`` -> ``_prepare_headers`` -> ``_prepare_hook`` -> ``_write_headers`` ->
``write_headers``, ``write_eof`` -> ``super().write_eof`` -> the writer's
``write_eof``, a coroutine each. ``benchmarks.answer_cost`` times that piece alone:
about 12 µs per answer, against under 5 this way. Every answer of this API is a
complete JSON body known before it is sent, so this response keeps its few headers as
one string, and ``write_eof`` hands it and the body to the request's writer in one
``write_eof``: one socket write and the writer's drain, as ``web.Response`` ends.

What is sent does not change: the status line, ``Content-Type: application/json``,
the extra headers, ``X-Request-Id``, ``Server``, ``Content-Length`` and ``Date``
(aiohttp's cached one), and ``Connection`` exactly where aiohttp puts it (``close``
when an HTTP/1.1 request will not be kept alive, ``keep-alive`` when an HTTP/1.0 one
will); a HEAD request gets the headers and no body. A header value is held to
aiohttp's rule when the answer is built (no control character: no header injection).
``headers`` is still the response's live ``CIMultiDict`` for the rare caller that adds
one (a 405's ``Allow``): it is built on first use and then sent through aiohttp's own
serializer. ``tests/http/test_jsonresponse.py`` holds both ways to aiohttp's own bytes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import HttpVersion10, HttpVersion11
from aiohttp.web_response import REASON_PHRASES
from multidict import CIMultiDict, istr

from dropgate.http.connections import SERVER_NAME

if TYPE_CHECKING:
    from aiohttp.web_request import BaseRequest

JSON = "application/json"
X_REQUEST_ID = istr("X-Request-Id")


# what aiohttp's serializer refuses in a header (``http_writer._safe_header``, a private
# helper, so its rule is restated here; RFC 9110 5.5: no CR, LF or NUL)
_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# what the answer itself sets: an ``extra`` naming one would send it twice
_OWN = frozenset({"content-type", "content-length", "date", "server", "connection", "x-request-id",
                  "transfer-encoding"})


def _checked(value: str) -> str:
    if _FORBIDDEN.search(value) is not None:
        raise ValueError("Forbidden control character in a header (header injection?)")
    return value


class JsonResponse(web.StreamResponse):
    """A complete JSON answer: ``body`` with ``status``, and ``extra`` headers (in order)."""

    def __init__(self, body: bytes, status: int = 200, extra: dict[str, str] | None = None) -> None:
        # not StreamResponse.__init__: its CIMultiDict is built only if ``headers`` is read
        if not body or status in (204, 304) or status < 200:
            raise ValueError("JsonResponse carries a body: use web.Response for an empty answer")
        self._state: dict[Any, Any] = {}
        self._status = status
        self._reason = REASON_PHRASES.get(status, "")
        self._body_bytes = body
        self._extra = extra
        self._extra_lines = ""
        if extra:
            if any(name.lower() in _OWN for name in extra):
                raise ValueError(f"JsonResponse sets {sorted(_OWN)} itself")
            self._extra_lines = "".join(f"{_checked(name)}: {_checked(value)}\r\n"
                                        for name, value in extra.items())
        self._multi: CIMultiDict[str] | None = None
        self._head = b""  # the status line and headers, once prepared (unless ``headers`` was read)
        self._request_id = ""  # X-Request-Id, and Server with it: ``identify``

    def identify(self, request_id: str) -> None:
        """Carry ``request_id`` (X-Request-Id) and dropgate's ``Server`` header."""
        self._request_id = _checked(request_id)
        if self._multi is not None:
            self._multi[X_REQUEST_ID] = request_id
            self._multi[hdrs.SERVER] = SERVER_NAME

    @property
    def body(self) -> bytes:
        return self._body_bytes

    @property
    def headers(self) -> CIMultiDict[str]:
        """The headers as aiohttp keeps them; from now on, what is sent."""
        if self._multi is None:
            headers: CIMultiDict[str] = CIMultiDict({hdrs.CONTENT_TYPE: JSON})
            if self._extra:
                headers.extend(self._extra)
            if self._request_id:
                headers[X_REQUEST_ID] = self._request_id
                headers[hdrs.SERVER] = SERVER_NAME
            self._multi = headers
        return self._multi

    @property
    def _headers(self) -> CIMultiDict[str]:  # type: ignore[override]
        # StreamResponse's own helpers (content_type, charset, ...) read the attribute
        return self.headers

    async def prepare(self, request: BaseRequest) -> AbstractStreamWriter | None:
        if self._eof_sent:
            return None
        if self._payload_writer is not None:
            return self._payload_writer
        # a routed request's on_response_prepare receivers see the headers, as they would
        # on a web.Response (the hot path's requests have no match, so no receivers)
        if getattr(request, "_match_info", None) is not None:
            await request._prepare_hook(self)
        keep_alive = self._keep_alive
        if keep_alive is None:
            keep_alive = request.keep_alive
            self._keep_alive = keep_alive
        version = request.version
        # aiohttp's rule (StreamResponse._prepare_headers)
        connection = ("" if version != HttpVersion10 else "keep-alive") if keep_alive else (
            "close" if version == HttpVersion11 else "")
        self._req = request
        writer = self._payload_writer = request._payload_writer
        status_line = f"HTTP/{version[0]}.{version[1]} {self._status} {self._reason}"
        multi = self._multi
        if multi is None:  # the common case: the bytes, in web.Response's order
            rid = self._request_id
            identity = f"X-Request-Id: {rid}\r\nServer: {SERVER_NAME}\r\n" if rid else ""
            after_date = "" if rid else f"Server: {SERVER_NAME}\r\n"
            if connection:
                after_date += f"Connection: {connection}\r\n"
            self._head = (f"{status_line}\r\nContent-Type: {JSON}\r\n{self._extra_lines}{identity}"
                          f"Content-Length: {len(self._body_bytes)}\r\nDate: {rfc822_formatted_time()}"
                          f"\r\n{after_date}\r\n").encode()
            return writer
        multi[hdrs.CONTENT_LENGTH] = str(len(self._body_bytes))
        if hdrs.DATE not in multi:
            multi[hdrs.DATE] = rfc822_formatted_time()
        multi.setdefault(hdrs.SERVER, SERVER_NAME)
        if connection and hdrs.CONNECTION not in multi:
            multi[hdrs.CONNECTION] = connection
        await writer.write_headers(status_line, multi)  # aiohttp's serializer (refuses CR/LF)
        return writer

    async def write_eof(self, data: bytes = b"") -> None:
        if self._eof_sent:
            return
        writer = self._payload_writer
        assert writer is not None and self._req is not None, "Response has not been started"
        body = b"" if self._req.method == hdrs.METH_HEAD else self._body_bytes
        # one write, the headers with the body, then the writer's drain (flow control)
        await writer.write_eof(self._head + body if self._head else body)
        self._eof_sent = True
        self._req = None
        self._body_length = writer.output_size
        self._payload_writer = None
