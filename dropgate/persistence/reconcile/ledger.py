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
from collections.abc import AsyncIterator
from typing import Any

from dropgate.persistence.reconcile.base import Comparison, Drift, KindCount, ReconcileContext, Scope, repair_log
from dropgate.persistence.reconcile.generic import SpecReconciler
from dropgate.persistence.reconcile.sql import scope_sql
from dropgate.persistence.setdiff import SqlSide, StreamSide, decode, diff_sets, encode, hashes, sql_member
from dropgate.specs import Entity
from dropgate.specs.entities import BALANCE, ORDER, SLOT, WITHDRAWAL

FIELD = "bal:"


class LedgerReconciler(SpecReconciler):
    def __init__(self) -> None:
        super().__init__(BALANCE, WITHDRAWAL, ORDER, SLOT)

    async def compare_kind(self, rc: ReconcileContext, scope: Scope, spec: Entity) -> Comparison:
        if spec is not BALANCE:
            return await super().compare_kind(rc, scope, spec)
        out = Comparison()
        index = await rc.index(scope)
        tenants = sorted(parts[1] for _, parts in index.find("tenant", None)
                         if scope.tenant_id is None or parts[1] == scope.tenant_id)
        redis: dict[str, str] = {}
        members: list[str] = []
        async for batch in hashes(rc.redis, [rc.keys.tenant(t).tenant() for t in tenants]):
            for key, fields in batch:
                t = key.rsplit(":", 1)[1]
                for f, v in fields.items():
                    entity = BALANCE.entity(t, f[len(FIELD):])
                    if f.startswith(FIELD) and scope.wants(entity, t):
                        redis[entity] = v
                        members.append(encode(t, f[len(FIELD):], v))

        async def produce() -> AsyncIterator[list[str]]:
            yield members

        where, args = scope_sql(BALANCE, scope)
        diff = await diff_sets(StreamSide(produce), SqlSide(
            rc.fetch, args=args, from_sql=f"FROM {BALANCE.table} c {where}",
            member_sql=sql_member(*BALANCE.id_exprs("c"), *(f.expr("c") for f in BALANCE.fields))))
        pg = {BALANCE.entity(*decode(m)[:2]): decode(m)[2] for m in diff.only_postgres}
        for entity in sorted({BALANCE.entity(*decode(m)[:2]) for m in diff.only_redis} | pg.keys()):
            t = BALANCE.split(entity)[0]
            partition = rc.keys.tenant(t).partition
            waiting = await rc.pending(partition)
            if any(e.startswith((f"payment:{t}:", f"{WITHDRAWAL.kind}:{t}:")) for e in waiting) or \
                    await rc.unsettled(entity, partition, None):
                out.in_flight.add(entity)
                continue
            r, g = redis.get(entity), pg.get(entity)
            problem: Any = "missing_in_redis" if r is None else "missing_in_postgres" if g is None else "differs"
            out.drifts.append(Drift(domain=self.domain, entity=entity, field="balance", problem=problem, redis=r,
                                    postgres=g, detail=f"balance: Redis {r}, PostgreSQL {g}"))
        out.counts.append(KindCount(domain=self.domain, kind=BALANCE.kind,
                                    checked=diff.redis_count + len(pg.keys() - redis.keys()),
                                    in_flight=len(out.in_flight)))
        return out

    async def repair_entity(self, rc: ReconcileContext, spec: Entity, entity: str, found: list[Drift]) -> None:
        if spec is not BALANCE:
            return await super().repair_entity(rc, spec, entity, found)
        t, currency = BALANCE.split(entity)
        seen = next((d.redis for d in found if d.field == "balance" and d.problem != "counter"), None)
        if seen is None:
            seen = next((d.redis for d in found), None)
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
