"""What every domain engine needs: Redis, the script registry, key names, settings."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from dropgate.engine.keys import Keys
from dropgate.engine.scripts import Scripts
from dropgate.settings import Settings


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
