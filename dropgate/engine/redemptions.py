"""The coalescing of one code's redemptions, shared by invite and promo codes.

Concurrent redemptions of one (tenant, code) share a script call (the engine's
``Batcher``): under a crowd one hot code costs one Redis round trip per batch, while a
lone request still leaves at once. The script still decides, refuses and logs each
request on its own; a request past the code's queue bound is shed with ``QueueFull``
(503 ``TENANT_BUSY``) before any of it ran.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

from dropgate.engine.actors.batcher import Batcher, Flush

MAX_COALESCED = 64  # redemptions of one code served by one script call
MAX_QUEUED = 10_000  # redemptions waiting for one code in one process
IN_FLIGHT = 2  # script calls per code under way at once (Redis and Python both busy)

Req = TypeVar("Req")
Res = TypeVar("Res")
CodeKey = tuple[str, str]  # (tenant id, code)


class Redemptions(Batcher[CodeKey, Req, Res]):
    """One queue per code; ``flush`` decides a batch of its redemptions in one script call."""

    def __init__(self, flush: Flush[CodeKey, Req, Res], *, name: str) -> None:
        super().__init__(flush, max_batch=MAX_COALESCED, max_queue=MAX_QUEUED,
                         max_in_flight=IN_FLIGHT, name=name, queued="redemptions of this code")

    def submit(self, tenant_id: str, code: str, item: Req) -> asyncio.Future[Res]:
        """Queue one redemption with the code's next batch; the future gets its own answer
        or refusal. Raises ``QueueFull`` (503 ``TENANT_BUSY``) when the code's queue is full."""
        return self.enqueue((tenant_id, code), item)
