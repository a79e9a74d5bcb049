"""The applier signature and the conversions appliers share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from dropgate.engine.events import Event
from dropgate.ids import ms_to_dt
from dropgate.specs import Entity

Applier = Callable[[asyncpg.Connection, list[Event[Any]]], Awaitable[None]]
"""Applies a run of consecutive events of one type; each event's ``data`` is the
payload struct of that type (the persister decoded it, and dead-letters what does not
decode), so an applier reads attributes, never ``d["..."]``."""

PipelineKey = Callable[[Event[Any]], Hashable]
"""The row key an event of a pipelined type writes (``PIPELINED`` of each module).

The persister applies a hot partition's next batch while the batch before it is still being
applied and committed, on another connection (``persister.py``: ``_apply_pipelined``). A type
may be pipelined when its applier then gives the rows it would give one batch after the other,
the batch before being made only of pipelined events sharing none of its keys:
- its first statement writes only its own keys' rows until its table's first statement-level
  AFTER trigger (``*_a_pipeline_wait``, migration 0020) has waited for the batch before to
  end; the rows both batches change (a code's or an offer's counters and version) are touched
  after that wait only (by the triggers after it and by later statements). The check that
  the code or offer exists (a statement trigger after the wait, migrations 0019 and 0021)
  locks its row FOR KEY SHARE, which the batch before's updates of that row do not
  conflict with;
- what it reads before that wait gives the same answer at an older committed state of
  another batch's rows: a code's existence, or its version guarding a use against a replay
  (a later event's version is higher than every earlier one's).
Nothing the batch before does waits on this one, so the two cannot deadlock. A type that
creates what others read (``*.saved``: the offer a purchase names) or deletes (a rollback)
is not pipelined."""


def ts(ms: int | None) -> datetime | None:
    """Event payload milliseconds -> timestamptz value (``ms_to_dt``: exact integers)."""
    return ms_to_dt(ms)


_ROWS = msgspec.json.Encoder()


def json_rows(rows: Sequence[msgspec.Struct]) -> str:
    """A run's rows as ONE json parameter, for ``json_to_recordset($1::json) AS r (...)``:
    the structs msgspec decoded (or a row struct of them), encoded again in C. The hot
    appliers (purchases, invite and promo uses) send their runs so: as one typed array per
    column, building the arrays and asyncpg's encoding of every element (an abstract-class
    check each) were half of the persister's CPU per purchase and a fifth per use
    (BENCHMARKS.md, "The offers persister: one json parameter" and "The persister's parsing
    and its parameters"). PostgreSQL parses the json for about 1 µs per row more."""
    return _ROWS.encode(rows).decode()


def raw_rows(events: Sequence[Event[Any]]) -> str:
    """A run's payloads as ONE json parameter (as ``json_rows``), made of the bytes each
    script wrote rather than of the structs encoded again. Each was decoded into its
    struct when read (``parse_entry``: a payload that does not decode never reaches an
    applier, it is dead-lettered), so the bytes are a valid record of its type. Joining
    them spares the persister encoding every struct again (about 0.5 µs a purchase), and
    PostgreSQL parsing the keys that encoding adds, each default and the tag (2-6 µs:
    BENCHMARKS.md, "A purchase's first version, and its record's own bytes"). A key a script leaves out is
    NULL in the recordset, so the statement gives such a column the struct's default
    (``COALESCE``). An event made in code, with no bytes, is encoded from its struct."""
    return (b"[" + b",".join([e.raw or _ROWS.encode(e.data) for e in events]) + b"]").decode()


def columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows -> one list per column: the arrays of an ``unnest($1::t[], ...)`` statement,
    which sends a whole run in ONE statement (``executemany`` sends one per row, and a
    row trigger or constraint then runs once per statement as well as per row)."""
    cols: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for col, value in zip(cols, row, strict=True):
            col.append(value)
    return cols


async def raise_versions(conn: asyncpg.Connection, entity: Entity,
                         versions: Iterable[tuple[tuple[str, str], int]]) -> None:
    """Each row of ``entity``'s table named by a (tenant, id) key to the highest version
    given for it, in one statement; never back (a replayed or older event leaves a row
    newer than it alone), and nothing to do for no versions."""
    latest: dict[tuple[str, str], int] = {}
    for k, version in versions:
        latest[k] = max(latest.get(k, 0), version)
    if not latest:
        return
    tenant, ident = entity.id_columns
    await conn.execute(
        f"""UPDATE {entity.table} t SET version = v.version
             FROM unnest($1::text[], $2::text[], $3::bigint[]) AS v ({tenant}, {ident}, version)
            WHERE t.{tenant} = v.{tenant} AND t.{ident} = v.{ident} AND t.version < v.version""",
        *columns([(*k, v) for k, v in latest.items()], 3))


def rounds(events: Iterable[Event[Any]], key: Callable[[Event[Any]], Hashable]) -> list[list[Event[Any]]]:
    """Events split into rounds holding at most one event per entity, in log order: round
    k holds each entity's k-th event. One upsert statement per round then applies a run
    exactly as one statement per event would (an ``INSERT ... ON CONFLICT DO UPDATE``
    cannot touch a row twice, and an entity's later version must see its earlier one).
    A crowd's run is one round: each purchase appears once per batch."""
    out: list[list[Event[Any]]] = []
    seen: dict[Hashable, int] = {}
    for e in events:
        k = key(e)
        n = seen.get(k, 0)
        seen[k] = n + 1
        if n == len(out):
            out.append([])
        out[n].append(e)
    return out


def saved_upsert(entity: Entity) -> Applier:
    """The applier of ``<kind>.saved`` for ``entity``: its saved fields upserted into its
    table by version (columns and conversions from the spec, so none is restated here)."""
    fields = entity.saved()
    cols = [*(f.col for f in fields), "version"]
    keys = set(entity.id_columns)
    sql = (f"INSERT INTO {entity.table} ({', '.join(cols)}) "
           f"VALUES ({', '.join(f'${i}' for i in range(1, len(cols) + 1))}) "
           f"ON CONFLICT ({', '.join(entity.id_columns)}) DO UPDATE SET "
           + ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c not in keys)
           + f" WHERE {entity.table}.version < EXCLUDED.version")
    convert = [ts if f.redis == "ms" else None for f in fields]
    names = [f.name for f in fields]

    async def apply(conn: asyncpg.Connection, events: list[Event[Any]]) -> None:
        await conn.executemany(sql, [
            (*(c(getattr(e.data, n)) if c else getattr(e.data, n) for n, c in zip(names, convert, strict=True)),
             e.version)
            for e in events])

    apply.__name__ = apply.__qualname__ = f"{entity.kind}_saved"
    return apply
