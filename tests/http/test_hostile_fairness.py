"""Per-tenant admission (issue 21, item 7): a flooding tenant waits in its own line, in
arrival order, while another tenant enters at once; a slot handed to a request that
was cancelled meanwhile goes to the next one; the line is bounded."""

from __future__ import annotations

import asyncio

import pytest

from dropgate.errors import TenantBusy
from dropgate.http.admission import Admission


async def test_a_flood_waits_in_its_own_line_and_another_tenant_enters_at_once() -> None:
    admission = Admission(per_tenant=2, max_waiting=100)
    assert admission.try_enter("flood") and admission.try_enter("flood")
    assert not admission.try_enter("flood")
    order: list[int] = []

    async def waiter(i: int) -> None:
        await admission.enter("flood")
        order.append(i)

    waiters = [asyncio.create_task(waiter(i)) for i in range(5)]
    await asyncio.sleep(0)
    assert order == []
    assert admission.try_enter("quiet")  # not behind the flood
    admission.leave("quiet")
    for _ in range(5):
        admission.leave("flood")
        await asyncio.sleep(0)
    await asyncio.gather(*waiters)
    assert order == [0, 1, 2, 3, 4]  # arrival order
    admission.leave("flood")
    admission.leave("flood")
    assert admission._lines == {}  # nothing kept for idle tenants


async def test_a_cancelled_waiter_passes_its_slot_on() -> None:
    admission = Admission(per_tenant=1, max_waiting=100)
    assert admission.try_enter("t")
    first = asyncio.create_task(admission.enter("t"))
    second = asyncio.create_task(admission.enter("t"))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    admission.leave("t")
    await asyncio.wait_for(second, 1)  # got the slot the cancelled one never took
    admission.leave("t")
    assert admission._lines == {}


async def test_the_line_is_bounded() -> None:
    admission = Admission(per_tenant=1, max_waiting=2)
    assert admission.try_enter("t")
    waiting = [asyncio.create_task(admission.enter("t")) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(TenantBusy):
        await admission.enter("t")
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
