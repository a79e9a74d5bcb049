"""The concurrency toolkit: actors order (per-key asyncio tasks with bounded mailboxes,
``runtime``; the tenant actor that orders and fences a tenant's subscription-sensitive
operations, ``tenant``), the ``Batcher`` coalesces (``batcher``)."""

from dropgate.engine.actors.batcher import Batcher, QueueFull
from dropgate.engine.actors.lease import ActorLease, Lease
from dropgate.engine.actors.mailbox import Mailbox
from dropgate.engine.actors.runtime import Actor, ActorStats, ActorSystem, LatencyHistogram
from dropgate.engine.actors.tenant import TenantActor, TenantActorSystem

__all__ = [
    "Actor",
    "ActorLease",
    "ActorStats",
    "ActorSystem",
    "Batcher",
    "LatencyHistogram",
    "Lease",
    "Mailbox",
    "QueueFull",
    "TenantActor",
    "TenantActorSystem",
]
