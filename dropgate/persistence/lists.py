"""Keyset pagination over PostgreSQL: one ``ListSpec`` per collection, one query shape.

Why keyset: a page is "the next ``limit`` rows after the last one seen" in an index
order on immutable columns (``created_at, id``, the code itself, or a ``bigserial``), so page 10,000
costs what page 1 costs (no ``OFFSET``), and a page can neither repeat nor skip a
row when rows are inserted meanwhile: the order of the rows that existed is fixed,
and a new row lands before the cursor (newest first) or in its place in the order.

The cursor is the last row's key, encoded as URL-safe base64 of JSON with the
list's name and an HMAC (``dg_meta.cursor_secret``, made once per install), so a
tampered cursor, or one from another list, is a 400 and never reaches SQL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
import msgspec

from dropgate.errors import ValidationError
from dropgate.ids import check_id, check_type

KeyKind = Literal["ts", "text", "int"]
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Filter:
    """A query filter: ``column`` compared with the parsed value, or ``sql`` given it as $n."""

    kind: Literal["id", "type", "bool", "enum"]
    column: str = ""
    values: tuple[str, ...] = ()  # kind "enum"
    sql: Mapping[str, str] | None = None  # per value: a condition instead of column = $n
    description: str = ""

    def parse(self, name: str, raw: str) -> Any:
        if self.kind == "id":
            return check_id(raw, name)
        if self.kind == "type":
            return check_type(raw, name)
        if self.kind == "bool":
            if raw not in ("true", "false"):
                raise ValidationError(f"{name} must be true or false.", details={"field": name})
            return raw == "true"
        if raw not in self.values:
            raise ValidationError(f"{name} must be one of {', '.join(self.values)}.",
                                  details={"field": name})
        return raw


@dataclass(frozen=True)
class ListSpec:
    """One collection: where its rows are, their order, their filters, one row's answer."""

    name: str
    source: str  # FROM (a table, or a join)
    columns: str  # SELECT list
    keys: tuple[tuple[str, KeyKind], ...]  # order columns, the last one unique
    scope: tuple[str, ...]  # equality columns fixed by tenancy / the path, in index order
    item: Callable[[asyncpg.Record], Any]
    filters: Mapping[str, Filter] = field(default_factory=dict)
    descending: bool = True
    where: str = ""  # a condition every row of the list meets

    def sql(self, scope_n: int, filters: Mapping[str, Any], after: bool) -> tuple[str, list[str]]:
        """The page query and the filters' parameter order (after the scope's and before
        the cursor's and the limit's)."""
        where = [f"{col} = ${i + 1}" for i, col in enumerate(self.scope[:scope_n])]
        if self.where:
            where.append(self.where)
        n = scope_n
        order_params: list[str] = []
        for name, value in filters.items():
            f = self.filters[name]
            if f.sql is not None:
                where.append(f.sql[value])
                continue
            n += 1
            where.append(f"{f.column} = ${n}")
            order_params.append(name)
        if after:
            cols = ", ".join(k for k, _ in self.keys)
            marks = ", ".join(f"${n + 1 + i}" for i in range(len(self.keys)))
            where.append(f"({cols}) {'<' if self.descending else '>'} ({marks})")
            n += len(self.keys)
        direction = " DESC" if self.descending else ""
        order = ", ".join(k + direction for k, _ in self.keys)
        text = (f"SELECT {self.columns} FROM {self.source} WHERE {' AND '.join(where) or 'true'} "
                f"ORDER BY {order} LIMIT ${n + 1}")
        return text, order_params


class Page(msgspec.Struct, kw_only=True):
    data: list[Any]
    has_more: bool
    next_cursor: str | None


def _key_value(kind: KeyKind, value: Any) -> Any:
    if kind == "ts":
        delta: timedelta = value - _EPOCH
        return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return value


def _key_param(kind: KeyKind, value: Any) -> Any:
    if kind == "ts":
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError("bad key")
        return _EPOCH + timedelta(microseconds=value)
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool) or not -2**63 <= value < 2**63:
            raise ValueError("bad key")
        return value
    if not isinstance(value, str) or len(value) > 200:
        raise ValueError("bad key")
    return value


class Cursors:
    """Opaque, signed cursors: ``base64url(json([list, keys])) . base64url(hmac)``."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[:16]

    def encode(self, spec: ListSpec, row: asyncpg.Record) -> str:
        keys = [_key_value(kind, row[name.rsplit(".", 1)[-1]]) for name, kind in spec.keys]
        payload = msgspec.json.encode([spec.name, keys])
        return (base64.urlsafe_b64encode(payload).rstrip(b"=").decode() + "."
                + base64.urlsafe_b64encode(self._mac(payload)).rstrip(b"=").decode())

    def decode(self, spec: ListSpec, cursor: str) -> list[Any]:
        bad = ValidationError("The cursor is not one this list answered.",
                              details={"field": "cursor"})
        try:
            body, _, mac = cursor.partition(".")
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            given = base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4))
            if not hmac.compare_digest(given, self._mac(payload)):
                raise bad
            name, keys = msgspec.json.decode(payload)
            if name != spec.name or len(keys) != len(spec.keys):
                raise bad
            return [_key_param(kind, v) for (_, kind), v in zip(spec.keys, keys, strict=True)]
        except (ValueError, TypeError, msgspec.MsgspecError, UnicodeError):
            raise bad from None


async def cursor_secret(pool: asyncpg.Pool) -> bytes:
    """The install's cursor key, made on first use and shared by every process."""
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO dg_meta (key, value) VALUES ('cursor_secret', $1) ON CONFLICT DO NOTHING",
            secrets.token_hex(32))
        value = await conn.fetchval("SELECT value FROM dg_meta WHERE key = 'cursor_secret'")
    return bytes.fromhex(str(value))


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    # ASCII digits only: str.isdigit() also accepts '²', which int() refuses
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValidationError(f"limit must be 1-{MAX_LIMIT}.", details={"field": "limit"})
    return int(raw)


async def fetch_page(
    pool: asyncpg.Pool,
    cursors: Cursors,
    spec: ListSpec,
    *,
    scope: Sequence[Any],
    query: Mapping[str, str],
    limit: int,
    cursor: str | None,
) -> Page:
    """One page: ``limit`` rows after ``cursor`` in the spec's order, filtered by ``query``."""
    filters = {name: spec.filters[name].parse(name, raw) for name, raw in query.items()}
    after = cursors.decode(spec, cursor) if cursor else None
    text, names = spec.sql(len(scope), filters, after is not None)
    args = [*scope, *(filters[n] for n in names), *(after or []), limit + 1]
    rows = await pool.fetch(text, *args)
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(data=[spec.item(r) for r in rows], has_more=more,
                next_cursor=cursors.encode(spec, rows[-1]) if more else None)
