"""Per-tenant admission counts the requests being worked on: a request parked on a
coalesced batch gives its slot back (http/admission.py, ``PARKED`` in
engine/actors/batcher.py), so a tenant's crowd fills whole batches, while a request
that does not park keeps its slot to its end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from dropgate.engine.actors.batcher import PARKED, Batcher
from dropgate.http.admission import Admission, Slot
from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.conftest import Api
from tests.support.offers import create_offer, inventory, purchase


async def test_parking_on_a_batch_gives_the_slot_back_once() -> None:
    admission = Admission(per_tenant=1, max_waiting=10)
    gate = asyncio.Event()

    async def flush(key: str, items: list[int]) -> list[int]:
        await gate.wait()
        return items

    batcher: Batcher[str, int, int] = Batcher(flush)

    async def request(parks: bool) -> None:
        if not admission.try_enter("t"):
            await admission.enter("t")
        slot = Slot(admission, "t")
        token = PARKED.set(slot.release)
        try:
            if parks:
                assert await batcher.enqueue("k", 1) == 1
            else:
                await gate.wait()
        finally:
            PARKED.reset(token)
            slot.release()

    parked = asyncio.create_task(request(parks=True))
    await asyncio.sleep(0)
    assert admission.try_enter("t")  # the parked request's slot was free
    admission.leave("t")
    working = asyncio.create_task(request(parks=False))
    await asyncio.sleep(0)
    assert not admission.try_enter("t")  # a request not parked keeps its slot
    gate.set()
    await asyncio.gather(parked, working)
    assert admission._lines == {}  # every slot given back exactly once
    assert PARKED.get() is None


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(tenant_admission=2, tenant_concurrency=10_000)


async def test_a_crowd_under_a_small_admission_still_fills_batches(api: Api, runtime: Runtime) -> None:
    await create_offer(api, "hot", 1_000)
    batches = runtime.purchases.batches
    before = batches.batches
    answers = await asyncio.gather(*(purchase(api, "hot", f"u{i}") for i in range(120)))
    assert [s for s, _ in answers] == [201] * 120, [b for s, b in answers if s != 201][:3]
    assert (await inventory(api, "hot"))["reserved"] == 120
    # two slots held through the wait would cap a batch at two holds: at least 60 script
    # calls (their stored responses ride along); parked requests fill whole batches
    assert batches.batches - before < 40, batches.batches - before
