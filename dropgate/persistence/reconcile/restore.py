"""``dropgate restore``: rebuild Redis from PostgreSQL after Redis was lost or flushed.

Refuses a keyspace that still holds domain state or unpersisted events, unless
forced; forced, it first replays the log (so PostgreSQL holds every event) and then
overwrites each entity from PostgreSQL. Each domain restores through its restore
scripts (``restore_*.lua``), in ``RECONCILERS`` order: hot state still changes only in
scripts, and times (expiries of holds and reservations) are restored as the
absolute times PostgreSQL recorded, so they keep their expiry.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import msgspec

from dropgate.engine.keyspace import INFRASTRUCTURE, KeyIndex, Progress
from dropgate.engine.revocations import revocations_floor
from dropgate.persistence.reconcile import RECONCILERS
from dropgate.persistence.reconcile.base import Scope
from dropgate.persistence.reconcile.generic import SpecReconciler as Reconciler
from dropgate.persistence.reconcile.runner import Stores, context, replay
from dropgate.persistence.watermark import log_lengths


class KeyspaceNotEmpty(Exception):
    def __init__(self, state_keys: int, backlog: int) -> None:
        self.state_keys = state_keys
        self.backlog = backlog
        super().__init__(
            f"Redis still holds {state_keys} state keys and {backlog} unpersisted events under this "
            "prefix; restore rebuilds a lost or flushed Redis. Use --force to replay the log and "
            "overwrite every entity from PostgreSQL.")


class RestoreReport(msgspec.Struct, kw_only=True):
    restored: dict[str, int]
    replayed_events: int = 0
    forced: bool = False
    elapsed_s: float = 0.0


def is_state(parts: tuple[str, ...]) -> bool:
    """Domain state, as opposed to bookkeeping (logs, leases) and rate-limit counters."""
    if parts[0] in INFRASTRUCTURE:
        return False
    return not (len(parts) > 2 and parts[0] == "t" and parts[2] == "rl")


async def restore(stores: Stores, *, force: bool = False, tenant_id: str | None = None,
                  progress: Progress | None = None,
                  reconcilers: Sequence[Reconciler] = RECONCILERS) -> RestoreReport:
    started = time.monotonic()
    rc = context(stores, progress)
    index = await KeyIndex.scan(rc.redis, rc.keys, tenant_id=tenant_id)
    state_keys = sum(1 for _, parts in index.domain_parts()
                     if is_state(parts) and (tenant_id is None or parts[0] in ("t", "tenant")))
    backlog = sum((await log_lengths(rc.redis, rc.keys)).values())
    # One tenant's restore (its keys lost) runs beside other tenants' traffic: only its own
    # keys must be absent. A whole restore refuses unpersisted events too.
    if (state_keys or (backlog and tenant_id is None)) and not force:
        raise KeyspaceNotEmpty(state_keys, backlog)
    replayed = await replay(rc) if backlog else 0  # PostgreSQL first holds every event
    scope = Scope(tenant_id=tenant_id)
    restored: dict[str, int] = {}
    for r in reconcilers:
        restored[f"{r.domain}/{'+'.join(r.kinds)}"] = await r.restore(rc, scope)
    # servers that kept running hold key answers cached under the lost versions
    await revocations_floor(rc.scripts, rc.keys)
    return RestoreReport(restored=restored, replayed_events=replayed, forced=force,
                         elapsed_s=round(time.monotonic() - started, 3))
