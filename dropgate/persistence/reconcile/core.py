"""Tenants (their subscription fields) and API keys.

Tenant balances (``bal:*`` fields of the tenant hash) belong to the ledger's
reconciler; this one compares and restores only the fields it names, and restores
in ``merge`` mode so it never erases a balance.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from dropgate.engine.scripts import decode_result
from dropgate.persistence.reconcile.base import (
    Comparison,
    Drift,
    KindCount,
    ReconcileContext,
    Scope,
)
from dropgate.persistence.reconcile.sets import (
    SqlSide,
    StreamSide,
    decode,
    diff_sets,
    encode,
    hashes,
    sql_member,
    sql_ms,
)
from dropgate.persistence.reconcile.util import restore_entity, seen_version

DOMAIN = "core"
TENANT_FIELDS = ("name", "status", "trial_end_ms", "created_ms", "version")
APIKEY_FIELDS = ("secret_sha256", "role", "tenant_id", "created_ms")
BATCH = 500


def _ids(scope: Scope, kind: str) -> list[str] | None:
    if scope.entities is None:
        return None
    return [e.split(":", 1)[1] for e in scope.entities if e.startswith(kind + ":")]


class TenantReconciler:
    domain: str = DOMAIN
    kinds: tuple[str, ...] = ("tenant",)

    def owns(self, parts: tuple[str, ...]) -> bool:
        return len(parts) == 2 and parts[0] == "tenant"

    def _filter(self, scope: Scope) -> tuple[str, list[Any]]:
        ids = _ids(scope, "tenant")
        if ids is not None:
            return "WHERE tenant_id = ANY($1::text[])", [ids]
        if scope.tenant_id is not None:
            return "WHERE tenant_id = $1", [scope.tenant_id]
        return "", []

    async def compare(self, rc: ReconcileContext, scope: Scope) -> Comparison:
        out = Comparison()
        if not scope.wants_kind("tenant"):
            return out
        index = await rc.index(scope)
        ids = sorted(parts[1] for _, parts in index.find("tenant", None) if scope.wants(f"tenant:{parts[1]}", parts[1]))
        async def records() -> AsyncIterator[list[str]]:
            async for batch in hashes(rc.redis, [rc.keys.tenant(t).tenant() for t in ids]):
                yield [encode(key.rsplit(":", 1)[1], *(fields.get(f) for f in TENANT_FIELDS))
                       for key, fields in batch if fields]

        where, args = self._filter(scope)
        diff = await diff_sets(StreamSide(records), SqlSide(
            rc.fetch, args=args, from_sql=f"FROM tenants {where}",
            member_sql=sql_member("tenant_id", "name", "subscription_status", sql_ms("trial_end"),
                                  sql_ms("created_at"), "version")))
        r_only = {decode(m)[0]: decode(m)[1:] for m in diff.only_redis}
        p_only = {decode(m)[0]: decode(m)[1:] for m in diff.only_postgres}
        for t in sorted(r_only.keys() | p_only.keys()):
            entity = f"tenant:{t}"
            r = dict(zip(TENANT_FIELDS, r_only[t], strict=True)) if t in r_only else None
            g = dict(zip(TENANT_FIELDS, p_only[t], strict=True)) if t in p_only else None
            rv = int(r["version"]) if r and r["version"] else None
            pv = int(g["version"]) if g and g["version"] else None
            status = await rc.classify(entity, rc.keys.tenant(t).partition, rv, pv)
            if status == "in_flight":
                out.in_flight.add(entity)
                continue
            if r is None or g is None:
                out.drifts.append(Drift(domain=DOMAIN, entity=entity, field="tenant", problem=status,
                                        redis=r, postgres=g, redis_version=rv, postgres_version=pv,
                                        detail=f"only in {'PostgreSQL' if r is None else 'Redis'}"))
                continue
            for f in [f for f in TENANT_FIELDS if f != "version" and r[f] != g[f]] or ["version"]:
                out.drifts.append(Drift(domain=DOMAIN, entity=entity, field=f, problem=status,
                                        redis=r[f], postgres=g[f], redis_version=rv, postgres_version=pv,
                                        detail=f"{f}: Redis {r[f]!r}, PostgreSQL {g[f]!r}"))
        out.counts.append(KindCount(domain=DOMAIN, kind="tenant",
                                    checked=diff.redis_count + len(p_only.keys() - r_only.keys()),
                                    in_flight=len(out.in_flight), drift=len({d.entity for d in out.drifts})))
        return out

    async def recount(self, rc: ReconcileContext, scope: Scope) -> None:
        """Tenants have no counters derived from rows (balances: the ledger's reconciler)."""

    async def repair(self, rc: ReconcileContext, drifts: list[Drift]) -> None:
        for entity in sorted({d.entity for d in drifts}):
            found = [d for d in drifts if d.entity == entity]
            t = entity.split(":", 1)[1]
            tk = rc.keys.tenant(t)
            if any(d.problem in ("missing_in_postgres", "postgres_behind") for d in found):
                await rc.scripts.call("resync_tenant", [tk.log, tk.tenant()], [rc.settings.max_backlog, t])
                rc.repaired(DOMAIN, entity, "reemitted", "tenant.saved from Redis into the log")
                continue
            await restore_entity(rc, DOMAIN, entity, seen_version(found), "tenant fields",
                                 partial(self._restore, rc))

    async def restore(self, rc: ReconcileContext, scope: Scope) -> int:
        if not scope.wants_kind("tenant"):
            return 0
        return await self._restore(rc, scope, guard="*")

    async def _restore(self, rc: ReconcileContext, scope: Scope, *, guard: str) -> int:
        where, args = self._filter(scope)
        rows = await rc.pool.fetch(
            f"""SELECT tenant_id, name, subscription_status, {sql_ms('trial_end')} AS trial_end_ms,
                       {sql_ms('created_at')} AS created_ms, version FROM tenants {where}""", *args)
        rc.progress.stage("restore tenants", len(rows))
        restored = 0
        for start in range(0, len(rows), BATCH):
            async with rc.redis.pipeline(transaction=False) as pipe:
                for r in rows[start:start + BATCH]:
                    await rc.scripts.queue(pipe, "restore_hash", [rc.keys.tenant(r["tenant_id"]).tenant()], [
                        guard, "merge", "", "tenant_id", r["tenant_id"], "name", r["name"],
                        "status", r["subscription_status"],
                        "trial_end_ms", "" if r["trial_end_ms"] is None else r["trial_end_ms"],
                        "created_ms", r["created_ms"], "version", r["version"]])
                replies = await pipe.execute()
            restored += sum(1 for raw in replies if decode_result(raw)["restored"])
            rc.progress.advance(len(replies))
        return restored


class ApiKeyReconciler:
    """API keys: Redis holds the live (unrevoked) ones; PostgreSQL all, with revoked_at."""

    domain: str = DOMAIN
    kinds: tuple[str, ...] = ("apikey",)

    def owns(self, parts: tuple[str, ...]) -> bool:
        return len(parts) == 2 and parts[0] == "apikey"

    def _filter(self, scope: Scope) -> tuple[str, list[Any]]:
        ids = _ids(scope, "apikey")
        if ids is not None:
            return "AND key_id = ANY($1::text[])", [ids]
        if scope.tenant_id is not None:
            return "AND tenant_id = $1", [scope.tenant_id]
        return "", []

    async def compare(self, rc: ReconcileContext, scope: Scope) -> Comparison:
        out = Comparison()
        if not scope.wants_kind("apikey"):
            return out
        index = await rc.index(scope)
        located = [(p, parts[1]) for p, parts in index.find("apikey", None)
                   if scope.entities is None or f"apikey:{parts[1]}" in scope.entities]
        redis_state: dict[str, dict[str, str]] = {}

        async def records() -> AsyncIterator[list[str]]:
            keys = [index.key(p, ("apikey", k)) for p, k in located]
            found: list[str] = []
            async for batch in hashes(rc.redis, keys):
                found = []
                for key, fields in batch:
                    kid = key.rsplit(":", 1)[1]
                    if not fields or (scope.tenant_id is not None and fields.get("tenant_id") != scope.tenant_id):
                        continue
                    redis_state[kid] = fields
                    found.append(encode(kid, *(fields.get(f) for f in APIKEY_FIELDS)))
                yield found

        where, args = self._filter(scope)
        diff = await diff_sets(StreamSide(records), SqlSide(
            rc.fetch, args=args, from_sql=f"FROM api_keys WHERE revoked_at IS NULL {where}",
            member_sql=sql_member("key_id", "secret_sha256", "role", "tenant_id", sql_ms("created_at"))))
        r_only = {decode(m)[0] for m in diff.only_redis}
        p_only = {decode(m)[0] for m in diff.only_postgres}
        for kid in sorted(r_only | p_only):
            entity = f"apikey:{kid}"
            p, _ = rc.keys.api_key(kid)
            status = await rc.classify(entity, p, 1 if kid in r_only else None, 1 if kid in p_only else None,
                                       versioned=False)
            if status == "in_flight":
                out.in_flight.add(entity)
                continue
            detail = {"missing_in_redis": "live in PostgreSQL, not in Redis",
                      "missing_in_postgres": "live in Redis, not live in PostgreSQL"}.get(status, "fields differ")
            out.drifts.append(Drift(domain=DOMAIN, entity=entity, field="apikey", problem=status,
                                    redis=_public(redis_state.get(kid)), detail=detail))
        out.counts.append(KindCount(domain=DOMAIN, kind="apikey", checked=diff.redis_count + len(p_only - r_only),
                                    in_flight=len(out.in_flight), drift=len(out.drifts)))
        return out

    async def recount(self, rc: ReconcileContext, scope: Scope) -> None:
        """API keys have no counters."""

    async def repair(self, rc: ReconcileContext, drifts: list[Drift]) -> None:
        for d in drifts:
            kid = d.entity.split(":", 1)[1]
            p, key = rc.keys.api_key(kid)
            row = await rc.pool.fetchrow("SELECT revoked_at FROM api_keys WHERE key_id = $1", kid)
            if d.problem == "missing_in_postgres" and row is None:
                await rc.scripts.call("resync_apikey", [rc.keys.log(p), key], [rc.settings.max_backlog, kid])
                rc.repaired(DOMAIN, d.entity, "reemitted", "apikey.created from Redis into the log")
            elif row is not None and row["revoked_at"] is not None:
                await rc.scripts.call("restore_hash", [key], ["*", "replace", ""])
                rc.repaired(DOMAIN, d.entity, "deleted_from_redis", "revoked in PostgreSQL")
            else:
                await self._restore(rc, Scope(entities=frozenset({d.entity})), guard="*")
                rc.repaired(DOMAIN, d.entity, "restored", "Redis := PostgreSQL (live key)")

    async def restore(self, rc: ReconcileContext, scope: Scope) -> int:
        if not scope.wants_kind("apikey"):
            return 0
        return await self._restore(rc, scope, guard="*")

    async def _restore(self, rc: ReconcileContext, scope: Scope, *, guard: str) -> int:
        where, args = self._filter(scope)
        rows = await rc.pool.fetch(
            f"""SELECT key_id, secret_sha256, role, coalesce(tenant_id, '') AS tenant_id,
                       {sql_ms('created_at')} AS created_ms
                  FROM api_keys WHERE revoked_at IS NULL {where}""", *args)
        rc.progress.stage("restore api keys", len(rows))
        restored = 0
        for start in range(0, len(rows), BATCH):
            async with rc.redis.pipeline(transaction=False) as pipe:
                for r in rows[start:start + BATCH]:
                    _, key = rc.keys.api_key(r["key_id"])
                    await rc.scripts.queue(pipe, "restore_hash", [key], [
                        guard, "replace", "", "secret_sha256", r["secret_sha256"], "role", r["role"],
                        "tenant_id", r["tenant_id"], "created_ms", r["created_ms"]])
                replies = await pipe.execute()
            restored += sum(1 for raw in replies if decode_result(raw)["restored"])
            rc.progress.advance(len(replies))
        return restored


def _public(fields: dict[str, str] | None) -> dict[str, str] | None:
    """An API key's record without its secret's digest (reports are shared)."""
    if fields is None:
        return None
    return {k: v for k, v in fields.items() if k != "secret_sha256"}
