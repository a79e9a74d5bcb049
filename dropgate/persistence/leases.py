"""Partition leases shared by consumers of the logs: one owner per partition at a time,
and a fair share of the partitions for each live member.

This is the one balancing loop of the persister and the webhook dispatcher (each with
its own members key and lease key). Every live member (``persister_members``, a zset
renewed at each refresh) takes ``ceil(P / live)`` partitions, starting at its own
rank's slice so that they do not all race for the same ones; one holding more than its
share (a member joined) releases the extras, and the partitions of one that died are
free when its leases lapse (``persister_lease``: take, renew or give up a key with a
TTL), for the others to take on their next renewal, a third of the TTL later.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable

from dropgate.engine.scripts import Scripts

log = logging.getLogger(__name__)


class PartitionLeases:
    def __init__(self, *, scripts: Scripts, partitions: int, lease_key: Callable[[int], str],
                 members_key: str, owner: str, lease_ms: int, role: str) -> None:
        self._scripts = scripts
        self._partitions = partitions
        self._lease_key = lease_key
        self._members_key = members_key
        self.owner = owner
        self._lease_ms = lease_ms
        self._role = role  # "persister", "dispatcher": for the log lines
        self._renewed_at = 0.0
        # never rebound: an owner may alias it as its own set of partitions
        self.owned: set[int] = set()

    def due(self) -> bool:
        return time.monotonic() - self._renewed_at >= self._lease_ms / 3000

    def expire_now(self) -> None:
        """Renew at the next ``refresh`` (after a partition was found moved on)."""
        self._renewed_at = 0.0

    async def refresh(self, *, force: bool = False,
                      take: Callable[[int], Awaitable[None]] | None = None,
                      ) -> tuple[set[int], set[int]]:
        """Renew membership, then take or renew a fair share of leases and give up the
        extras; returns (gained, lost) partitions. ``take(p)`` runs for each newly
        leased partition before it counts as owned (if it raises, the lease is kept and
        the next refresh tries again)."""
        if not force and not self.due():
            return set(), set()
        live = (await self._scripts.call("persister_members", [self._members_key],
                                         [self.owner, self._lease_ms]))["members"]
        share = math.ceil(self._partitions / max(len(live), 1))
        rank = live.index(self.owner) if self.owner in live else 0
        order = [(rank * share + i) % self._partitions for i in range(self._partitions)]
        gained: set[int] = set()
        lost: set[int] = set()
        kept = 0
        for p in [q for q in order if q in self.owned] + [q for q in order if q not in self.owned]:
            ttl = self._lease_ms if kept < share else 0  # 0 gives an extra one up
            if ttl == 0 and p not in self.owned:
                continue
            held = await self._scripts.call("persister_lease", [self._lease_key(p)],
                                            [self.owner, ttl])
            if held["held"]:
                kept += 1
                if p not in self.owned:
                    if take is not None:
                        await take(p)
                    self.owned.add(p)
                    gained.add(p)
            elif p in self.owned:
                if ttl:
                    log.warning("%s %s lost partition %d", self._role, self.owner, p)
                else:
                    log.info("%s %s hands partition %d over (share %d)",
                             self._role, self.owner, p, share)
                self.owned.discard(p)
                lost.add(p)
        self._renewed_at = time.monotonic()
        return gained, lost

    def drop(self, p: int) -> None:
        self.owned.discard(p)

    async def leave(self) -> None:
        """Unregister, so that the others' shares grow at their next refresh."""
        await self._scripts.call("persister_members", [self._members_key], [self.owner, 0])

    async def release(self) -> None:
        """Leave and give every lease up (a clean stop)."""
        await self.leave()
        for p in sorted(self.owned):
            await self._scripts.call("persister_lease", [self._lease_key(p)], [self.owner, 0])
        self.owned.clear()
