"""Connection hygiene: no slow or idle socket holds a serving process hostage.

aiohttp closes a connection that sends nothing for ``keepalive_timeout`` (also a new
one that never sends a byte), but it has no limit on a request whose headers or body
arrive a byte at a time, and it accepts connections until the process runs out of
file descriptors, after which it cannot accept anything, ``/healthz`` included. This
module adds what a reverse proxy would otherwise provide:

- a header deadline: from a request's first byte to the end of its headers
  (``http_header_timeout_s``);
- a minimum body rate: after ``http_body_grace_s``, a body must have arrived at
  ``http_body_min_rate`` bytes/s on average; the time this process itself stopped
  reading (flow control while a handler is busy) does not count against the client;
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
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from dropgate.errors import DropgateError, Internal, PayloadTooLarge, ValidationError, error_for
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


class GuardedHandler(RequestHandler):
    """aiohttp's connection protocol, timed: when the current request started sending,
    how much of its body arrived, and whether the connection is idle."""

    def __init__(self, manager: GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        now = self._loop.time()
        self.opened_at = now
        self.active_at = now  # last byte received or last answer finished
        self.head_since: float | None = None  # first byte of a request whose headers are not in
        self.body_bytes = 0  # bytes received since the current request started
        self.body_active_s = 0.0  # time the current body was being read by this process

    def data_received(self, data: bytes) -> None:
        self.active_at = self._loop.time()
        if self._request_in_progress:
            self.body_bytes += len(data)
        elif self.head_since is None and data:
            self.head_since = self.active_at
        super().data_received(data)
        if self._messages:  # a whole request head arrived
            self.head_since = None

    async def _handle_request(self, request: BaseRequest, start_time: float | None,
                              request_handler: Any) -> tuple[web.StreamResponse, bool]:
        self.head_since = None
        self.body_bytes = 0
        self.body_active_s = 0.0
        try:
            return await super()._handle_request(request, start_time, request_handler)
        finally:
            self.active_at = self._loop.time()

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
            if (self.body_active_s > limits.body_grace_s
                    and self.body_bytes < limits.body_min_rate * self.body_active_s):
                return "request body slower than the minimum rate"
            return None
        if self.head_since is not None and now - self.head_since > limits.header_timeout_s:
            return "request headers not complete within the header timeout"
        return None

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
        resp = web.Response(body=error_body(parser_refusal(status)), status=status,
                            content_type="application/json", headers={"Server": SERVER_NAME})
        resp.force_close()
        return resp


class GuardedServer(Server):
    """aiohttp's server, making ``GuardedHandler`` connections, capped and watched."""

    def __init__(self, *args: Any, limits: Limits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._watchdog: asyncio.Task[None] | None = None
        self._shed = 0
        self._timed_out = 0
        self._last_log = 0.0

    @classmethod
    def replacing(cls, server: Server, limits: Limits) -> GuardedServer:
        """The same server (handler, factory, protocol options) with the guard."""
        return cls(server.request_handler, request_factory=server.request_factory,
                   handler_cancellation=server.handler_cancellation, loop=server._loop,
                   limits=limits, **server._kwargs)

    def __call__(self) -> RequestHandler:
        if self._watchdog is None:
            self._watchdog = self._loop.create_task(self._watch(), name="dropgate-connection-watchdog")
        return GuardedHandler(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        excess = len(self._connections) - self.limits.max_connections
        if excess > 0:
            self._shed_connections(excess, handler)

    def _shed_connections(self, count: int, newcomer: RequestHandler) -> None:
        """Close ``count`` connections: the oldest idle first, then the slowest
        half-sent request heads, else the newcomer."""
        guarded = [h for h in self._connections if isinstance(h, GuardedHandler) and h is not newcomer
                   and h.transport is not None]
        idle = sorted((h for h in guarded if h.idle()), key=lambda h: h.active_at)
        heads = sorted((h for h in guarded if h.head_since is not None),
                       key=lambda h: h.head_since or 0.0)
        victims = (idle + heads)[:count]
        if len(victims) < count:
            victims.append(newcomer)  # type: ignore[arg-type]
        for victim in victims:
            victim.force_close()
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
                        handler.force_close()
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
    """``web.AppRunner`` serving through ``GuardedServer``."""

    def __init__(self, app: web.Application, *, limits: Limits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits

    async def _make_server(self) -> Server:
        return GuardedServer.replacing(await super()._make_server(), self._limits)


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_NAME


def add_server_header(app: web.Application) -> None:
    """Every answer of the app says ``Server: dropgate``, without a version."""
    app.on_response_prepare.append(_server_header)
