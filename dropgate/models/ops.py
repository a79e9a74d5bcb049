"""Operations: health and readiness."""

from __future__ import annotations

import msgspec


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct, kw_only=True):
    status: str
    redis: bool
    postgres: bool
    persister_lag: int
    max_backlog: int
    dead_letters: int
    dispatcher_stuck: bool = False  # reported, not a reason for 503: the API still serves
