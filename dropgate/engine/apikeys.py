"""API keys: ``dg_<key_id>_<secret>`` tokens, stored as SHA-256 of the secret only.

The token carries its key id, so authentication is one HMGET in the key's partition
and a constant-time compare. Answers are cached per process for a few seconds
(revocation reaches other processes within ``CACHE_TTL_S``; the revoking process
forgets at once).

Script <-> method: ``apikey_create-2.lua`` <-> ``ApiKeys.create``,
``apikey_revoke-2.lua`` <-> ``ApiKeys.revoke``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from typing import Literal

import msgspec

from dropgate.engine.context import EngineContext
from dropgate.ids import text

Role = Literal["admin", "service"]
CACHE_TTL_S = 2.0
_CACHE_MAX = 10_000


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: a role, and for a service key its one tenant."""

    role: Role
    tenant_id: str | None
    key_id: str | None


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    if not token.startswith("dg_") or token.count("_") != 2:
        return None
    _, key_id, secret = token.split("_")
    if not key_id or not secret or len(token) > 200:
        return None
    return key_id, secret


class ApiKeys:
    def __init__(self, ctx: EngineContext) -> None:
        self._ctx = ctx
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        # single flight: when a cached answer expires under a crowd, one lookup runs
        # and the other requests with the same token wait for it
        self._lookups: dict[str, asyncio.Future[Principal | None]] = {}

    async def create(self, *, role: Role, tenant_id: str | None) -> tuple[str, str]:
        """Return ``(key_id, token)``; the token is shown once and never stored."""
        key_id = "k" + secrets.token_hex(8)
        secret = secrets.token_hex(20)
        p, key = self._ctx.keys.api_key(key_id)
        await self._ctx.scripts.call(
            "apikey_create",
            [self._ctx.keys.log(p), key],
            [self._ctx.backlog_bound, key_id, secret_digest(secret), role, tenant_id or ""],
        )
        return key_id, f"dg_{key_id}_{secret}"

    async def revoke(self, key_id: str) -> None:
        p, key = self._ctx.keys.api_key(key_id)
        await self._ctx.scripts.call(
            "apikey_revoke", [self._ctx.keys.log(p), key], [self._ctx.backlog_bound, key_id]
        )
        self._cache = {t: v for t, v in self._cache.items() if not t.startswith(f"dg_{key_id}_")}

    def cached(self, token: str) -> Principal | None:
        """The token's principal when this process knows it (no await: the common case
        of every request after a key's first)."""
        hit = self._cache.get(token)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    async def authenticate(self, token: str) -> Principal | None:
        now = time.monotonic()
        hit = self._cache.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        pending = self._lookups.get(token)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
        self._lookups[token] = future
        try:
            principal = await self._lookup(token)
        except BaseException as exc:
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            else:
                future.cancel()
            raise
        else:
            future.set_result(principal)
        finally:
            del self._lookups[token]
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[token] = (now + CACHE_TTL_S, principal)
        return principal

    async def _lookup(self, token: str) -> Principal | None:
        parts = split_token(token)
        if parts is None:
            return None
        key_id, secret = parts
        try:
            _, key = self._ctx.keys.api_key(key_id)
        except ValueError:
            return None
        stored, role, tenant_id = await self._ctx.redis.hmget(key, "secret_sha256", "role", "tenant_id")
        if stored is None or not hmac.compare_digest(text(stored), secret_digest(secret)):
            return None
        return Principal(
            role="admin" if role is not None and text(role) == "admin" else "service",
            tenant_id=text(tenant_id) or None if tenant_id else None,
            key_id=key_id,
        )
