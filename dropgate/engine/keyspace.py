"""The installation's keyspace: one SCAN split into (partition, parts), and deleting it.

``engine/keys.py`` formats every key as ``<prefix>:{p<N>}:<part>:<part>...``; ids
never contain ``:`` (``check_id``), so splitting after the hash tag recovers the
parts: ``("tenant", "acme")``, ``("t", "acme", "invite", "LAUNCH", "users")``. A
test formats keys with ``keys.py`` and parses them back, so the two cannot drift.
Reconcile and restore read the index (``KeyIndex``); tests, benchmarks and tearing an
install down delete by prefix (only keys under ``<prefix>:``, in batches, so a shared
Redis keeps everything else). Not for serving: hot state changes only inside scripts.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

from redis.asyncio import Redis

from dropgate.engine.keys import Keys
from dropgate.engine.redisclient import delete_keys, primaries, scan_pages
from dropgate.ids import text


class Progress(Protocol):
    """What a long scan reports to (``dropgate.progressbar.ProgressBar`` is one)."""

    def stage(self, label: str, total: int | None = None) -> None: ...
    def advance(self, n: int = 1) -> None: ...


async def delete_prefix(redis: Redis, prefix: str, *, batch: int = 1000) -> int:
    """Delete every key matching ``<prefix>:*``; return how many were deleted."""
    deleted = 0
    async for keys in _scan(redis, f"{prefix}:*", batch):  # every master of a cluster
        deleted += await delete_keys(redis, list(keys))  # type: ignore[arg-type]
    return deleted


# Keys that are bookkeeping, not domain state. ``apikeys`` holds the revocation
# versions and every serving process's poll record (``engine/revocations.py``): a
# running server writes its records into a freshly lost Redis within a poll, and that
# must not read as state that a restore would overwrite.
INFRASTRUCTURE = frozenset({"log", "dead", "persister", "dispatcher", "apikeys"})


@dataclass
class KeyIndex:
    """Every key under the prefix: ``parts`` tuples grouped by partition."""

    prefix: str
    by_partition: dict[int, set[tuple[str, ...]]] = field(default_factory=dict)
    other: list[str] = field(default_factory=list)   # under the prefix but not partitioned (meta)
    total: int = 0

    @classmethod
    async def scan(cls, redis: Redis, keys: Keys, *, tenant_id: str | None = None,
                   progress: Progress | None = None, count: int = 10_000) -> KeyIndex:
        index = cls(prefix=keys.prefix)
        if progress is not None:
            progress.stage("scan keys", int(await redis.dbsize()))
        async for batch in _scan(redis, f"{keys.prefix}:*", count):
            for raw in batch:
                index.add(text(raw), tenant_id=tenant_id)
            if progress is not None:
                progress.advance(len(batch))
        return index

    def add(self, key: str, *, tenant_id: str | None = None) -> None:
        match = _tag_re(self.prefix).match(key)
        if match is None:
            self.other.append(key)
            return
        parts = tuple(match.group(2).split(":"))
        if tenant_id is not None and not _of_tenant(parts, tenant_id):
            return
        bucket = self.by_partition.setdefault(int(match.group(1)), set())
        if parts not in bucket:  # SCAN may return a key twice
            bucket.add(parts)
            self.total += 1

    def find(self, *shape: str | None) -> Iterator[tuple[int, tuple[str, ...]]]:
        """Keys whose parts match ``shape`` (``None`` matches any one part)."""
        n = len(shape)
        for p, parts_list in self.by_partition.items():
            for parts in parts_list:
                if len(parts) == n and all(s is None or s == x for s, x in zip(shape, parts, strict=True)):
                    yield p, parts

    def key(self, partition: int, parts: tuple[str, ...]) -> str:
        return f"{self.prefix}:{{p{partition}}}:" + ":".join(parts)

    def domain_parts(self) -> Iterator[tuple[int, tuple[str, ...]]]:
        for p, parts_list in self.by_partition.items():
            for parts in parts_list:
                if parts[0] not in INFRASTRUCTURE:
                    yield p, parts


@lru_cache(maxsize=64)
def _tag_re(prefix: str) -> re.Pattern[str]:
    return re.compile(re.escape(prefix) + r":\{p(\d+)\}:(.*)\Z", re.S)


def _of_tenant(parts: tuple[str, ...], tenant_id: str) -> bool:
    """Tenant-scoped keys (``t:<tenant>:...``, ``tenant:<tenant>``); others (API keys,
    logs) are kept and filtered by their reconciler."""
    if parts[0] in ("t", "tenant"):
        return len(parts) > 1 and parts[1] == tenant_id
    return True


async def _scan(redis: Redis, pattern: str, count: int) -> AsyncIterator[list[bytes | str]]:
    """SCAN every master (one on a single server, each master of a cluster in turn)."""
    for node in await primaries(redis):
        async for batch in scan_pages(node.scan, count=count, match=pattern):
            yield batch
