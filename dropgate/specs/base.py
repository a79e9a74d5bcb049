"""The vocabulary of entity specs: a field, a member collection, a counter, an entity.

A spec is data that code reads (the shape of Django's model ``Meta`` or SQLAlchemy's
declarative tables): reconcile and restore derive their SQL, their Redis reads and
their reports from it instead of restating field lists per domain. This module
imports nothing of dropgate, so every layer (engine, persistence) may import it.

Redis forms (``Field.redis``): ``text`` and ``int`` as stored, ``flag`` ``'1'``/``'0'``
for a boolean column, ``ms`` milliseconds since the epoch for a ``timestamptz``
column, ``json`` a ``jsonb`` column's text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

RedisForm = Literal["text", "int", "flag", "ms", "json"]

# Milliseconds since the epoch of a timestamptz, as the scripts store times.
SQL_MS = "floor(extract(epoch FROM {0}) * 1000)::bigint"


@dataclass(frozen=True)
class Field:
    """One field: its Redis hash field (or record key), PostgreSQL column and forms."""

    name: str                          # Redis hash field / JSON record key
    column: str | None = None          # PostgreSQL column (default: ``name``)
    sql_type: str = "text"
    redis: RedisForm = "text"
    sql: str | None = None             # an SQL expression for the Redis form, when not the column's
    compare_sql: str | None = None     # what reconcile compares, when not ``sql`` (``{a}``: alias)
    same_as: str | None = None         # restored as another field's value (a slot's version)
    compared: bool = True              # reconcile compares it
    restored: bool = True              # restore writes it
    secret: bool = False               # never shown in a report
    null: bool = False                 # may be absent (Redis) / NULL (PostgreSQL)
    saved: bool = True                 # carried by the ``<kind>.saved`` event (else derived: ``sql``)

    @property
    def col(self) -> str:
        return self.column or self.name

    def expr(self, alias: str = "", *, compare: bool = False) -> str:
        """SQL giving the field's Redis form from its row (``alias.`` before columns)."""
        sql = self.compare_sql if compare and self.compare_sql is not None else self.sql
        if sql is not None:
            return sql.replace("{a}", f"{alias}." if alias else "")
        col = f"{alias}.{self.col}" if alias else self.col
        if self.redis == "flag":
            return f"CASE WHEN {col} THEN 1 ELSE 0 END"
        if self.redis == "ms":
            return SQL_MS.format(col)
        if self.redis == "json":
            return f"{col}::text"
        return col


@dataclass(frozen=True)
class Members:
    """A Redis collection beside an entity's hash, one PostgreSQL row per member.

    ``set``: the member is the row's ``id``; ``hash``: ``id`` -> a JSON record of
    ``fields``; ``zset``: ``id`` scored by ``score`` (absolute ms: holds keep their
    expiry). ``tally`` names a Redis hash counting the members by one record field
    (a promo's uses per customer), derived from the members on restore."""

    name: str                          # drift field ("uses", "holds")
    key: str                           # TenantKeys method of the collection (owner ids)
    redis: Literal["set", "hash", "zset"]
    table: str
    link: tuple[str, ...]              # the rows' columns naming the owner (tenant first)
    id: str                            # the member's column
    fields: tuple[Field, ...] = ()     # hash: the record's fields
    score: Field | None = None         # zset: the score
    where: str = ""                    # which rows are members (SQL on the rows)
    tally: tuple[str, str, str] | None = None  # (drift field, TenantKeys method, record field counted by)


@dataclass(frozen=True)
class Count:
    """A counter field kept next to the rows (PostgreSQL, by trigger) and members (Redis,
    by the scripts) it counts: rows of ``table`` linked to the owner, counted or with
    ``total`` summed, only those with ``when`` = (column, value)."""

    field: str                         # the owner's field (and column)
    table: str
    link: tuple[str, ...]              # the rows' columns naming the owner, in the owner's id order
    rows: str                          # how a report names the rows ("use rows")
    total: str | None = None
    when: tuple[str, str] | None = None
    column: str | None = None          # the owner's column (default: ``field``)

    @property
    def col(self) -> str:
        return self.column or self.field

    def sql(self, owner: Entity, alias: str) -> str:
        """A scalar subquery: the value the rows give for the owner row ``alias``."""
        cond = " AND ".join(f"u.{c} = {alias}.{o}" for c, o in zip(self.link, owner.id_columns, strict=True))
        if self.when is not None:
            cond += f" AND u.{self.when[0]} = '{self.when[1]}'"
        agg = f"coalesce(sum(u.{self.total}), 0)::bigint" if self.total else "count(*)"
        return f"(SELECT {agg} FROM {self.table} u WHERE {cond})"

    def fold(self, records: Iterable[Mapping[str, Any]]) -> int:
        """The value Redis' member records give (the same rule in Python)."""
        chosen = [r for r in records if self.when is None or r.get(self.when[0]) == self.when[1]]
        return sum(int(r[self.total]) for r in chosen) if self.total else len(chosen)


@dataclass(frozen=True)
class Entity:
    """One entity kind: named ``<kind>:<tenant>:<id>...`` as in the event log.

    Its Redis form is a hash (``key``: a ``TenantKeys`` method taking the ids, or the
    tenant's own hash when ``ids`` is empty), or a JSON record in a tenant-wide hash
    (``record_in``). Its PostgreSQL form is one row of ``table``."""

    kind: str
    domain: str                        # the reconcile domain reporting it
    table: str
    key: str
    ids: tuple[Field, ...]             # the id columns after the tenant
    fields: tuple[Field, ...]
    tenant: str | None = "tenant_id"   # the tenant column (in the entity's name unless ``global_``)
    global_: bool = False              # not named by tenant (API keys)
    words: tuple[str, ...] = ()        # key parts after ``t:<tenant>`` (for the key index)
    members: tuple[Members, ...] = ()
    counts: tuple[Count, ...] = ()
    versioned: bool = True
    where: str = ""                    # which rows are live (SQL on the rows; ``{a}``: alias)
    record_in: str | None = None       # TenantKeys method of the tenant-wide hash of JSON records
    owner: tuple[str, str] | None = None   # (owner kind, this row's column naming the owner)
    resync: tuple[str, ...] = ()       # the script re-emitting it from Redis into the log, its leading ARGV
    restore: str = "restore_hash"      # the script restoring it (``restore_swap``: with its collections)
    recount_setting: str | None = None     # a setting that lets a recount write the counters
    merge: bool = False                # restore merges into a hash shared with others

    @property
    def id_columns(self) -> tuple[str, ...]:
        return ((self.tenant,) if self.tenant and not self.global_ else ()) + tuple(f.col for f in self.ids)

    def id_exprs(self, alias: str = "") -> tuple[str, ...]:
        """SQL giving the entity name's parts (tenant, ids) as text."""
        a = f"{alias}." if alias else ""
        tenant = (f"{a}{self.tenant}",) if self.tenant and not self.global_ else ()
        return tenant + tuple(f"({f.expr(alias)})::text" for f in self.ids)

    def entity(self, *parts: object) -> str:
        return ":".join((self.kind, *(str(p) for p in parts)))

    def split(self, entity: str) -> list[str]:
        """An entity name's parts after the kind (ids never hold ``:``)."""
        return entity.split(":")[1:]

    def compared(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.compared)

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    def count(self, name: str) -> Count | None:
        return next((c for c in self.counts if c.field == name), None)

    def saved(self) -> tuple[Field, ...]:
        """The fields its ``<kind>.saved`` event carries: all but the counters (PostgreSQL
        derives them from the rows), the version (the event's own ``v``) and what is
        derived from other rows (``saved=False``)."""
        counted = {c.field for c in self.counts}
        return tuple(f for f in self.fields if f.name not in counted and f.name != "version" and f.saved)


@dataclass(frozen=True)
class Domain:
    """A reconcile domain: its entity kinds, in restore order."""

    name: str
    entities: tuple[Entity, ...] = field(default_factory=tuple)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(e.kind for e in self.entities)
