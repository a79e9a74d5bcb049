"""The fencing epoch: an activation paused past its lease cannot commit when it resumes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from dropgate.engine.ledger import PaymentResult
from dropgate.errors import StaleEpoch
from dropgate.ids import new_id, text
from dropgate.runtime import Runtime, open_runtime
from dropgate.settings import Settings

LEASE_MS = 300


async def _pay(rt: Runtime, amount: int, reference: str) -> PaymentResult:
    """A payment the way the API makes one: in the tenant's actor, under its lease."""
    return await rt.actors.run("acme", rt.ledger.payment, payment_id=new_id("pay_"), amount=amount,
                               currency="usd", reference=reference)


async def _balance(rt: Runtime, tenant_id: str) -> int:
    raw = await rt.redis.hget(rt.keys.tenant(tenant_id).tenant(), "bal:usd")
    return int(text(raw)) if raw is not None else 0


async def test_a_stale_actor_cannot_commit(isolated: str, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(actor_lease_ms=LEASE_MS)
    # two runtimes on the same Redis: two "processes", each with its own tenant actor
    async with open_runtime(settings, run_persister=False) as a, \
            open_runtime(settings, run_persister=False) as b:
        await a.tenants.create("acme", name="Acme", status="active", trial_end_ms=None)
        await _pay(a, 100, "a-1")
        stale = a.actors.actor("acme")
        assert stale is not None and stale.epoch is not None
        stale_epoch = stale.epoch
        paused, resume = asyncio.Event(), asyncio.Event()

        async def paused_write(tenant_id: str, epoch: int) -> PaymentResult:
            paused.set()
            await resume.wait()  # the process stalls here (GC, SIGSTOP, a partition)
            return await a.ledger.payment(tenant_id, epoch=epoch, payment_id="pay_stale",
                                          amount=5000, currency="usd", reference="stale")

        task = asyncio.create_task(a.actors.run("acme", paused_write))
        await paused.wait()
        await asyncio.sleep(LEASE_MS / 1000 + 0.2)  # the lease lapses by Redis time
        # the tenant is activated elsewhere, with a newer epoch, and commits
        await _pay(b, 200, "b-1")
        fresh = b.actors.actor("acme")
        assert fresh is not None and fresh.epoch is not None and fresh.epoch > stale_epoch
        resume.set()
        with pytest.raises(StaleEpoch) as refused:
            await task
        assert refused.value.status == 409 and refused.value.details["epoch"] == stale_epoch
        assert await _balance(a, "acme") == 300  # the stale write changed nothing
        tk = a.keys.tenant("acme")
        logged = [f for _, f in await a.redis.xrange(tk.log)]
        assert not any(b"pay_stale" in f[b"d"] for f in logged)
        # the stale activation forgot its epoch: its next message runs under a fresh lease
        assert stale.epoch is None
        await _pay(a, 1, "a-2")
        assert stale.epoch is not None and stale.epoch > fresh.epoch
        assert await _balance(a, "acme") == 301
        # live activations in both processes are harmless: b still commits under its own lease
        await _pay(b, 1, "b-2")
        assert await _balance(a, "acme") == 302


async def test_scripts_refuse_unknown_released_and_lapsed_epochs(runtime: Runtime) -> None:
    await runtime.tenants.create("acme", name="Acme", status="active", trial_end_ms=None)
    ledger, lease = runtime.ledger, runtime.actors.lease

    async def pay(epoch: int, pid: str) -> PaymentResult:
        return await ledger.payment("acme", epoch=epoch, payment_id=pid, amount=10, currency="usd",
                                    reference="x")

    with pytest.raises(StaleEpoch):
        await pay(1, "never-leased")
    held = await lease.acquire("acme", ttl_ms=60_000)
    assert (await pay(held.epoch, "ok")).balance == 10
    await lease.release("acme", held.epoch)
    with pytest.raises(StaleEpoch):
        await pay(held.epoch, "after-release")
    short = await lease.acquire("acme", ttl_ms=50)
    assert short.epoch == held.epoch + 1
    await asyncio.sleep(0.1)
    with pytest.raises(StaleEpoch):
        await lease.renew("acme", short.epoch, ttl_ms=60_000)  # a lapsed lease cannot be revived
    with pytest.raises(StaleEpoch):
        await pay(short.epoch, "lapsed")
    # hundreds of concurrent activations get distinct epochs
    epochs = await asyncio.gather(*(lease.acquire("acme", ttl_ms=60_000) for _ in range(300)))
    assert len({e.epoch for e in epochs}) == 300
    assert await _balance(runtime, "acme") == 10


async def test_an_idle_lapse_between_turns_reactivates_quietly(
    isolated: str, make_settings: Callable[..., Settings]
) -> None:
    """A lease that lapsed while the actor was idle (no write in flight) is simply renewed
    under a new epoch before the next turn: nothing is refused."""
    async with open_runtime(make_settings(actor_lease_ms=100), run_persister=False) as rt:
        await rt.tenants.create("acme", name="Acme", status="active", trial_end_ms=None)
        await _pay(rt, 5, "1")
        actor = rt.actors.actor("acme")
        assert actor is not None and actor.epoch is not None
        first = actor.epoch
        await asyncio.sleep(0.2)
        await _pay(rt, 5, "2")
        assert actor.epoch is not None and actor.epoch > first
        assert await _balance(rt, "acme") == 10
