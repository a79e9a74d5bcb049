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
    # partitions with unpersisted events that no persister consumes: none holds their
    # lease, or the one holding it has neither read nor acknowledged for longer than
    # DROPGATE_PERSISTER_LEASE_MS (persistence/progress.py): not ready
    unpersisted_partitions: list[int] = msgspec.field(default_factory=list)
    # On Redis Cluster: each master's CLUSTER INFO cluster_state ("ok" when it serves
    # all slots); absent on a single Redis server.
    redis_cluster: dict[str, str] | None = None
    dispatcher_stuck: bool = False  # reported, not a reason for 503: the API still serves
