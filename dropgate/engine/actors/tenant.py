"""The tenant actor: a tenant's subscription-sensitive operations, one at a time, in order.

Payments, withdrawals (initiate, approve), orders, bookings and subscription
changes of one tenant all go through its actor's mailbox, so inside a process they
run in arrival order and a suspension queues behind the operations that arrived
before it (and ahead of those after). Across processes the scripts themselves
check the subscription (``dg_tenant_inactive``) and the activation's lease
(``dg_actor_fence``): Redis orders what the actors of several processes send.

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
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec

from dropgate.engine.actors.lease import ActorLease
from dropgate.engine.actors.runtime import Actor, ActorSystem
from dropgate.engine.context import EngineContext
from dropgate.engine.ledger import BookingResult, Ledger, OrderState, PaymentResult, WithdrawalState
from dropgate.engine.tenants import Tenants, TenantState
from dropgate.errors import NotFound, StaleEpoch

log = logging.getLogger(__name__)
R = TypeVar("R")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class TenantActor(Actor):
    def __init__(self, tenant_id: str, *, ledger: Ledger, lease: ActorLease, tenants: Tenants,
                 lease_ms: int) -> None:
        super().__init__(tenant_id)
        self.ledger = ledger
        self.tenants = tenants
        self._lease = lease
        self._lease_ms = lease_ms
        self.epoch: int | None = None
        self.activations = 0
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
        self.activations += 1
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

    # -- operations (each runs in one turn) ------------------------------------------------
    async def payment(self, *, amount: int, currency: str, reference: str) -> PaymentResult:
        payment_id = new_id("pay")
        return await self.fenced(lambda epoch: self.ledger.payment(
            self.key, epoch=epoch, payment_id=payment_id, amount=amount, currency=currency,
            reference=reference))

    async def withdrawal_initiate(self, *, amount: int, currency: str,
                                  initiated_by: str) -> WithdrawalState:
        withdrawal_id = new_id("wd")
        return await self.fenced(lambda epoch: self.ledger.withdrawal_initiate(
            self.key, epoch=epoch, withdrawal_id=withdrawal_id, amount=amount, currency=currency,
            initiated_by=initiated_by))

    async def withdrawal_approve(self, withdrawal_id: str, *, approved_by: str) -> WithdrawalState:
        return await self.fenced(lambda epoch: self.ledger.withdrawal_approve(
            self.key, epoch=epoch, withdrawal_id=withdrawal_id, approved_by=approved_by))

    async def order(self, *, order_id: str | None, items_json: str, total: int,
                    currency: str) -> OrderState:
        oid = order_id or new_id("ord")
        return await self.fenced(lambda epoch: self.ledger.order(
            self.key, epoch=epoch, order_id=oid, items_json=items_json, total=total,
            currency=currency))

    async def booking(self, *, resource_id: str, slot_start_ms: int, slot_end_ms: int,
                      capacity: int | None, user_id: str) -> BookingResult:
        booking_id = new_id("bk")
        return await self.fenced(lambda epoch: self.ledger.booking(
            self.key, epoch=epoch, booking_id=booking_id, resource_id=resource_id,
            slot_start_ms=slot_start_ms, slot_end_ms=slot_end_ms, capacity=capacity,
            user_id=user_id))

    async def set_subscription(self, *, status: str, trial_end_ms: int | None) -> TenantState:
        return await self.tenants.set_subscription(self.key, status=status, trial_end_ms=trial_end_ms)


class Item(msgspec.Struct, frozen=True):
    sku: str
    quantity: int


_items_encoder = msgspec.json.Encoder()


class TenantActors:
    """The tenant actor system and the operations the HTTP layer calls."""

    def __init__(self, ctx: EngineContext, tenants: Tenants) -> None:
        self.ledger = Ledger(ctx)
        self.lease = ActorLease(ctx)
        self.tenants = tenants
        settings = ctx.settings
        self.system: ActorSystem[TenantActor] = ActorSystem(
            "tenant", self._new_actor, mailbox_size=settings.actor_mailbox_size,
            idle_s=settings.actor_idle_s, key_field="tenant_id",
        )
        self._keys = ctx.keys
        self._lease_ms = settings.actor_lease_ms

    def _new_actor(self, tenant_id: str) -> TenantActor:
        return TenantActor(tenant_id, ledger=self.ledger, lease=self.lease, tenants=self.tenants,
                           lease_ms=self._lease_ms)

    async def ask(self, tenant_id: str, fn: Callable[[TenantActor], Awaitable[R]]) -> R:
        self._keys.tenant(tenant_id)  # validates the id before an actor exists for it
        return await self.system.ask(tenant_id, fn)

    async def payment(self, tenant_id: str, *, amount: int, currency: str,
                      reference: str) -> PaymentResult:
        return await self.ask(tenant_id, lambda a: a.payment(amount=amount, currency=currency,
                                                             reference=reference))

    async def withdrawal_initiate(self, tenant_id: str, *, amount: int, currency: str,
                                  initiated_by: str) -> WithdrawalState:
        return await self.ask(tenant_id, lambda a: a.withdrawal_initiate(
            amount=amount, currency=currency, initiated_by=initiated_by))

    async def withdrawal_approve(self, tenant_id: str, withdrawal_id: str, *,
                                 approved_by: str) -> WithdrawalState:
        self._keys.tenant(tenant_id).withdrawal(withdrawal_id)  # a bad id is a 400 before queueing
        return await self.ask(tenant_id, lambda a: a.withdrawal_approve(withdrawal_id,
                                                                        approved_by=approved_by))

    async def order(self, tenant_id: str, *, order_id: str | None, items: list[Item], total: int,
                    currency: str) -> OrderState:
        items_json = _items_encoder.encode(items).decode()
        return await self.ask(tenant_id, lambda a: a.order(order_id=order_id, items_json=items_json,
                                                           total=total, currency=currency))

    async def booking(self, tenant_id: str, *, resource_id: str, slot_start_ms: int,
                      slot_end_ms: int, capacity: int | None, user_id: str) -> BookingResult:
        return await self.ask(tenant_id, lambda a: a.booking(
            resource_id=resource_id, slot_start_ms=slot_start_ms, slot_end_ms=slot_end_ms,
            capacity=capacity, user_id=user_id))

    async def set_subscription(self, tenant_id: str, *, status: str,
                               trial_end_ms: int | None) -> TenantState:
        """Ordered behind the tenant's queued operations and ahead of later ones."""
        if not await self.tenants.exists(tenant_id):
            raise NotFound("No such tenant.", details={"tenant_id": tenant_id})
        return await self.ask(tenant_id, lambda a: a.set_subscription(status=status,
                                                                      trial_end_ms=trial_end_ms))

    async def close(self, *, timeout_s: float = 10.0) -> None:
        await self.system.close(timeout_s=timeout_s)
