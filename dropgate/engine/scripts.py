"""Loads the Lua scripts in ``lua/`` and runs them by SHA.

A script file is named ``<operation>-<number of keys>.lua`` (BullMQ's convention)
and opens with a ``--[[ ... ]]`` header naming its KEYS, ARGV, return value and
error codes. ``--- @include "name"`` lines pull in ``lua/lib/name.lua`` (one
``local function`` per file) at load time, so helpers are shared without
copy-paste and each script is still one self-contained EVALSHA body. A
``--- @spec "kind"`` line becomes ``local DG_SPEC = {...}``, the fields of that
entity's spec (``dropgate/specs``), so scripts name no field the spec already lists.

Every script answers a JSON string: a result, or ``{"err": CODE, "details": {}}``
built by ``dg_error``. The runner turns the latter into the exception class of
that code (``errors.ERRORS``). redis-py's ``Script`` objects do the EVALSHA and
reload transparently on NOSCRIPT (a restarted Redis or ``SCRIPT FLUSH``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

from dropgate.engine.redisclient import eval_and_wait
from dropgate.errors import error_for
from dropgate.specs.entities import DOMAINS
from dropgate.specs.structs import lua_table

LUA_DIR = Path(__file__).parent / "lua"
_NAME_RE = re.compile(r"^(?P<name>[a-z][a-z0-9_]*)-(?P<keys>\d+)\.lua$")
_INCLUDE_RE = re.compile(r'^--- @include "(?P<lib>[a-z0-9_]+)"\s*$', re.M)
_SPEC_RE = re.compile(r'^--- @spec "(?P<kind>[a-z_]+)"\s*$', re.M)
_SPECS = {e.kind: e for d in DOMAINS for e in d.entities}
_HEADER_RE = re.compile(r"\A--\[\[(?P<body>.*?)\]\]", re.S)
_KEY_LINE_RE = re.compile(r"^\s*KEYS\[(\d+)\]", re.M)
_ARGV_RE = re.compile(r"ARGV\[(\d+)\]")
_ERRORS_RE = re.compile(r"^\s*Errors:(?P<codes>[^\n]*)$", re.M)
_ERR_PREFIX = b'{"err"'

T = TypeVar("T")


@dataclass(frozen=True)
class ScriptSource:
    """One script as loaded: its name, declared key count and expanded text."""

    name: str
    num_keys: int
    path: Path
    text: str
    header: str
    declared_keys: tuple[int, ...]
    declared_errors: tuple[str, ...]


class _ScriptError(msgspec.Struct):
    err: str
    details: dict[str, Any] = {}


_error_decoder = msgspec.json.Decoder(_ScriptError)


def _expand(text: str, seen: set[str]) -> str:
    def include(match: re.Match[str]) -> str:
        lib = match.group("lib")
        if lib in seen:
            return ""
        seen.add(lib)
        body = (LUA_DIR / "lib" / f"{lib}.lua").read_text()
        return _expand(body, seen)

    def spec(match: re.Match[str]) -> str:
        return lua_table(_SPECS[match.group("kind")])

    return _SPEC_RE.sub(spec, _INCLUDE_RE.sub(include, text))


def load_sources(lua_dir: Path = LUA_DIR) -> dict[str, ScriptSource]:
    """Parse every script file; a file whose name or header is malformed is an error."""
    sources: dict[str, ScriptSource] = {}
    for path in sorted(lua_dir.glob("*.lua")):
        match = _NAME_RE.match(path.name)
        if match is None:
            raise ValueError(f"{path.name}: script files are named <operation>-<nkeys>.lua")
        raw = path.read_text()
        header = _HEADER_RE.match(raw)
        if header is None:
            raise ValueError(f"{path.name}: a script starts with a --[[ header ]]")
        body = header.group("body")
        declared = tuple(sorted({int(k) for k in _KEY_LINE_RE.findall(body)}))
        errors_line = _ERRORS_RE.search(body)
        codes = tuple(errors_line.group("codes").replace(",", " ").split()) if errors_line else ()
        name = match.group("name")
        if name in sources:
            raise ValueError(f"two scripts named {name}")
        sources[name] = ScriptSource(
            name=name,
            num_keys=int(match.group("keys")),
            path=path,
            text=_expand(raw, set()),
            header=body,
            declared_keys=declared,
            declared_errors=tuple(c for c in codes if c != "none"),
        )
    return sources


_SOURCES: dict[str, ScriptSource] | None = None


def sources() -> dict[str, ScriptSource]:
    global _SOURCES
    if _SOURCES is None:
        _SOURCES = load_sources()
    return _SOURCES


def patch_arg(value: object) -> str | int:
    """A patch script's argument: ``UNSET`` (or ``None`` with ``clears=False``) leaves the
    field unchanged (``''``), ``None`` clears it (``'none'``), a flag is ``'1'``/``'0'``."""
    if value is msgspec.UNSET:
        return ""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "1" if value else "0"
    assert isinstance(value, int | str), value
    return value


def keep_arg(value: object) -> str | int:
    """A patch script's argument where ``None`` leaves the field unchanged (``''``)."""
    return "" if value is None else patch_arg(value)


# Calls of one script through NOSCRIPT replies (each reloads it) before the error is
# raised: flushes in quick succession are survived, a server that cannot keep a script
# loaded is not hidden.
_RELOADS = 4


class Scripts:
    """The script registry of one Redis client: ``await scripts.call(name, keys, args)``."""

    def __init__(self, redis: Redis, *, wait_replicas: int = 0, wait_timeout_ms: int = 200) -> None:
        self._redis = redis
        # DROPGATE_REDIS_WAIT: durable calls WAIT for this many replicas before answering
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.unreplicated = 0  # durable calls answered after WAIT timed out short
        self._sources = sources()
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(src.text) for name, src in self._sources.items()
        }

    async def load_all(self) -> None:
        """SCRIPT LOAD everything up front, so the first request pays no reload."""
        for script in self._scripts.values():
            script.sha = await self._redis.script_load(script.script)

    async def raw(self, name: str, keys: list[str], args: list[Any], *,
                  durable: bool = False) -> bytes:
        """``durable``: a write that must survive a failover (purchases, payments, the
        ledger): with DROPGATE_REDIS_WAIT set, answered only once that many replicas
        have it, or the bounded wait ran out (counted in ``unreplicated``)."""
        src = self._sources[name]
        if len(keys) != src.num_keys:
            raise TypeError(f"{name} takes {src.num_keys} keys, got {len(keys)}")
        if durable and self.wait_replicas:
            return await self._raw_waited(name, keys, args)
        script = self._scripts[name]
        for _attempt in range(_RELOADS - 1):
            try:
                result: bytes = await script(keys=keys, args=args, client=self._redis)
                return result
            except NoScriptError:
                # redis-py reloads once on NOSCRIPT; a second SCRIPT FLUSH (or failover)
                # can land between that reload and its EVALSHA. NOSCRIPT means the
                # script did not run, so running it again is safe.
                continue
        result = await script(keys=keys, args=args, client=self._redis)
        return result

    async def _raw_waited(self, name: str, keys: list[str], args: list[Any]) -> bytes:
        script = self._scripts[name]
        for attempt in range(3):
            try:
                reply, acked = await eval_and_wait(self._redis, script.sha, keys, args,
                                                   self.wait_replicas, self.wait_timeout_ms)
            except NoScriptError:  # not run: a restarted or promoted node, load it there
                script.sha = await self._redis.script_load(script.script)
                continue
            except ResponseError as exc:
                if attempt == 2 or not str(exc).startswith(("MOVED", "ASK")):
                    raise
                # not run: the slot moved. A routed read follows the redirection and
                # updates the client's slot map for the next attempt.
                await self._redis.exists(keys[0])
                continue
            if acked < self.wait_replicas:
                self.unreplicated += 1
            return bytes(reply)
        raise ResponseError(f"{name}: the script could not be loaded where its slot is served")

    async def queue(self, pipe: Pipeline, name: str, keys: list[str], args: list[Any]) -> None:
        """Queue a script on a pipeline (bulk restore); ``decode_result`` its raw answer."""
        src = self._sources[name]
        if len(keys) != src.num_keys:
            raise TypeError(f"{name} takes {src.num_keys} keys, got {len(keys)}")
        await self._scripts[name](keys=keys, args=args, client=pipe)

    @overload
    async def call(self, name: str, keys: list[str], args: list[Any], *,
                   durable: bool = False) -> Any: ...

    @overload
    async def call(self, name: str, keys: list[str], args: list[Any], *, type: type[T],
                   durable: bool = False) -> T: ...

    async def call(
        self, name: str, keys: list[str], args: list[Any], *, type: Any = Any,
        durable: bool = False,
    ) -> Any:
        """Run a script; raise the error class of its code, or decode its JSON answer."""
        return decode_result(await self.raw(name, keys, args, durable=durable), type)


def decode_result(raw: bytes, type: Any = Any) -> Any:
    if raw.startswith(_ERR_PREFIX):
        err = _error_decoder.decode(raw)
        raise error_for(err.err, details=err.details or None)
    # strict=False: hash fields come back as strings ("5", "1") and decode into int/bool.
    return msgspec.json.decode(raw, type=type, strict=False)
