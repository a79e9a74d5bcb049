"""The demo's webhook receiver: the whole demo at a small scale, and the events that
arrived (each verified with the client's ``verify``) are exactly what the demo did."""

from __future__ import annotations

import re
from collections.abc import Callable

import asyncpg
import pytest

from dropgate.demo.runner import run_demo
from dropgate.settings import Settings


@pytest.mark.slow
async def test_demo_counts_the_webhooks_it_caused(isolated: str, make_settings: Callable[..., Settings],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(port=0, host="127.0.0.1", persister_enabled=True)
    assert await run_demo(settings, exit_after=True, scale=0.05) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("webhooks:"))
    assert line.endswith("all verified"), line
    listed = re.search(r"\((.*)\)", line)
    assert listed is not None, line
    arrived = {t: int(n) for t, n in (part.rsplit(" ", 1) for part in listed.group(1).split(", "))}
    total = int(line.split()[1])
    assert total == sum(arrived.values())

    conn = await asyncpg.connect(settings.database_url, server_settings={"search_path": isolated})
    try:
        # what the demo did, from its own rows (the persister drained before the summary)
        uses = await conn.fetchval("SELECT count(*) FROM invite_code_uses")
        paid = await conn.fetchval("SELECT count(*) FROM offer_purchases WHERE status = 'paid'")
        purchases = await conn.fetchval("SELECT count(*) FROM offer_purchases")
        recorded = {r["event_type"]: r["n"] for r in await conn.fetch(
            "SELECT event_type, count(DISTINCT event_id) AS n FROM dg_webhook_deliveries"
            " WHERE status = 'succeeded' GROUP BY event_type")}
        pending = await conn.fetchval("SELECT count(*) FROM dg_webhook_deliveries WHERE status <> 'succeeded'")
    finally:
        await conn.close()
    assert uses > 0 and arrived.get("invite.redeemed") == uses, (line, uses)
    assert paid > 0 and arrived.get("purchase.paid") == paid, (line, paid)
    assert arrived.get("purchase.created") == purchases, (line, purchases)
    assert arrived == recorded and pending == 0, (line, recorded)
