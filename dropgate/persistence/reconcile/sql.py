"""The SQL reconcile derives from entity specs: the one scope filter, counters, restore rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dropgate.persistence.reconcile.base import Scope, entity_kind
from dropgate.specs import Entity
from dropgate.specs.entities import DOMAINS

_CHILDREN = {e.owner[0]: e for d in DOMAINS for e in d.entities if e.owner}


def named(scope: Scope, spec: Entity) -> list[list[str]]:
    """The parts (tenant, ids) of the scope's exact entities of ``spec``'s kind."""
    return [spec.split(e) for e in sorted(scope.entities or ()) if entity_kind(e) == spec.kind]


def _in(columns: Sequence[str], rows: list[list[str]], args: list[Any]) -> str:
    first = len(args) + 1
    args += [[r[i] for r in rows] for i in range(len(columns))]
    unnest = ", ".join(f"${first + i}::text[]" for i in range(len(columns)))
    return f"({', '.join(columns)}) IN (SELECT * FROM unnest({unnest}))"


def scope_sql(spec: Entity, scope: Scope, alias: str = "c", *, columns: Sequence[str] | None = None,
              where: str = "") -> tuple[str, list[Any]]:
    """``WHERE ...`` for the rows of ``spec`` in scope (or, with ``columns``, of rows
    naming it by those columns: its members), and the arguments: exact entities (and
    the owners of exact child entities: an offer of a named purchase), a tenant, or
    everything; then the rows' own condition (``where`` or the spec's live rows)."""
    a = f"{alias}." if alias else ""
    cols = [f"{a}{c}" for c in columns] if columns is not None else list(spec.id_exprs(alias))
    conds: list[str] = []
    args: list[Any] = []
    if scope.entities is not None:
        alternatives = [_in(cols, named(scope, spec), args)]
        child = _CHILDREN.get(spec.kind)
        if child is not None and child.owner is not None and named(scope, child):
            inner = _in(child.id_exprs("k"), named(scope, child), args)
            alternatives.append(f"({', '.join(cols)}) IN (SELECT k.{child.tenant}, k.{child.owner[1]} "
                                f"FROM {child.table} k WHERE {inner})")
        conds.append("(" + " OR ".join(alternatives) + ")")
    elif scope.tenant_id is not None and spec.tenant is not None:
        args.append(scope.tenant_id)
        conds.append(f"{a}{spec.tenant} = ${len(args)}")
    own = where or (spec.where if columns is None else "")
    if own:
        conds.append(own.replace("{a}", a))
    return ("WHERE " + " AND ".join(conds) if conds else ""), args


def and_where(where: str) -> str:
    return "AND" if where else "WHERE"


def stale_sql(spec: Entity, alias: str = "c") -> str:
    """The rows whose counters differ from what their rows give."""
    return " OR ".join(f"{alias}.{c.col} <> {c.sql(spec, alias)}" for c in spec.counts)


def row_sql(spec: Entity, alias: str = "c") -> str:
    """A restore's select list: the entity name's parts (``_0``, ``_1``, ...) and every
    restored field in its Redis form, counters as their rows give them."""
    out = [f"{e} AS _{i}" for i, e in enumerate(spec.id_exprs(alias))]
    for f in spec.fields:
        if not f.restored:
            continue
        source = spec.field(f.same_as) if f.same_as else f
        count = spec.count(source.name)
        out.append(f"{count.sql(spec, alias) if count else source.expr(alias)} AS {f.name}")
    return ", ".join(out)


def parts_of(row: Any, spec: Entity) -> list[str]:
    return [str(row[f"_{i}"]) for i in range(len(spec.id_columns))]
