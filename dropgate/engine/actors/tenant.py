"""The tenant actor: a tenant's subscription-sensitive operations, one at a time, in order.

Payments, withdrawals (initiate, approve), orders, bookings and subscription
changes of one tenant all go through its actor's mailbox, so inside a process they
run in arrival order and a suspension queues behind the operations that arrived
before it (and ahead of those after). Across processes the scripts themselves
check the subscription (``dg_tenant_inactive``) and the activation's lease
(``dg_actor_fence``): Redis orders what the actors of several processes send.

The actor knows no operation by name: a caller hands it one (``run``: a ledger
script wrapper such as ``Ledger.payment``, called as ``op(tenant_id, epoch, ...)``)
and the actor supplies the order and the fence. Adding an operation touches the
ledger and its route, never this module.

An activation takes a lease with a new epoch (``on_activate``), renews it as it
works (every successful script renews it; an explicit renewal when a third of the
TTL passed without one) and releases it when it passivates. If a script answers
``STALE_EPOCH`` (this process was paused or cut off past the TTL), that write was
refused, the caller gets 409, and the actor forgets its epoch: the next message
activates it afresh.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, TypeVar

from dropgate.engine.actors.lease import ActorLease
from dropgate.engine.actors.runtime import Actor, ActorSystem
from dropgate.engine.context import EngineContext
from dropgate.errors import StaleEpoch
from dropgate.ids import check_id

log = logging.getLogger(__name__)
R = TypeVar("R")
P = ParamSpec("P")


class TenantActor(Actor):
    """One activation of a tenant: its lease epoch, kept fresh while it works."""

    def __init__(self, tenant_id: str, *, lease: ActorLease, lease_ms: int) -> None:
        super().__init__(tenant_id)
        self._lease = lease
        self._lease_ms = lease_ms
        self.epoch: int | None = None
        self._renew_at = 0.0

    @property
    def tenant_id(self) -> str:
        return self.key

    async def on_activate(self) -> None:
        await self._acquire()

    async def on_passivate(self) -> None:
        if self.epoch is not None:
            epoch, self.epoch = self.epoch, None
            await self._lease.release(self.key, epoch)

    async def _acquire(self) -> int:
        lease = await self._lease.acquire(self.key, ttl_ms=self._lease_ms)
        self.epoch = lease.epoch
        self._renewed()
        return lease.epoch

    def _renewed(self) -> None:
        self._renew_at = time.monotonic() + self._lease_ms / 3000

    async def _current_epoch(self) -> int:
        if self.epoch is None:
            return await self._acquire()
        if time.monotonic() >= self._renew_at:
            try:
                await self._lease.renew(self.key, self.epoch, ttl_ms=self._lease_ms)
                self._renewed()
            except StaleEpoch:
                log.warning("tenant actor %s: lease of epoch %d lapsed between turns; "
                            "activating afresh", self.key, self.epoch)
                return await self._acquire()
        return self.epoch

    async def fenced(self, op: Callable[[int], Awaitable[R]]) -> R:
        """Run ``op(epoch)`` (one critical script) under this activation's lease."""
        epoch = await self._current_epoch()
        try:
            result = await op(epoch)
        except StaleEpoch:
            if self.epoch == epoch:
                self.epoch = None
            raise
        self._renewed()
        return result


class TenantActorSystem(ActorSystem[TenantActor]):
    """The tenant actors of this process: ``ask`` orders, ``run`` orders and fences."""

    def __init__(self, ctx: EngineContext) -> None:
        settings = ctx.settings
        super().__init__("tenant", self._new_actor, mailbox_size=settings.actor_mailbox_size,
                         idle_s=settings.actor_idle_s, key_field="tenant_id")
        self.lease = ActorLease(ctx)
        self._lease_ms = settings.actor_lease_ms

    def _new_actor(self, tenant_id: str) -> TenantActor:
        return TenantActor(tenant_id, lease=self.lease, lease_ms=self._lease_ms)

    async def ask(self, tenant_id: str, fn: Callable[[TenantActor], Awaitable[R]]) -> R:
        """Run ``fn(actor)`` in the tenant's next turn, behind what it has queued."""
        check_id(tenant_id, "tenant_id")  # a bad id is a 400 before an actor exists for it
        return await super().ask(tenant_id, fn)

    async def run(self, tenant_id: str, op: Callable[Concatenate[str, int, P], Awaitable[R]],
                  *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the critical script ``op(tenant_id, epoch, *args, **kwargs)`` in the tenant's
        next turn, under its activation's lease (``epoch`` is the lease's fence)."""
        return await self.ask(tenant_id, lambda actor: actor.fenced(
            lambda epoch: op(tenant_id, epoch, *args, **kwargs)))
