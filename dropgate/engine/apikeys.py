"""API keys: ``dg_<key_id>_<secret>`` tokens, stored as SHA-256 of the secret only.

The token carries its key id, so authentication is one HMGET in the key's partition
and a constant-time compare. A key carries a ``name`` (the person or system holding
it: four-eyes compares names), its ``scopes`` (``*`` = all, the form of every key made
before scopes existed) and ``created_by``, the key that minted it.

Answers are cached per process, each with the partition's revocation version it was
built under (read in the same pipeline as the key, before it). Every request compares
that with the partition's version as this process's revocation poller last saw it (no
await), or, when that poll is older than half a lease, with a version read after the
request arrived (``RevocationClock``); ``revoke`` answers only once every serving
process has acknowledged the new version or stopped trusting its view, so once it has
answered no process serves the key. A key minted by another key is put in its minter's partition,
so a cascade revokes the whole tree in one script.

Script <-> method: ``apikey_create-4.lua`` <-> ``ApiKeys.create``,
``apikey_revoke-3.lua`` <-> ``ApiKeys.revoke``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from typing import Literal

import msgspec

from dropgate.engine.context import EngineContext
from dropgate.engine.keys import partition_of
from dropgate.engine.revocations import RevocationClock
from dropgate.ids import text

Role = Literal["admin", "service"]
CACHE_TTL_S = 2.0
_CACHE_MAX = 10_000
ALL_SCOPES = "*"


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: a role, for a service key its one tenant, its name and scopes."""

    role: Role
    tenant_id: str | None
    key_id: str | None
    name: str = ""
    scopes: frozenset[str] | None = None  # None: every scope

    def allows(self, scope: str) -> bool:
        return self.scopes is None or scope in self.scopes

    @property
    def identity(self) -> str:
        """Who this is for four-eyes: the name, compared case-insensitively; a key
        without a name (made before names existed) stands for itself alone."""
        if self.name:
            return "name:" + self.name.casefold()
        return "key:" + (self.key_id or "bootstrap")


class Revoked(msgspec.Struct, frozen=True):
    key_id: str
    revoked: list[str]
    revocation_version: int


class _Entry(msgspec.Struct, frozen=True, gc=False):
    expires: float
    principal: Principal | None
    partition: int
    version: int


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    if not token.startswith("dg_") or token.count("_") != 2:
        return None
    _, key_id, secret = token.split("_")
    if not key_id or not secret or len(token) > 200:
        return None
    return key_id, secret


def encode_scopes(scopes: Iterable[str] | None) -> str:
    return ALL_SCOPES if scopes is None else " ".join(sorted(set(scopes)))


def decode_scopes(raw: str | None) -> frozenset[str] | None:
    if raw is None or raw == ALL_SCOPES:
        return None
    return frozenset(raw.split())


class ApiKeys:
    def __init__(self, ctx: EngineContext) -> None:
        self._ctx = ctx
        self.clock = RevocationClock(ctx.redis, ctx.keys, ctx.scripts,
                                     poll_ms=ctx.settings.revocation_poll_ms,
                                     lease_ms=ctx.settings.revocation_lease_ms)
        self._cache: dict[str, _Entry] = {}
        # single flight: when a cached answer expires under a crowd, one lookup runs
        # and the other requests with the same token wait for it
        self._lookups: dict[str, asyncio.Future[_Entry]] = {}

    def _new_id(self, created_by: str | None) -> str:
        """A fresh key id; a minted key's id falls in its minter's partition."""
        if created_by is None:
            return "k" + secrets.token_hex(8)
        want = partition_of(created_by, self._ctx.keys.partitions)
        while True:
            key_id = "k" + secrets.token_hex(8)
            if partition_of(key_id, self._ctx.keys.partitions) == want:
                return key_id

    async def create(
        self, *, role: Role, tenant_id: str | None, name: str = "",
        scopes: Iterable[str] | None = None, created_by: str | None = None,
    ) -> tuple[str, str]:
        """Return ``(key_id, token)``; the token is shown once and never stored.

        ``created_by`` (the minting key) must still exist when the key is stored,
        else ``Unauthorized``."""
        key_id = self._new_id(created_by)
        secret = secrets.token_hex(20)
        p, key = self._ctx.keys.api_key(key_id)
        if created_by is None:
            minter, minted = key, self._ctx.keys.api_key_minted(key_id)
        else:
            minter, minted = self._ctx.keys.api_key(created_by)[1], self._ctx.keys.api_key_minted(created_by)
        await self._ctx.scripts.call(
            "apikey_create",
            [self._ctx.keys.log(p), key, minter, minted],
            [self._ctx.backlog_bound, key_id, secret_digest(secret), role, tenant_id or "",
             name, encode_scopes(scopes), created_by or ""],
        )
        return key_id, f"dg_{key_id}_{secret}"

    async def revoke(self, key_id: str, *, cascade: bool = False) -> Revoked:
        """Revoke a key (and with ``cascade`` every key it minted, transitively)."""
        p, key = self._ctx.keys.api_key(key_id)
        result = await self._ctx.scripts.call(
            "apikey_revoke", [self._ctx.keys.log(p), key, self._ctx.keys.api_key_revocations(p)],
            [self._ctx.backlog_bound, key_id, "1" if cascade else "0", self._ctx.keys.api_key_prefix(p)],
            type=Revoked,
        )
        gone = tuple(f"dg_{k}_" for k in result.revoked)
        self._cache = {t: v for t, v in self._cache.items() if not t.startswith(gone)}
        await self.clock.revoke_wait(p, result.revocation_version)
        return result

    def known(self, token: str) -> Principal | None:
        """The token's principal when the cache answers without a wait (a live entry no
        revoke has passed, by the poller's current view); else None, and ``authenticate``
        decides. Why: a crowd's request is one dict lookup and a compare here, not two
        coroutines (BENCHMARKS.md, "The hot routes' own path")."""
        hit = self._cache.get(token)
        if hit is None or hit.principal is None or hit.expires <= time.monotonic():
            return None
        view = self.clock.view()
        return hit.principal if view is not None and hit.version >= view[hit.partition] else None

    async def authenticate(self, token: str) -> Principal | None:
        """The token's principal, never one revoked before this call began."""
        hit = self._cache.get(token)
        if hit is not None and hit.expires > time.monotonic():
            if hit.principal is None:
                return None  # unknown keys stay unknown: a revoked key is never restored
            view = self.clock.view()
            if view is not None:  # the poller is current: no await (a newer entry is fine)
                if hit.version >= view[hit.partition]:
                    return hit.principal
            elif await self.clock.read(hit.partition) == hit.version:
                return hit.principal
        pending = self._lookups.get(token)
        if pending is not None:
            # joined a lookup that may have begun before a revoke: check its version
            entry = await asyncio.shield(pending)
            if entry.principal is None or await self._current(entry):
                return entry.principal
        return (await self._single_flight(token)).principal

    async def _current(self, entry: _Entry) -> bool:
        """No revoke of the entry's partition since it was built (answered before now)."""
        view = self.clock.view()
        if view is not None:
            return entry.version >= view[entry.partition]
        return await self.clock.read(entry.partition) == entry.version

    async def _single_flight(self, token: str) -> _Entry:
        future: asyncio.Future[_Entry] = asyncio.get_running_loop().create_future()
        self._lookups[token] = future
        try:
            entry = await self._lookup(token)
        except BaseException as exc:
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            else:
                future.cancel()
            raise
        else:
            future.set_result(entry)
        finally:
            if self._lookups.get(token) is future:
                del self._lookups[token]
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[token] = entry
        return entry

    async def _lookup(self, token: str) -> _Entry:
        expires = time.monotonic() + CACHE_TTL_S
        parts = split_token(token)
        if parts is None:
            return _Entry(expires, None, -1, 0)
        key_id, secret = parts
        try:
            p, key = self._ctx.keys.api_key(key_id)
        except ValueError:
            return _Entry(expires, None, -1, 0)
        # the version first: a revoke between the two reads then shows as a changed version
        async with self._ctx.redis.pipeline(transaction=False) as pipe:
            pipe.get(self._ctx.keys.api_key_revocations(p))
            pipe.hmget(key, "secret_sha256", "role", "tenant_id", "name", "scopes")
            version, (stored, role, tenant_id, name, scopes) = await pipe.execute()
        if stored is None or not hmac.compare_digest(text(stored), secret_digest(secret)):
            return _Entry(expires, None, -1, 0)
        principal = Principal(
            role="admin" if role is not None and text(role) == "admin" else "service",
            tenant_id=text(tenant_id) or None if tenant_id else None,
            key_id=key_id,
            name=text(name) if name else "",
            scopes=decode_scopes(text(scopes) if scopes else None),
        )
        return _Entry(expires, principal, p, int(version or 0))

    async def close(self) -> None:
        await self.clock.close()
