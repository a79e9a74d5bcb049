"""Actors: per-key asyncio tasks with bounded mailboxes (``runtime``), and the tenant
actor that orders a tenant's subscription-sensitive operations (``tenant``)."""

from dropgate.engine.actors.lease import ActorLease, Lease
from dropgate.engine.actors.mailbox import Mailbox
from dropgate.engine.actors.runtime import Actor, ActorStats, ActorSystem, LatencyHistogram
from dropgate.engine.actors.tenant import Item, TenantActor, TenantActors

__all__ = [
    "Actor",
    "ActorLease",
    "ActorStats",
    "ActorSystem",
    "Item",
    "LatencyHistogram",
    "Lease",
    "Mailbox",
    "TenantActor",
    "TenantActors",
]
