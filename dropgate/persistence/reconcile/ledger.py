"""Tenant operations: balances, withdrawals, orders, booking slots.

Withdrawals, orders and slots are the generic reconciler's (see their specs). The
hook is the balance: the ``bal:<currency>`` field of Redis' tenant hash against
``tenant_balances``, which (within PostgreSQL) must equal what the ledger rows give
(``tenant_balances_from_rows``: payments minus completed withdrawals). Balances have
no version of their own: a balance that differs is in flight while a payment or
withdrawal event of its tenant waits in the log (or the persister committed in the
partition since the snapshot). Redis keeps no per-payment record, so a payment whose
event was lost cannot be re-emitted: on repair its balance is brought back to the
rows (``restore_balance``, a compare-and-set).

Not restored: the tenant actor's lease hash (an actor re-acquires it with a new
epoch on its next activation).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from dropgate.persistence.reconcile.base import Drift, ReconcileContext, Scope, repair_log
from dropgate.persistence.reconcile.generic import Found, SpecReconciler
from dropgate.persistence.reconcile.sql import scope_sql
from dropgate.persistence.setdiff import encode, hashes
from dropgate.specs import Entity
from dropgate.specs.entities import BALANCE, ORDER, SLOT, WITHDRAWAL

FIELD = "bal:"


class LedgerReconciler(SpecReconciler):
    def __init__(self) -> None:
        super().__init__(BALANCE, WITHDRAWAL, ORDER, SLOT)

    async def read(self, rc: ReconcileContext, scope: Scope, spec: Entity,
                   targets: list[tuple[str, list[str]]]) -> Found:
        """Balances: the ``bal:<currency>`` fields of the tenant hashes in scope."""
        if spec is not BALANCE:
            return await super().read(rc, scope, spec, targets)
        got = Found()
        tenants = sorted(parts[1] for _, parts in (await rc.index(scope)).find("tenant", None)
                         if scope.tenant_id is None or parts[1] == scope.tenant_id)
        async for batch in hashes(rc.redis, [rc.keys.tenant(t).tenant() for t in tenants]):
            for key, fields in batch:
                t = key.rsplit(":", 1)[1]
                for f, v in fields.items():
                    entity = BALANCE.entity(t, f[len(FIELD):])
                    if f.startswith(FIELD) and scope.wants(entity, t):
                        got.defs[entity] = {"balance": v}
                        got.def_members.append(encode(t, f[len(FIELD):], v))
        return got

    async def settle(self, rc: ReconcileContext, spec: Entity, entity: str, status: str, rv: int | None,
                     pv: int | None, ahead: bool, got: Found) -> str:
        """A balance is in flight while a payment or withdrawal of its tenant waits in the log."""
        if spec is BALANCE and status != "in_flight":
            t = BALANCE.split(entity)[0]
            waiting = await rc.pending(rc.keys.tenant(t).partition)
            if any(e.startswith((f"payment:{t}:", f"{WITHDRAWAL.kind}:{t}:")) for e in waiting):
                return "in_flight"
        return status

    async def repair_entity(self, rc: ReconcileContext, spec: Entity, entity: str, found: list[Drift]) -> None:
        if spec is not BALANCE:
            return await super().repair_entity(rc, spec, entity, found)
        t, currency = BALANCE.split(entity)
        seen = next((d.redis for d in found if d.field == "balance" and d.problem != "counter"), None)
        if seen is None:
            seen = next((d.redis for d in found), None)
        if isinstance(seen, dict):  # a balance PostgreSQL lacks: reported as its fields
            seen = seen.get("balance")
        value = await rc.pool.fetchval(
            "SELECT balance_minor FROM tenant_balances_from_rows WHERE tenant_id = $1 AND currency = $2", t, currency)
        raw = await rc.scripts.call(BALANCE.restore, [rc.keys.tenant(t).tenant()],
                                    [FIELD + currency, "" if seen is None else str(seen), str(value or 0)])
        if raw.get("restored"):
            rc.repaired(self.domain, entity, "restored", f"Redis balance := {value or 0} from the ledger rows")
        else:
            repair_log.warning("repair %s %s: skipped, the balance changed in Redis meanwhile", self.domain, entity)

    async def restore_kind(self, rc: ReconcileContext, spec: Entity, scope: Scope, *, guard: str) -> int:
        """Balances as the ledger rows give them, merged into the tenant hash restored before."""
        if spec is not BALANCE:
            return await super().restore_kind(rc, spec, scope, guard=guard)
        where, args = scope_sql(BALANCE, scope)
        rows = await rc.pool.fetch(
            f"SELECT c.tenant_id, c.currency, c.balance_minor FROM tenant_balances_from_rows c {where} ORDER BY 1, 2",
            *args)
        by_tenant: dict[str, list[Any]] = defaultdict(list)
        for r in rows:
            by_tenant[r["tenant_id"]] += [FIELD + r["currency"], r["balance_minor"]]
        async with rc.redis.pipeline(transaction=False) as pipe:
            for t, pairs in by_tenant.items():
                await rc.scripts.queue(pipe, "restore_hash", [rc.keys.tenant(t).tenant()], ["*", "merge", "", *pairs])
            await pipe.execute()
        return len(rows)
