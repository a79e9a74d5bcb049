"""Offer purchases as a second crowd of the fault tests, and their history checker.

Money is where a lost or doubled write hurts most, so the fault tests drive purchases
of one limited offer beside the invite redemptions (``faultlab.Load`` runs this load
as its companion: paused, resumed and stopped with it). Each purchase is a fresh user
with its own ``Idempotency-Key``; an answer the client cannot interpret is retried
with the same key, as docs/api.md tells clients to, so a retry replays instead of buying
twice. After its 201 a buyer leaves the hold pending, cancels it, or pays it at the
sandbox checkout and then maybe refunds it, in full or in part (the refund under its
own ``Idempotency-Key``, retried alike). The checker then holds Redis and PostgreSQL
to the history: every purchase a client saw (201) exists in both with its quantity,
status, units and refunded amount; nothing exists that no client asked for; no user
holds twice; an acknowledged cancel left the purchase canceled; the refunds a client
saw acknowledged are all applied (at most what was paid), each refund id once; the
offer's reserved + sold equals the held and sold units in both stores and never
passes the inventory.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import asyncpg

from tests.support.aofloss import AofLoss
from tests.support.faultcrowd import Crowd

if TYPE_CHECKING:
    from tests.support.faultlab import Cluster

OFFER = "drop-offer"
HELD = ("held", "sold")  # where a purchase's units count in reserved + sold
PRICE_MINOR = 2500


@dataclass
class Purchase:
    user: str
    quantity: int
    outcome: str  # ok | refused | unknown
    purchase_id: str = ""
    detail: str = ""
    session_id: str = ""
    canceled: str = ""  # ok | refused | unknown ("" not tried)
    paid: bool = False
    refunds_acked_minor: int = 0  # refunds the client saw answered 200
    acked_at: list[float] = field(default_factory=list)  # when each step was answered 200
    refunds_tried: int = 0


@dataclass
class OfferLoad(Crowd):
    cluster: Cluster
    units: int = 3000  # enough to keep selling through the fault window of a test
    ops: list[Purchase] = field(default_factory=list)
    _n: int = 0
    _rng_base: int = field(default=500, kw_only=True)

    async def prepare(self) -> None:
        """The offer, created through the API before the crowd arrives."""
        async with aiohttp.ClientSession() as http:
            r = await http.post(f"{self.cluster.base_url}/v1/offers", headers=self.cluster.service_headers,
                                json={"offer_id": OFFER, "event_id": "fault-drop", "name": "Fault drop",
                                      "price": "25.00", "currency": "usd",
                                      "inventory_total": self.units, "max_per_order": 2})
            assert r.status == 201, await r.text()

    async def _one(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        self._n += 1
        op = await self._purchase(http, f"buyer{self._n}", rng.choice((1, 1, 2)))
        self.ops.append(op)
        if op.outcome != "ok":
            return
        fate = rng.random()
        if fate < 0.2:
            op.canceled = await self._cancel(http, op)
        elif fate < 0.6 and await self._pay(http, op) and rng.random() < 0.5:
            amount = None if rng.random() < 0.5 else "10.00"
            await self._refund(http, op, amount)
            if amount is not None and rng.random() < 0.5:
                await self._refund(http, op, None)  # the rest

    async def _send(self, http: aiohttp.ClientSession, url: str, *, json_body: Any = None,
                    key: str | None = None) -> tuple[int, Any]:
        """(status, body) of a POST retried on an answer that proves nothing (same key);
        status 0 when no answer could be had."""
        headers = dict(self.cluster.service_headers)
        if key is not None:
            headers["Idempotency-Key"] = key
        for attempt in range(6):
            try:
                async with http.post(url, json=json_body, headers=headers) as r:
                    body = await r.json(content_type=None)
                    self.answered(r.status, body)
                    if r.status < 500 and not (r.status == 409 and isinstance(body, dict)
                                               and body.get("code") == "IDEMPOTENCY_KEY_IN_USE"):
                        return r.status, body
            except (TimeoutError, aiohttp.ClientError):
                pass
            await asyncio.sleep(0.2 * (attempt + 1))
        return 0, None

    async def _cancel(self, http: aiohttp.ClientSession, op: Purchase) -> str:
        status, _ = await self._send(http, f"{self.cluster.base_url}/v1/purchases/{op.purchase_id}/cancel")
        if status == 200:
            op.acked_at.append(time.monotonic())
            return "ok"
        # a 409 after a retry: the first attempt may have canceled it
        return "refused" if status == 404 else "unknown"

    async def _pay(self, http: aiohttp.ClientSession, op: Purchase) -> bool:
        """Pay at the sandbox checkout (it sends the signed webhook to the API itself)."""
        status, body = await self._send(
            http, f"{self.cluster.base_url}/v1/sandbox/checkout/{op.session_id}/complete")
        op.paid = (status == 200 and isinstance(body, dict)
                   and body.get("webhook_response", {}).get("outcome") == "confirmed")
        if op.paid:
            op.acked_at.append(time.monotonic())
        return op.paid

    async def _refund(self, http: aiohttp.ClientSession, op: Purchase, amount: str | None) -> None:
        op.refunds_tried += 1
        status, body = await self._send(
            http, f"{self.cluster.base_url}/v1/purchases/{op.purchase_id}/refund",
            json_body={} if amount is None else {"amount": amount},
            key=f"refund-{op.purchase_id}-{op.refunds_tried}")
        if status == 200:
            op.acked_at.append(time.monotonic())
            before = op.refunds_acked_minor
            op.refunds_acked_minor = int(str(body["refunded_amount"]).replace(".", ""))
            assert op.refunds_acked_minor > before, (op, body)

    async def _purchase(self, http: aiohttp.ClientSession, user: str, quantity: int) -> Purchase:
        url = f"{self.cluster.base_url}/v1/offers/{OFFER}/purchase"
        headers = {**self.cluster.service_headers, "Idempotency-Key": f"key-{user}"}
        unknown = False
        for attempt in range(6):
            try:
                async with http.post(url, json={"user_id": user, "quantity": quantity}, headers=headers) as r:
                    body = await r.json(content_type=None)
                    self.answered(r.status, body)
                    if r.status == 201:
                        return Purchase(user, quantity, "ok", purchase_id=body["purchase_id"],
                                        session_id=body["checkout_session_id"], acked_at=[time.monotonic()])
                    err = body.get("code", "") if isinstance(body, dict) else ""
                    if err in ("INSUFFICIENT_INVENTORY", "QUANTITY_LIMIT", "RATE_LIMITED"):
                        # decided by the script, which wrote no hold; an earlier attempt whose
                        # answer was lost would have been replayed here instead
                        return Purchase(user, quantity, "refused", detail=err)
                    # 503 (Redis away, persistence lagging, provider), 409 (the key's first
                    # attempt still counts as running), 500: maybe applied; same key again
                    unknown = True
            except (TimeoutError, aiohttp.ClientError):
                unknown = True
            await asyncio.sleep(0.2 * (attempt + 1))
        return Purchase(user, quantity, "unknown" if unknown else "refused", detail="gave up")


def _steps(op: Purchase | None, loss: AofLoss) -> str:
    """A purchase's client-side history for a failure message: what it did and when each
    step was answered against the kills (a divergence outside their window is a bug)."""
    if op is None:
        return "no client asked for it"
    before = [[round(kill - t, 2) for kill in loss.kills] for t in op.acked_at]
    return (f"outcome {op.outcome}, canceled {op.canceled or '-'}, paid {op.paid}, refunds acked "
            f"{op.refunds_acked_minor} of {op.refunds_tried} tried, answered {before}")


async def check_offer_history(cluster: Cluster, ops: list[Purchase], partition: int,
                              tenant: str, loss: AofLoss | None = None) -> dict[str, Any]:
    """No acknowledged purchase lost, none applied twice or unasked, no oversell.

    ``loss``: the kills after which Redis may have dropped acknowledged writes
    (``aofloss``). Only purchases with a step acknowledged in such a window (or, after
    such a kill, whose answer never came) may then be missing, behind, or differ between
    the stores; ``purchases_diverged`` counts those the stores disagree on."""
    loss = loss or AofLoss()
    conn = await asyncpg.connect(cluster.postgres.url, server_settings={"search_path": cluster.name})
    try:
        pg_rows = {r["purchase_id"]: (r["user_id"], r["quantity"], r["status"], r["units"], r["refunded_minor"])
                   for r in await conn.fetch(
            "SELECT purchase_id, user_id, quantity, status, units, refunded_minor FROM offer_purchases"
            " WHERE tenant_id = $1 AND offer_id = $2", tenant, OFFER)}
        offer = await conn.fetchrow("SELECT inventory_total, reserved, sold FROM offers"
                                    " WHERE tenant_id = $1 AND offer_id = $2", tenant, OFFER)
        refund_rows = await conn.fetchval("SELECT count(*) FROM offer_refunds WHERE tenant_id = $1", tenant)
    finally:
        await conn.close()
    assert offer is not None, "the offer never reached PostgreSQL"
    tag = f"{cluster.name}:{{p{partition}}}:t:{tenant}"
    async with cluster.redis_client() as r:
        records = [json.loads(v) for v in (await r.hgetall(f"{tag}:purchases")).values()]
        hot = {k.decode(): v.decode() for k, v in (await r.hgetall(f"{tag}:offer:{OFFER}")).items()}
    redis_rows = {p["purchase_id"]: (p["user_id"], p["quantity"], p["status"], p.get("units", "none"),
                                     p.get("refunded_minor", 0))
                  for p in records if p["offer_id"] == OFFER}
    acked = {op.purchase_id: op for op in ops if op.outcome == "ok"}
    unanswered = {op.user for op in ops if op.outcome == "unknown"} if loss else set()
    at_risk = {pid for pid, op in acked.items() if loss.at_risk(op.acked_at)}

    def excused(pid: str) -> bool:
        row = pg_rows.get(pid) or redis_rows[pid]
        return pid in at_risk or row[0] in unanswered

    diverged = {pid for pid in {*redis_rows, *pg_rows} if redis_rows.get(pid) != pg_rows.get(pid)}
    unexcused = sorted(pid for pid in diverged if not excused(pid))
    ops_by_id = {op.purchase_id: op for op in ops if op.purchase_id}
    assert not unexcused, (
        f"purchases differ: only in Redis {sorted(set(redis_rows) - set(pg_rows))[:5]}, only in "
        f"PostgreSQL {sorted(set(pg_rows) - set(redis_rows))[:5]}, or their state differs: {unexcused[:5]}; "
        "(user, quantity, status, units, refunded) in Redis / PostgreSQL, and the client's steps "
        "(seconds before each kill that each step was answered): "
        + "; ".join(f"{pid}: {redis_rows.get(pid)} / {pg_rows.get(pid)}, "
                    f"{_steps(ops_by_id.get(pid), loss)}" for pid in unexcused[:5]))
    lost = {pid for pid in acked if pid not in pg_rows or pid not in redis_rows}
    assert lost <= at_risk, f"acknowledged purchases lost: {sorted(lost - at_risk)[:10]}"
    asked = {op.user for op in ops if op.outcome in ("ok", "unknown")}
    for rows in (pg_rows, redis_rows):
        users = [row[0] for row in rows.values()]
        phantom = set(users) - asked
        assert not phantom, f"purchases nobody was told of or asked for: {sorted(phantom)[:10]}"
        assert len(users) == len(set(users)), "a user holds twice: an Idempotency-Key retry bought again"
    behind = 0  # acknowledged steps lost with Redis (at risk only)
    for pid, op in acked.items():
        if pid in lost:
            continue
        for row in (pg_rows[pid], redis_rows[pid]):
            problem = _not_what_was_acknowledged(row, op)
            if problem is not None:
                assert pid in at_risk, f"{pid}: {problem}"
                behind += 1
                break
    refund_ids = [rid for p in records for rid in (p.get("refunds") or {})]
    assert len(refund_ids) == len(set(refund_ids)), f"refund ids repeat in Redis: {len(refund_ids)}"
    held = sum(row[1] for row in pg_rows.values() if row[3] in HELD)
    redis_held = int(hot.get("reserved", 0)) + int(hot.get("sold", 0))
    assert held == offer["reserved"] + offer["sold"], (
        f"held units: purchases {held}, PostgreSQL's offer {offer['reserved'] + offer['sold']}")
    assert redis_held == sum(row[1] for row in redis_rows.values() if row[3] in HELD), (
        f"held units: Redis's offer {redis_held}, its purchases disagree")
    if not diverged:
        assert len(refund_ids) == refund_rows, (
            f"refund ids: {len(refund_ids)} in Redis, {refund_rows} in PostgreSQL")
        assert redis_held == held, f"held units: Redis {redis_held}, PostgreSQL {held}"
    assert max(held, redis_held) <= offer["inventory_total"], (
        f"oversold: {max(held, redis_held)} > {offer['inventory_total']}")
    return {"purchases_acknowledged": len(acked), "purchases_present": len(pg_rows),
            "cancels_acknowledged": sum(1 for op in ops if op.canceled == "ok"),
            "paid": sum(1 for op in ops if op.paid), "refunds": len(refund_ids),
            "purchases_unknown": sum(1 for op in ops if op.outcome == "unknown"), "units_held": held,
            "purchases_diverged": len(diverged), "purchases_lost_in_aof_window": len(lost) + behind}


def _not_what_was_acknowledged(row: tuple[Any, ...], op: Purchase) -> str | None:
    """Why a store's row of ``op`` contradicts what its client was told, or None."""
    user, quantity, status, units, refunded = row
    if (user, quantity) != (op.user, op.quantity):
        return f"{row} is not what {op} saw"
    if op.canceled == "ok" and (status, units) != ("canceled", "none"):
        return f"canceled, yet {row}"
    if not op.refunds_acked_minor <= refunded <= quantity * PRICE_MINOR:
        return f"refunds acknowledged {op.refunds_acked_minor}, applied {refunded}: {row}"
    if refunded == quantity * PRICE_MINOR and op.paid and (status, units) != ("refunded", "none"):
        return f"refunded in full, yet {row}"
    return None
