"""An actor's lease with a fencing epoch, kept in Redis.

Script <-> methods: ``actor_lease-1.lua`` <-> ``ActorLease.acquire``, ``renew``,
``release`` (one script, its first argument names the action).

Each activation of a tenant actor takes its own epoch and lease (now + TTL, Redis
time) and renews it as it works; the tenant's critical scripts refuse an epoch
whose lease is gone or lapsed. So an activation in a process that was paused or
cut off past the TTL cannot commit anything when it wakes up, whatever it still
believes; live activations of the same tenant in several processes are allowed
(each script checks the subscription itself, so they are harmless).
"""

from __future__ import annotations

import msgspec

from dropgate.engine.context import EngineContext


class Lease(msgspec.Struct, kw_only=True):
    epoch: int
    expires_ms: int
    now_ms: int


class ActorLease:
    def __init__(self, ctx: EngineContext) -> None:
        self._ctx = ctx

    def _key(self, tenant_id: str) -> str:
        return self._ctx.keys.tenant(tenant_id).actor_lease()

    async def acquire(self, tenant_id: str, *, ttl_ms: int) -> Lease:
        """A new epoch with a lease of ``ttl_ms``."""
        return await self._ctx.scripts.call("actor_lease", [self._key(tenant_id)],
                                            ["acquire", "", ttl_ms], type=Lease)

    async def renew(self, tenant_id: str, epoch: int, *, ttl_ms: int) -> Lease:
        """Extend a live lease; raises StaleEpoch if it has lapsed."""
        return await self._ctx.scripts.call("actor_lease", [self._key(tenant_id)],
                                            ["renew", epoch, ttl_ms], type=Lease)

    async def release(self, tenant_id: str, epoch: int) -> None:
        await self._ctx.scripts.call("actor_lease", [self._key(tenant_id)],
                                     ["release", epoch, 0], type=Lease)
