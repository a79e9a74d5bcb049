"""Partition leases shared by consumers of the logs: one owner per partition at a time.

The persister's lease script (``persister_lease``: take, renew or give up a key with
a TTL) is generic; ``PartitionLeases`` runs it over every partition for one owner and
one kind of lease key, renewing at a third of the TTL, and says which partitions were
gained and lost. The webhook dispatcher uses it with ``Keys.dispatcher_lease``; the
persister keeps its own loop over the same script for now.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from dropgate.engine.scripts import Scripts


class PartitionLeases:
    def __init__(self, *, scripts: Scripts, partitions: int, lease_key: Callable[[int], str],
                 owner: str, lease_ms: int) -> None:
        self._scripts = scripts
        self._partitions = partitions
        self._lease_key = lease_key
        self.owner = owner
        self._lease_ms = lease_ms
        self._renewed_at = 0.0
        self.owned: set[int] = set()

    def due(self) -> bool:
        return time.monotonic() - self._renewed_at >= self._lease_ms / 3000

    def expire_now(self) -> None:
        """Renew at the next ``refresh`` (after a partition was found moved on)."""
        self._renewed_at = 0.0

    async def refresh(self, *, force: bool = False) -> tuple[set[int], set[int]]:
        """Take or renew every lease it can; returns (gained, lost) partitions."""
        if not force and not self.due():
            return set(), set()
        gained: set[int] = set()
        lost: set[int] = set()
        for p in range(self._partitions):
            held = await self._scripts.call("persister_lease", [self._lease_key(p)],
                                            [self.owner, self._lease_ms])
            if held["held"] and p not in self.owned:
                gained.add(p)
                self.owned.add(p)
            elif not held["held"] and p in self.owned:
                lost.add(p)
                self.owned.discard(p)
        self._renewed_at = time.monotonic()
        return gained, lost

    def drop(self, p: int) -> None:
        self.owned.discard(p)

    async def release(self) -> None:
        for p in sorted(self.owned):
            await self._scripts.call("persister_lease", [self._lease_key(p)], [self.owner, 0])
        self.owned.clear()
