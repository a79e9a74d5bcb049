"""The client's list iterators and campaign methods against a live server."""

from __future__ import annotations

import pytest

from dropgate.client import AsyncDropgate
from dropgate.client.errors import InsufficientCodes, NotFound, UnknownType


async def test_iterating_lists_pages_through_everything(dg: AsyncDropgate) -> None:
    for i in range(7):
        await dg.invites.create(f"L{i}", max_uses=3)
    await dg.invites.redeem("L1", user_id="u1")
    codes = [inv.code async for inv in dg.invites.list(page_size=2, consistent=True)]
    assert codes == [f"L{i}" for i in reversed(range(7))]
    uses = [u.user_id async for u in dg.invites.uses("L1", consistent=True)]
    assert uses == ["u1"]
    check = await dg.invites.eligibility("L1", user_id="u1")
    assert (check.eligible, check.reason) == (False, "ALREADY_USED")


async def test_campaigns_through_the_client(dg: AsyncDropgate) -> None:
    created = await dg.campaigns.create("cl", types=["tm"], low_watermark=1)
    assert created.types == ["tm"] and created.counts == {"tm": created.counts["tm"]}
    await dg.codes.upload("cl", type="tm", codes=["K1", "K2", "K3"])
    with pytest.raises(UnknownType):
        await dg.codes.reserve("cl", type="tn", count=1)
    with pytest.raises(InsufficientCodes):
        await dg.codes.reserve("cl", type="tm", count=4, partial=False)
    r = await dg.codes.reserve("cl", type="tm", count=2, partial=False)
    await dg.codes.assign("cl", codes=r.codes[:1], assigned_to="buyer")
    info = await dg.campaigns.code("cl", r.codes[0])
    assert (info.status, info.assigned_to) == ("assigned", "buyer")
    listed = [c.code async for c in dg.campaigns.codes("cl", consistent=True)]
    assert listed == ["K1", "K2", "K3"]
    csv_text = (await dg.campaigns.export("cl", status="assigned")).decode()
    assert csv_text.splitlines()[1].startswith(r.codes[0] + ",tm,assigned,")
    assert [c.campaign_id async for c in dg.campaigns.list(consistent=True)] == ["cl"]
    with pytest.raises(NotFound):
        await dg.campaigns.get("nope")
