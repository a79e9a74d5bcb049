"""Per-tenant admission: one tenant's flood cannot fill a process with its own work.

Every request of a tenant route takes one of its tenant's ``tenant_admission`` slots
in this process before its body is read and its handler runs; the rest wait in their
tenant's line (FIFO), bounded by the larger of ``actor_mailbox_size`` and
``tenant_concurrency`` (past it: 503 ``TENANT_BUSY`` with ``Retry-After``).

Why: the process's CPU is shared, and a request's cost is paid in event-loop steps.
Without a bound, a tenant with 400 callers in flight has 400 requests stepping through
the loop at once, and each step of another tenant's request waits behind theirs (the
issue's probe: another tenant's p99 from 6 ms to 158-211 ms). With it, at most
``tenant_admission`` of them step at a time; the others wait on a future, which costs
nothing until their turn, so the quiet tenant's steps queue behind a few of the
flood's, not all of them (BENCHMARKS.md, "Tenant actors").

The common case is free of awaits: a tenant under its bound takes a slot with a dict
lookup and an increment.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field

from dropgate.errors import TenantBusy


@dataclass
class _Line:
    active: int = 0
    waiting: collections.deque[asyncio.Future[None]] = field(default_factory=collections.deque)


class Admission:
    """Slots per tenant in this process, handed over in arrival order."""

    def __init__(self, per_tenant: int, max_waiting: int) -> None:
        self._per_tenant = per_tenant
        self._max_waiting = max_waiting
        self._lines: dict[str, _Line] = {}

    def try_enter(self, tenant_id: str) -> bool:
        """Take a slot at once when one is free (no await)."""
        line = self._lines.get(tenant_id)
        if line is None:
            self._lines[tenant_id] = _Line(active=1)
            return True
        if line.active < self._per_tenant and not line.waiting:
            line.active += 1
            return True
        return False

    async def enter(self, tenant_id: str) -> None:
        """Wait for a slot of ``tenant_id`` (after ``try_enter`` said no)."""
        line = self._lines.setdefault(tenant_id, _Line())
        if line.active < self._per_tenant and not line.waiting:
            line.active += 1
            return
        if len(line.waiting) >= self._max_waiting:
            raise TenantBusy("Too many requests of this tenant queued in this process; retry shortly.",
                             details={"retry_after_s": 1, "scope": "tenant_admission"})
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line.waiting.append(turn)
        try:
            await turn  # the slot is handed over by leave(): active already counts it
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.leave(tenant_id)  # handed over, then cancelled: pass it on
            else:
                if turn in line.waiting:
                    line.waiting.remove(turn)
                self._forget(tenant_id, line)
            raise

    def leave(self, tenant_id: str) -> None:
        """Give the slot back: to the next in line, if any."""
        line = self._lines[tenant_id]
        while line.waiting:
            turn = line.waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        line.active -= 1
        self._forget(tenant_id, line)

    def _forget(self, tenant_id: str, line: _Line) -> None:
        if line.active <= 0 and not line.waiting and self._lines.get(tenant_id) is line:
            del self._lines[tenant_id]
