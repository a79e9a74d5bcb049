"""Connection hygiene: no slow or idle socket holds a serving process hostage.

aiohttp closes a connection that sends nothing for ``keepalive_timeout`` (also a new
one that never sends a byte), but it has no limit on a request whose headers or body
arrive a byte at a time, and it accepts connections until the process runs out of
file descriptors, after which it cannot accept anything, ``/healthz`` included. This
module adds what a reverse proxy would otherwise provide:

- a header deadline: from a request's first byte to the end of its headers
  (``http_header_timeout_s``);
- a minimum body rate: a body may fall at most ``http_body_grace_s`` behind
  ``http_body_min_rate`` bytes/s (see ``body_too_slow``); the time this process itself
  stopped reading (flow control while a handler is busy) does not count against the
  client;
- a connection cap per process (``http_max_connections``, by default derived from the
  open-file limit): past it the oldest idle connections are closed first, then the
  slowest half-sent requests, and only then the newcomer;
- parser refusals (a malformed request line, a header over 8 KB) answered in the API's
  error shape, with no echo of the request and no version banner.

One watchdog task per process sweeps the connections a few times a second: cheaper
than a timer per connection, and precise enough for timeouts counted in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from dropgate.errors import DropgateError, Internal, PayloadTooLarge, ValidationError, error_for
from dropgate.ids import random_hex
from dropgate.models.common import error_body
from dropgate.settings import Settings

log = logging.getLogger("dropgate.http.connections")
SERVER_NAME = "dropgate"  # the Server header: no version banner
_FD_RESERVE = 64  # files, pipes, the embedded servers' sockets, the persister's connections
_MIN_CAP = 16
_LOG_EVERY_S = 10.0


def connection_cap(settings: Settings) -> int:
    """``http_max_connections``, or (0) what the open-file limit leaves once the Redis
    and PostgreSQL pools and a reserve have theirs."""
    if settings.http_max_connections > 0:
        return settings.http_max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 16
    reserved = settings.redis_max_connections + settings.database_pool_size + _FD_RESERVE
    return max(_MIN_CAP, soft - reserved)


@dataclass(frozen=True)
class Limits:
    """The per-connection limits one watchdog enforces (from the settings)."""

    header_timeout_s: float
    body_min_rate: int
    body_grace_s: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(header_timeout_s=settings.http_header_timeout_s,
                   body_min_rate=settings.http_body_min_rate,
                   body_grace_s=settings.http_body_grace_s,
                   max_connections=connection_cap(settings))

    def sweep_interval(self) -> float:
        return max(0.05, min(0.5, self.header_timeout_s / 4, self.body_grace_s / 4))


def body_too_slow(active_s: float, received: int, limits: Limits) -> bool:
    """Whether a body that has been read for ``active_s`` seconds, ``received`` bytes of
    it in, is more than the grace period behind the minimum rate.

    The grace is a credit the body keeps, not a delay after which the average must hold
    (the rule of Apache's ``mod_reqtimeout`` ``MinRate``): each ``body_min_rate`` bytes
    buy one more second. A drip of a few bytes a second is cut after the grace; a slow
    mobile client that stalls (a radio waking up, a handover, a lost segment's
    retransmit) is not, as long as its stall fits the grace plus what it sent ahead of
    the minimum rate. With an average-since-the-start rule, a stall of most of the grace
    at the start, or a long one after a slow start, cut off an upload running at twice
    the minimum rate.
    """
    if limits.body_min_rate <= 0:
        return False
    return active_s > limits.body_grace_s + received / limits.body_min_rate


def parser_refusal(status: int) -> DropgateError:
    """What a request the HTTP parser refused is told: a sentence of our own, never the
    parser's message (it quotes the request, an ``Authorization`` header included)."""
    if status == 413:
        return PayloadTooLarge("The request body is over the limit.")
    if status == 431 or status == 400:
        return ValidationError("Malformed HTTP request (request line or headers unreadable or too "
                               "large: at most 8190 bytes per line).", details={"field": "request"})
    if status >= 500:
        return Internal()
    err = error_for("HTTP_" + str(status), "The request was refused.")
    err.status = status  # type: ignore[misc]
    return err


class ConnectionCut(ConnectionResetError):
    """This process closed the connection of a request still sending its body (too slow
    for the minimum rate): the request has no one left to answer."""


class GuardedHandler(RequestHandler):
    """aiohttp's connection protocol, timed: when the current request started sending,
    how much of its body arrived, and whether the connection is idle."""

    def __init__(self, manager: GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        now = self._loop.time()
        self.opened_at = now
        self.received_at = now  # last byte received
        self.head_since: float | None = None  # first byte of a request whose headers are not in
        self.body_bytes = 0  # bytes received since the current request started
        self.body_active_s = 0.0  # time the current body was being read by this process
        self.gone = False  # closed, or being closed: no longer counted against the cap
        # each request starts with fresh counters: noted as aiohttp makes its request
        # object (a call), not by a coroutine wrapping every request (BENCHMARKS.md,
        # "Where each microsecond of a request goes")
        factory = self._request_factory
        assert factory is not None

        def make_request(*args: Any) -> BaseRequest:
            self.head_since = None
            self.body_bytes = 0
            self.body_active_s = 0.0
            return factory(*args)

        self._request_factory = make_request

    @property
    def active_at(self) -> float:
        """Last byte received or last answer finished (aiohttp starts the keep-alive
        timer as an answer finishes). Read by the watchdog, not per request: no
        coroutine wraps each request to note the time (BENCHMARKS.md, "Where each
        microsecond of a request goes")."""
        return max(self.received_at, self._next_keepalive_close_time - self._keepalive_timeout)

    def data_received(self, data: bytes) -> None:
        self.received_at = self._loop.time()
        if self._request_in_progress:
            self.body_bytes += len(data)
        elif self.head_since is None and data:
            self.head_since = self.received_at
        super().data_received(data)
        if self._messages:  # a whole request head arrived
            self.head_since = None

    def resume_reading(self, resume_parser: bool = True) -> None:
        """Nothing to resume unless something paused: aiohttp's ``StreamReader`` calls
        this after every read that leaves its buffer under the low-water mark, paused or
        not, and the base class then feeds the parser an empty ``data_received`` and the
        transport a ``resume_reading``, a few µs of every request with a body
        (BENCHMARKS.md, "Reading a body resumes nothing"). What a pause holds back is
        resumed as before: flow control (``pause_reading``) and a full message queue
        (``_buffer_paused``) both set the flags read here."""
        if self._reading_paused or self._buffer_paused:
            super().resume_reading(resume_parser)

    def idle(self) -> bool:
        """Waiting for a next request, nothing of it received."""
        return not self._request_in_progress and self.head_since is None and not self._messages

    def overdue(self, now: float, elapsed: float, limits: Limits) -> str | None:
        """Why this connection must be closed now, or None."""
        if self._force_close or self.transport is None:
            return None
        if self._request_in_progress:
            request = self._current_request
            if request is None or limits.body_min_rate <= 0 or request.content.is_eof():
                return None
            if self._reading_paused:  # this process is not reading: not the client's fault
                return None
            self.body_active_s += elapsed
            if body_too_slow(self.body_active_s, self.body_bytes, limits):
                return "request body further behind the minimum rate than the grace period"
            return None
        if self.head_since is not None and now - self.head_since > limits.header_timeout_s:
            return "request headers not complete within the header timeout"
        return None

    def cut(self, reason: str) -> None:
        """Close the connection; a handler reading its body gets ``ConnectionCut`` (the
        client's doing, answered 499 and logged in one line), not aiohttp's bare
        ``RuntimeError("Connection closed.")``, which reads as a server failure."""
        request = self._current_request
        if self._request_in_progress and request is not None and not request.content.is_eof():
            request.content.set_exception(ConnectionCut(reason))
        self.force_close()

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """A body the client broke off or sent undecodable is the client's doing: one
        info line, not aiohttp's "Unhandled exception" traceback."""
        exc = kw.get("exc_info")
        if isinstance(exc, web.RequestPayloadError | ConnectionResetError):
            log.info("dropped a connection from %s: request body unreadable or cut off (%s)",
                     self.peername, type(exc).__name__)
            return
        super().log_exception(*args, **kw)

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """The parser's refusals and unhandled failures in the error shape, not aiohttp's
        plain text (which quotes the request)."""
        if status >= 500:
            self.logger.error("unhandled failure answering %s", request.remote, exc_info=exc)
        else:
            log.info("refused an unreadable request from %s (%d)", request.remote, status)
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send another response")
        # an X-Request-Id of its own, as every answer carries (docs/api.md): the request's may be
        # in the headers the parser could not read (make fuzz: a 400 here had none)
        resp = web.Response(body=error_body(parser_refusal(status)), status=status,
                            content_type="application/json",
                            headers={"Server": SERVER_NAME, "X-Request-Id": random_hex(16)})
        resp.force_close()
        return resp


class GuardedServer(Server):
    """aiohttp's server, making ``GuardedHandler`` connections, capped and watched."""

    def __init__(self, *args: Any, limits: Limits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._watchdog: asyncio.Task[None] | None = None
        self._open = 0  # connections made, less those closed or being closed
        self._shed = 0
        self._timed_out = 0
        self._last_log = 0.0

    @classmethod
    def replacing(cls, server: Server, limits: Limits,
                  front: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None) -> GuardedServer:
        """The same server (handler, factory, protocol options) with the guard; ``front``
        in place of its handler when given."""
        return cls(front or server.request_handler, request_factory=server.request_factory,
                   handler_cancellation=server.handler_cancellation, loop=server._loop,
                   limits=limits, **server._kwargs)

    def __call__(self) -> RequestHandler:
        if self._watchdog is None:
            self._watchdog = self._loop.create_task(self._watch(), name="dropgate-connection-watchdog")
        return GuardedHandler(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self._open += isinstance(handler, GuardedHandler)
        excess = self._open - self.limits.max_connections
        if excess > 0:
            self._shed_connections(excess, handler)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        self._closed(handler)

    def _closed(self, handler: RequestHandler) -> None:
        """``handler`` no longer counts against the cap (closed, or being closed by us;
        aiohttp keeps it in ``_connections`` until its task ends)."""
        if isinstance(handler, GuardedHandler) and not handler.gone:  # (every handler is one)
            handler.gone = True
            self._open -= 1

    def _close(self, handler: RequestHandler) -> None:
        handler.force_close()
        self._closed(handler)

    def _shed_connections(self, count: int, newcomer: RequestHandler) -> None:
        """Close ``count`` connections: the oldest idle first, then the slowest
        half-sent request heads, else the newcomer. Under a crowd, a sixteenth of the
        cap more than ``count`` among the idle and the heads (not the newcomer): the scan
        of every connection then runs once per that many newcomers, not for each."""
        guarded = [h for h in self._connections if isinstance(h, GuardedHandler) and h is not newcomer
                   and not h.gone and h.transport is not None]
        idle = sorted((h for h in guarded if h.idle()), key=lambda h: h.active_at)
        heads = sorted((h for h in guarded if h.head_since is not None),
                       key=lambda h: h.head_since or 0.0)
        victims: list[RequestHandler] = [*(idle + heads)[:count + self.limits.max_connections // 16]]
        if len(victims) < count:
            victims.append(newcomer)
        for victim in victims:
            self._close(victim)
        self._shed += len(victims)
        self._report()

    def _report(self) -> None:
        now = self._loop.time()
        if now - self._last_log >= _LOG_EVERY_S and (self._shed or self._timed_out):
            log.warning("closed %d connections over the cap of %d and %d too slow (header timeout "
                        "%.3gs, body rate %d B/s) in the last %.0fs", self._shed,
                        self.limits.max_connections, self._timed_out, self.limits.header_timeout_s,
                        self.limits.body_min_rate, _LOG_EVERY_S)
            self._shed = self._timed_out = 0
            self._last_log = now

    async def _watch(self) -> None:
        interval = self.limits.sweep_interval()
        last = self._loop.time()
        while True:
            await asyncio.sleep(interval)
            now = self._loop.time()
            elapsed, last = now - last, now
            for handler in list(self._connections):
                if isinstance(handler, GuardedHandler):
                    reason = handler.overdue(now, elapsed, self.limits)
                    if reason is not None:
                        log.debug("closing %s: %s", handler.peername, reason)
                        handler.cut(reason)
                        self._closed(handler)
                        self._timed_out += 1
            self._report()

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (aiohttp's signature)
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        await super().shutdown(timeout)


class GuardedRunner(web.AppRunner):
    """``web.AppRunner`` serving through ``GuardedServer``; with ``front``, requests go
    to it instead of the application's router (it falls back to the router itself)."""

    def __init__(self, app: web.Application, *, limits: Limits,
                 front: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits
        self._front = front

    async def _make_server(self) -> Server:
        return GuardedServer.replacing(await super()._make_server(), self._limits, self._front)
