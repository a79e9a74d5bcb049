"""What every domain engine needs: Redis, the script registry, key names, settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from redis.asyncio import Redis

from dropgate.engine.keys import Keys
from dropgate.engine.scripts import Scripts
from dropgate.errors import NotFound
from dropgate.ids import text_map
from dropgate.settings import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class EngineContext:
    redis: Redis
    scripts: Scripts
    keys: Keys
    settings: Settings

    @property
    def backlog_bound(self) -> int:
        """ARGV[1] of every writing script: refuse writes past this many unpersisted events."""
        return self.settings.max_backlog

    async def read_hash(self, key: str, type: type[T], missing: str, details: dict[str, Any]) -> T:
        """The entity hash at ``key`` as ``type`` (Redis holds every field as a string:
        converted loosely); ``NotFound`` with ``missing`` and ``details`` when it is absent."""
        raw = await self.redis.hgetall(key)
        if not raw:
            raise NotFound(missing, details=details)
        return msgspec.convert(text_map(raw), type, strict=False)
