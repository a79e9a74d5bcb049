"""One POST of one signed body to one endpoint, and what came of it.

The session's resolver is ``GuardedResolver`` (the address connected to is the
address checked), DNS answers are not cached (a changed answer is checked again),
redirects are not followed (a 3xx is a failed attempt), connections are kept alive
(each to an address checked when it was opened), and each attempt has
``webhook_timeout_s`` in all. Attempts per endpoint are bounded by a semaphore of
``webhook_concurrency`` in this process; a receiver that hangs holds only its own
endpoint's slots.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import aiohttp

from dropgate.settings import Settings
from dropgate.webhooks.signing import HEADER, signature_header
from dropgate.webhooks.urls import GuardedResolver, HostResolver, UnsafeTarget, check_target

USER_AGENT = "dropgate-webhooks/1"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int | None = None
    error: str | None = None


def retry_delay_s(attempts: int, settings: Settings) -> float:
    """Exponential backoff with jitter: about base * 2**(attempts-1), capped, in [0.5, 1] of it."""
    delay = min(settings.webhook_retry_base_s * 2 ** max(attempts - 1, 0), settings.webhook_retry_max_s)
    jitter: float = random.uniform(0.5, 1.0)
    return float(delay) * jitter


class Deliverer:
    def __init__(self, settings: Settings, resolve: HostResolver) -> None:
        self._settings = settings
        self._resolve = resolve
        self._session: aiohttp.ClientSession | None = None
        self._slots: dict[str, asyncio.Semaphore] = {}

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            resolver = GuardedResolver(self._resolve, allow_private=self._settings.webhook_allow_private)
            # kept-alive connections are to addresses checked when they were opened; a new
            # connection resolves (and checks) again: no DNS cache
            connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, limit=0)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self._settings.webhook_timeout_s),
                headers={"User-Agent": USER_AGENT}, auto_decompress=False)
        return self._session

    def slots(self, endpoint_id: str) -> asyncio.Semaphore:
        slot = self._slots.get(endpoint_id)
        if slot is None:
            slot = self._slots[endpoint_id] = asyncio.Semaphore(self._settings.webhook_concurrency)
        return slot

    async def deliver(self, *, endpoint_id: str, url: str, secret: str, body: bytes) -> Outcome:
        async with self.slots(endpoint_id):
            return await self._post(url, secret, body)

    async def _post(self, url: str, secret: str, body: bytes) -> Outcome:
        settings = self._settings
        try:
            # a literal IP never reaches the resolver: check it here (names are checked there)
            await check_target(url, allow_private=settings.webhook_allow_private,
                               allow_http=settings.webhook_allow_http, resolve=None)
        except UnsafeTarget as exc:
            return Outcome(ok=False, error=f"refused: {exc}")
        headers = {"Content-Type": "application/json", HEADER: signature_header(secret, body)}
        try:
            async with self._open().post(url, data=body, headers=headers, allow_redirects=False) as resp:
                await resp.content.read(4096)  # drain a little; the body is not kept
                if 200 <= resp.status < 300:
                    return Outcome(ok=True, status=resp.status)
                return Outcome(ok=False, status=resp.status, error=f"HTTP {resp.status}")
        except UnsafeTarget as exc:
            return Outcome(ok=False, error=f"refused: {exc}")
        except TimeoutError:
            return Outcome(ok=False, error=f"no answer within {settings.webhook_timeout_s:g}s")
        except aiohttp.ClientConnectorError as exc:
            cause = exc.os_error
            if isinstance(cause, UnsafeTarget):
                return Outcome(ok=False, error=f"refused: {cause}")
            return Outcome(ok=False, error=f"connection failed: {cause}")
        except (aiohttp.ClientError, OSError) as exc:
            if isinstance(exc.__cause__, UnsafeTarget):
                return Outcome(ok=False, error=f"refused: {exc.__cause__}")
            return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

