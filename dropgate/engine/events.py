"""The event log's entries as Python sees them.

Each state-changing script appends ``t`` (type), ``e`` (entity), ``v`` (the
entity's version after the change) and ``d`` (payload) to its partition's stream.
The payload is JSON, not msgpack: Redis' Lua has ``cjson`` built in, entries stay
readable with ``XRANGE`` in ``redis-cli`` while debugging a drop, and msgspec
decodes JSON about as fast as msgpack. Stream ids (``<ms>-<seq>``) give the
partition's total order; the persister's committed offset is such an id.
"""

from __future__ import annotations

from typing import Any

import msgspec

_payload_decoder = msgspec.json.Decoder(dict[str, Any])


def parse_stream_id(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


class Event(msgspec.Struct, frozen=True):
    """One entry of a partition's log."""

    id: str
    partition: int
    type: str
    entity: str
    version: int
    data: dict[str, Any]

    @property
    def position(self) -> tuple[int, int]:
        return parse_stream_id(self.id)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def parse_entry(partition: int, entry_id: bytes | str, fields: dict[Any, Any]) -> Event:
    get = {_text(k): v for k, v in fields.items()}
    return Event(
        id=_text(entry_id),
        partition=partition,
        type=_text(get["t"]),
        entity=_text(get["e"]),
        version=int(get["v"]),
        data=_payload_decoder.decode(get["d"]),
    )
