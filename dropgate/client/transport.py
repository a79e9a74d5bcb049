"""One HTTP exchange with retries: the part of the client every namespace shares.

A logical call is sent up to ``1 + retries`` times. It is sent again after a
connection error or timeout, a 429 (waiting at least its ``Retry-After``) and a
503, with exponential backoff and jitter between attempts. An unsafe call (POST)
carries one ``Idempotency-Key`` made for the logical call and kept across its
attempts. Where the server replays by key (``REPLAYED_BY_KEY``, the server's own
list in ``dropgate.models.idempotency``: purchases, payments, withdrawals, orders,
bookings, code reservations, invite and promo redemptions) a repeat answers the
first result; a repeat that meets the first attempt still running (409
``IDEMPOTENCY_KEY_IN_USE``) waits and tries again. Any other POST is resent only
after a failure that proves nothing was applied (a connection never made, a 429, a
503 answered before any change), never after a timeout or a lost answer. Every
other answer of 400 or more becomes the exception of its error code, raised at once.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
from yarl import URL

from dropgate import __version__
from dropgate.client.errors import (
    ConnectionFailed,
    DropgateError,
    IdempotencyKeyInUse,
    Internal,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Timeout,
    Unauthorized,
    Unavailable,
    error_for,
)
from dropgate.models.common import ErrorBody
from dropgate.models.idempotency import REFUSED_BEFORE_CHANGE

USER_AGENT = f"dropgate-python/{__version__}"
RETRY_STATUSES = frozenset({429, 503})
# Methods whose repeat could apply twice: always sent with an Idempotency-Key, kept across
# attempts. GET reads; PUT, PATCH and DELETE set state, so a repeat leaves the same state.
UNSAFE_METHODS = frozenset({"POST"})
_error_decoder = msgspec.json.Decoder(ErrorBody)
_BY_STATUS: dict[int, type[DropgateError]] = {
    401: Unauthorized, 404: NotFound, 405: MethodNotAllowed, 413: PayloadTooLarge,
    429: RateLimited, 500: Internal, 503: Unavailable,
}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long the client waits before sending a call again."""

    retries: int = 3
    backoff_s: float = 0.25
    max_backoff_s: float = 8.0
    max_retry_after_s: float = 60.0

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: half the ceiling, plus up to the other half."""
        ceiling = min(self.max_backoff_s, self.backoff_s * 2.0**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass(frozen=True)
class Answer:
    """A successful HTTP answer."""

    status: int
    body: bytes
    request_id: str | None


def new_idempotency_key() -> str:
    """A fresh key for one logical call."""
    return str(uuid.uuid4())


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_from_answer(status: int, body: bytes, headers: Mapping[str, str]) -> DropgateError:
    """The exception of an error answer: its code's class, or by status when the body is foreign."""
    request_id = headers.get("X-Request-Id")
    try:
        decoded = _error_decoder.decode(body)
    except msgspec.MsgspecError:
        cls = _BY_STATUS.get(status)
        snippet = body[:200].decode("utf-8", "replace").strip()
        message = f"HTTP {status}" + (f": {snippet}" if snippet else "")
        if cls is not None:
            exc = cls(message, request_id=request_id)
        else:
            exc = DropgateError(message, request_id=request_id)
            exc.code = f"HTTP_{status}"  # type: ignore[misc]
    else:
        exc = error_for(decoded.code, decoded.error, details=decoded.details, request_id=request_id)
    if exc.status != status and type(exc) is DropgateError:
        exc.status = status  # type: ignore[misc]
    if isinstance(exc, RateLimited):
        exc.header_retry_after_s = parse_retry_after(headers.get("Retry-After"))
    return exc


class Transport:
    """The aiohttp session, the credentials and the retry loop, shared by tenant views."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float,
        policy: RetryPolicy,
        max_connections: int = 100,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.policy = policy
        self.max_connections = max_connections
        self._auth = f"Bearer {api_key}"
        self._session = session
        self._owns_session = session is None
        self._closed = False

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("This dropgate client is closed.")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            )
        return self._session

    async def close(self) -> None:
        self._closed = True
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    def _retry_wait(self, exc: DropgateError, attempt: int, retry_after_s: float | None) -> float | None:
        """Seconds to wait before the next attempt, or None when this answer is final."""
        if exc.status in RETRY_STATUSES:
            if isinstance(exc, RateLimited) and exc.retry_after is not None:
                retry_after_s = exc.retry_after
            if retry_after_s is not None:
                if retry_after_s > self.policy.max_retry_after_s:
                    return None
                return max(retry_after_s, self.policy.backoff(attempt))
            return self.policy.backoff(attempt)
        if isinstance(exc, IdempotencyKeyInUse) and attempt > 0:
            # our own earlier attempt is still running on the server: wait for it
            return self.policy.backoff(attempt)
        return None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
        tenant_id: str | None = None,
        idempotency_key: str | None = None,
        retries: int | None = None,
        ok_statuses: tuple[int, ...] = (),
        content_type: str = "application/json",
        replayable: bool = True,
    ) -> Answer:
        """Send one logical call (retrying as the policy allows); raise its error or answer it."""
        headers = {"Authorization": self._auth, "X-Request-Id": uuid.uuid4().hex}
        if body is not None:
            headers["Content-Type"] = content_type
        if tenant_id:
            headers["X-Tenant-Id"] = tenant_id
        if method in UNSAFE_METHODS and not idempotency_key:
            idempotency_key = new_idempotency_key()
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        # A POST the server does not replay by key may be sent again only after a
        # failure that proves the first attempt changed nothing: a connection never
        # made, a rate-limit refusal, or a 503 answered before any change. A timeout or
        # a connection lost after sending is ambiguous, and is raised instead.
        at_most_once = method in UNSAFE_METHODS and not replayable
        url = URL(self.base_url + path, encoded=True)
        limit = self.policy.retries if retries is None else retries
        attempt = 0
        while True:
            failure: DropgateError
            wait: float | None
            try:
                async with self.session.request(method, url, data=body, params=params,
                                                headers=headers) as response:
                    raw = await response.read()
                    status, answer_headers = response.status, response.headers
            except TimeoutError as exc:
                failure = Timeout(f"{method} {path}: no answer within {self.timeout_s} s.",
                                  request_id=headers["X-Request-Id"])
                failure.__cause__ = exc
                wait = None if at_most_once else self.policy.backoff(attempt)
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                failure = ConnectionFailed(f"{method} {path}: {type(exc).__name__}: {exc}",
                                           request_id=headers["X-Request-Id"])
                failure.__cause__ = exc
                never_sent = isinstance(exc, aiohttp.ClientConnectorError)
                wait = None if at_most_once and not never_sent else self.policy.backoff(attempt)
            else:
                if status < 400 or status in ok_statuses:
                    return Answer(status, raw, answer_headers.get("X-Request-Id"))
                failure = error_from_answer(status, raw, answer_headers)
                wait = self._retry_wait(failure, attempt,
                                        parse_retry_after(answer_headers.get("Retry-After")))
                if at_most_once and status == 503 and failure.code not in REFUSED_BEFORE_CHANGE:
                    wait = None
            if wait is None or attempt >= limit:
                raise failure
            attempt += 1
            await asyncio.sleep(wait)


def encode(body: Any) -> bytes:
    return msgspec.json.encode(body)
