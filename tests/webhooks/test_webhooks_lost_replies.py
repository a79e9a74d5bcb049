"""The dispatcher when a read's reply is lost with its connection, on real Redis.

Redis runs the dispatcher's XREADGROUP and the reply never arrives (Redis killed, a
socket timeout under load): the entries are pending in the group ``dispatcher`` under
this dispatcher's name, but it never saw them, and ``XREADGROUP >`` never offers them
again. ``trim_log`` never trims past a pending entry, so without a claim-back the log
stops trimming for good and fills to ``max_backlog`` (writes answer 503). The
connection is cut here at the exact reply (``_Cut``, as the persister's test does).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis.exceptions

from dropgate.engine.keys import partition_of
from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from dropgate.settings import Settings
from dropgate.webhooks.dispatcher import GROUP
from tests.conftest import Api
from tests.persistence.test_persister_lost_replies import _Cut, _pending
from tests.support.webhooks import Receiver, receiver, register, webhook_settings

__all__ = ["receiver"]

LEASE_MS = 1000


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return webhook_settings(make_settings, dispatcher_lease_ms=LEASE_MS, dispatcher_stuck_s=0.5)


async def _log_length(runtime: Runtime) -> int:
    return sum([int(await runtime.redis.xlen(runtime.keys.log(p))) for p in range(runtime.keys.partitions)])


@pytest.mark.cluster
async def test_a_read_whose_reply_is_lost_is_claimed_back_and_the_log_trims(
        api: Api, runtime: Runtime, persister: Persister, receiver: Receiver) -> None:
    await register(api, receiver, ["invite.redeemed"])
    status, body = await api.call("POST", "/v1/invites", json={"code": "L", "max_uses": 100})
    assert status == 201, body
    for i in range(5):
        status, body = await api.call("POST", "/v1/invites/L/redeem", json={"user_id": f"u{i}"})
        assert status == 200, body
    dispatcher = runtime.new_dispatcher(name="cut")
    tenant_log = runtime.keys.log(partition_of(api.tenant_id, runtime.keys.partitions))
    cut = _Cut(runtime.redis, after=["xreadgroup"], touching=tenant_log)
    dispatcher._redis = cut  # type: ignore[assignment]  # its own commands only, not the scripts'
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            await dispatcher.run_once()  # the group is made and reads every entry; the reply is lost
        assert cut.cuts == [("after", "xreadgroup")]
        # On a cluster the other partitions' reads worked: dispatched before the raise,
        # so only the cut partition's entries are left pending.
        lost = await _pending(runtime, GROUP)
        assert lost > 5  # the tenant's entries, the invite and its five uses: delivered, never seen
        written = await _log_length(runtime)
        assert await persister.run_once() == written  # all applied, and not one lost trimmed:
        assert await _log_length(runtime) == lost  # the dispatcher's group still has them

        # Within a lease nothing is claimed back (they may be in flight), and nothing new is read.
        await dispatcher.run_once()
        assert receiver.accepted == [] and dispatcher.stats.reclaimed == 0
        assert await _pending(runtime, GROUP) == lost

        # ... and /readyz says the dispatcher is stuck (it is: without a claim-back, forever).
        await asyncio.sleep(0.6)
        status, ready = await api.call("GET", "/readyz", headers={})
        assert ready["dispatcher_stuck"] is True, ready

        # After a lease they are claimed back, delivered once each, and the log trims.
        await dispatcher.drain(timeout_s=30)
        assert dispatcher.stats.reclaimed == lost
        assert sorted(e["data"]["user_id"] for e in receiver.accepted) == [f"u{i}" for i in range(5)]
        assert await runtime.pool.fetchval(
            "SELECT count(*) FROM dg_webhook_deliveries WHERE status = 'succeeded'") == 5
        assert await _pending(runtime, GROUP) == 0
        assert await _log_length(runtime) == 0  # both groups are past every entry
        status, ready = await api.call("GET", "/readyz", headers={})
        assert ready["dispatcher_stuck"] is False, ready
    finally:
        await dispatcher.aclose()
