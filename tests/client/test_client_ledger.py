"""``client.payments``, ``.withdrawals``, ``.orders`` and ``.bookings`` against the live server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from dropgate.client import (
    AlreadyExists,
    AsyncDropgate,
    Conflict,
    FourEyesRequired,
    InsufficientFunds,
    NotFound,
    SlotFull,
    SubscriptionInactive,
    Unauthorized,
    ValidationError,
)
from dropgate.models.ledger import OrderItem, Withdrawal
from tests.client.conftest import LiveServer, TenantAccess


async def test_payments_and_four_eyes_withdrawals(dg: AsyncDropgate, admin: AsyncDropgate,
                                                  live: LiveServer, tenant: TenantAccess) -> None:
    paid = await dg.payments.create("100.5", currency="usd", reference="inv-1")
    assert (paid.amount, paid.currency, paid.reference, paid.balance) == ("100.50", "usd", "inv-1",
                                                                          "100.50")
    assert paid.payment_id
    pending = await dg.withdrawals.create("40", currency="usd", initiated_by="alice")
    assert (pending.status, pending.amount, pending.initiated_by, pending.approved_by,
            pending.balance) == ("pending", "40.00", "alice", None, None)
    with pytest.raises(FourEyesRequired):  # the same key, whatever the label says
        await dg.withdrawals.approve(pending.withdrawal_id, approved_by="bob")
    bob_key = await admin.keys.create("service", tenant_id=tenant.tenant_id, name="bob")
    async with AsyncDropgate(live.url, bob_key.key, retries=0) as bob:
        await _approvals_by_bob(dg, bob, pending)


async def _approvals_by_bob(dg: AsyncDropgate, bob: AsyncDropgate, pending: Withdrawal) -> None:
    done = await bob.withdrawals.approve(pending.withdrawal_id, approved_by="bob")
    assert (done.status, done.approved_by, done.balance) == ("completed", "bob", "60.50")
    assert done.completed_at is not None
    # the balance after the debit is part of the approval's answer only
    assert await dg.withdrawals.get(pending.withdrawal_id) == msgspec.structs.replace(done, balance=None)
    with pytest.raises(Conflict):  # not pending any more
        await bob.withdrawals.approve(pending.withdrawal_id, approved_by="carol")
    too_much = await dg.withdrawals.create("60.51", currency="usd", initiated_by="alice")
    with pytest.raises(InsufficientFunds):  # never overdraws
        await bob.withdrawals.approve(too_much.withdrawal_id, approved_by="bob")
    rejected = await bob.withdrawals.reject(too_much.withdrawal_id, reason="too much")
    assert (rejected.status, rejected.reason, rejected.approved_by) == ("rejected", "too much", "bob")
    with pytest.raises(NotFound):
        await bob.withdrawals.approve("NOPE", approved_by="bob")
    with pytest.raises(NotFound):
        await dg.withdrawals.get("NOPE")
    with pytest.raises(ValidationError):
        await dg.payments.create("1.001", currency="usd", reference="r")


async def test_a_payment_past_the_balance_limit_is_a_conflict(dg: AsyncDropgate) -> None:
    big = "99999999999.99"  # just under the largest amount; the balance limit is ~10 of them
    for i in range(10):
        await dg.payments.create(big, currency="eur", reference=f"big-{i}")
    with pytest.raises(Conflict) as info:
        await dg.payments.create(big, currency="eur", reference="big-10")
    assert info.value.details["reason"] == "balance_limit"


async def test_orders(dg: AsyncDropgate) -> None:
    items = [OrderItem(sku="tee", quantity=2), OrderItem(sku="mug", quantity=1)]
    order = await dg.orders.create("O-1", items=items, total="35", currency="gbp")
    assert (order.order_id, order.items, order.total, order.currency) == ("O-1", items, "35.00", "gbp")
    assert await dg.orders.get("O-1") == order
    generated = await dg.orders.create(items=items[:1], total="0", currency="gbp")
    assert generated.order_id and generated.order_id != "O-1"
    with pytest.raises(AlreadyExists):
        await dg.orders.create("O-1", items=items, total="35", currency="gbp")
    with pytest.raises(NotFound):
        await dg.orders.get("NOPE")
    with pytest.raises(ValidationError):
        await dg.orders.create(items=[], total="1", currency="gbp")


async def test_bookings(dg: AsyncDropgate) -> None:
    start = datetime(2031, 5, 1, 9, tzinfo=UTC)
    end = start + timedelta(hours=1)
    first = await dg.bookings.create("room-1", slot_start=start, slot_end=end, user_id="u1", capacity=2)
    assert (first.resource_id, first.slot_start, first.slot_end, first.user_id, first.capacity,
            first.booked) == ("room-1", start, end, "u1", 2, 1)
    second = await dg.bookings.create("room-1", slot_start=start, slot_end=end, user_id="u2")
    assert (second.capacity, second.booked) == (2, 2) and second.booking_id != first.booking_id
    with pytest.raises(SlotFull):
        await dg.bookings.create("room-1", slot_start=start, slot_end=end, user_id="u3")
    with pytest.raises(Conflict):  # another capacity than the slot's
        await dg.bookings.create("room-1", slot_start=start, slot_end=end, user_id="u3", capacity=5)
    with pytest.raises(ValidationError):
        await dg.bookings.create("room-1", slot_start=end, slot_end=start, user_id="u3")


async def test_every_operation_is_refused_while_the_subscription_is_inactive(
        admin: AsyncDropgate, tenant: TenantAccess, dg: AsyncDropgate) -> None:
    await dg.payments.create("10", currency="usd", reference="before")
    pending = await dg.withdrawals.create("1", currency="usd", initiated_by="alice")
    await admin.tenants.set_subscription(tenant.tenant_id, subscription_status="past_due")
    start = datetime(2031, 5, 1, 9, tzinfo=UTC)
    refused = [
        dg.payments.create("1", currency="usd", reference="after"),
        dg.withdrawals.create("1", currency="usd", initiated_by="alice"),
        dg.withdrawals.approve(pending.withdrawal_id, approved_by="bob"),
        dg.orders.create(items=[OrderItem(sku="x", quantity=1)], total="1", currency="usd"),
        dg.bookings.create("r", slot_start=start, slot_end=start + timedelta(hours=1), user_id="u"),
    ]
    for call in refused:
        with pytest.raises(SubscriptionInactive):
            await call
    assert (await dg.withdrawals.get(pending.withdrawal_id)).status == "pending"


async def test_principal_methods(dg: AsyncDropgate, admin: AsyncDropgate, live: LiveServer,
                                 tenant: TenantAccess) -> None:
    """orders.update, bookings.get/.cancel, tenants.current/.subscription_history, keys with
    scopes and a cascading delete."""
    order = await dg.orders.create("o-1", items=[OrderItem(sku="s", quantity=1)], total="1", currency="usd")
    shipped = await dg.orders.update(order.order_id, status="shipped")
    assert shipped.status == "shipped" and shipped.updated_at is not None
    start = datetime(2031, 1, 1, 10, tzinfo=UTC)
    booked = await dg.bookings.create("room", slot_start=start, slot_end=start + timedelta(hours=1), user_id="u")
    assert (await dg.bookings.get(booked.booking_id)).status == "booked"
    canceled = await dg.bookings.cancel(booked.booking_id)
    assert (canceled.status, canceled.booked) == ("canceled", 0)
    with pytest.raises(Conflict):
        await dg.bookings.cancel(booked.booking_id)
    assert (await dg.tenants.current()).tenant_id == tenant.tenant_id
    history = await admin.tenants.subscription_history(tenant.tenant_id)
    assert history.tenant_id == tenant.tenant_id  # persisted with the lag: may still be empty
    minter = await admin.keys.create("admin", name="minter", scopes=["read"])
    async with AsyncDropgate(live.url, minter.key, retries=0) as narrow:
        child = await narrow.keys.create("service", tenant_id=tenant.tenant_id, name="kid", scopes=["read"])
        assert child.created_by == minter.key_id and child.scopes == ["read"]
    await admin.keys.delete(minter.key_id, cascade=True)
    async with AsyncDropgate(live.url, child.key, retries=0) as kid:
        with pytest.raises(Unauthorized):
            await kid.tenants.current()
