"""msgspec structs and Lua tables derived from an entity's spec, so a field is named once.

The engine's state structs and the event log's ``<kind>.saved`` payloads are built
here from ``Entity.fields`` (``msgspec.defstruct``); the scripts that write such an
entity get the same list as a Lua table (``--- @spec "<kind>"``, expanded by the script
loader), and the appliers derive their SQL from it. Code that reasons about a field
declares it on a typed base class (mypy sees the base; the rest is data).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from dropgate.specs.base import Entity, Field

_PYTHON: dict[str, type] = {"text": str, "int": int, "flag": bool, "ms": int, "json": str}


def struct_fields(fields: Iterable[Field], *, skip: Iterable[str] = ()) -> list[tuple[str, Any] | tuple[str, Any, Any]]:
    """``defstruct`` field tuples for ``fields`` (a nullable field defaults to ``None``)."""
    skipped = set(skip)
    out: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for f in fields:
        if f.name in skipped:
            continue
        kind = _PYTHON[f.redis]
        out.append((f.name, kind | None, None) if f.null else (f.name, kind))
    return out


def spec_struct(name: str, fields: Iterable[Field], *, base: type[msgspec.Struct], module: str,
                **config: Any) -> type[msgspec.Struct]:
    """A keyword-only struct subclassing ``base`` with ``fields`` (those ``base`` lacks)."""
    return msgspec.defstruct(
        name, struct_fields(fields, skip=base.__struct_fields__), bases=(base,), module=module,
        kw_only=True, **config)


def lua_table(entity: Entity) -> str:
    """The Lua line ``--- @spec "<kind>"`` expands to: the saved fields, each
    ``{name, redis form, nullable}`` (see ``dg_spec_payload``/``dg_spec_set``)."""
    items = ", ".join(f"{{'{f.name}', '{f.redis}', {'true' if f.null else 'false'}}}" for f in entity.saved())
    return f"local DG_SPEC = {{{items}}}"


def redis_value(f: Field, value: object) -> str | int:
    """``value`` in ``f``'s Redis form, as a script argument (``''``: absent)."""
    if value is None:
        return ""
    if f.redis == "flag":
        return "1" if value else "0"
    if isinstance(value, bool | int | str):
        return value
    raise TypeError(f"{f.name}: {value!r} is not a {f.redis} value")


def script_pairs(entity: Entity, values: Mapping[str, object]) -> list[str | int]:
    """``values`` as flat ``name, value`` script arguments in Redis form; an unknown
    name is a ``TypeError`` (the script checks them again against the spec)."""
    by_name = {f.name: f for f in entity.fields}
    out: list[str | int] = []
    for key, value in values.items():
        if key not in by_name:
            raise TypeError(f"{entity.kind} has no field {key!r}")
        out += [key, redis_value(by_name[key], value)]
    return out
