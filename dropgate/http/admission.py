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

A request parked on a coalesced batch (a purchase's hold, a code reservation: the
``Batcher`` of ``engine/actors/batcher.py``) gives its slot back as it parks: it
steps no more until the batch answers, and it finishes without waiting in line again.
The bound is on the requests being worked on, which is what a quiet tenant waits
behind; holding the slot through the wait split a crowd of one tenant into batches a
quarter of ``tenant_admission`` each, and cost the offers benchmark a fifth of its
throughput (BENCHMARKS.md). Parked requests are bounded by their own queues
(``tenant_concurrency`` for purchases, the batcher's ``max_queue``).

While another tenant has arrived in this process within the last ``CONTENDED_WINDOW_S``,
a tenant's bound is ``contended`` (``tenant_admission_contended``, smaller), not
``per_tenant``. Why: what a quiet tenant's request waits for is every step of every
request in the process, and a flood admitted 64 at a time still multiplied the quiet
tenant's p50 by 8-25x (BENCHMARKS.md, "Fairness between tenants"). A tenant alone keeps
the larger bound, and with it its batches (the purchase batch is 64): the bound shrinks
only while someone else needs the loop. A shrunk bound lets admitted requests finish,
admitting none until the tenant is under it; when it grows back, ``leave`` admits as
many as fit.

With ``--workers N`` the processes of one server share a ``Board`` (a page of shared
memory, one slot per process): each publishes who arrived last and when, so a tenant is
contended in every process as soon as another tenant arrived in any of them, and each
process applies its share of the contended bound (``contended / N``, rounded up), so
the server as a whole admits about ``contended`` of a flooding tenant's requests at
once, as one process does. Why: judged per process, two workers admitted 8 of a flood
each, twice what one process does, on cores the quiet tenant, Redis and PostgreSQL
share; and a quiet tenant whose connections all reached one worker left the flood the
large bound in the other (BENCHMARKS.md, "Fairness between tenants": the quiet
tenant's p99 rose 5.55x with two workers, 2.71x with one).

The common case is free of awaits: a tenant under its bound takes a slot with a dict
lookup, a clock read and an increment (with a board: a look at the other processes'
slots, read at most every ``Board.REFRESH_S``, and a write of this process's own when
the arriving tenant changed or ``REFRESH_S`` passed).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import math
import mmap
import os
import struct
import tempfile
import time
from collections.abc import Callable
from typing import IO

from dropgate.errors import TenantBusy


class _Line:
    """A tenant's slots in use and its waiters. Made per request whenever the tenant's
    last request has left (a crowd parks on its batches and gives its slots back), so a
    slotted class, not a dataclass with a factory default."""

    __slots__ = ("active", "waiting")

    def __init__(self, active: int = 0) -> None:
        self.active = active
        self.waiting: collections.deque[asyncio.Future[None]] = collections.deque()


CONTENDED_WINDOW_S = 1.0  # another tenant arrived this recently: the smaller bound applies


class Board:
    """The arrivals of a server's processes, one slot each, in memory they all map.

    A slot is (the last tenant to arrive, as a 64-bit hash; when; when a tenant other
    than it last arrived), on ``time.monotonic``'s clock, which is the machine's
    (CLOCK_MONOTONIC), not the process's. Each process writes only its own slot; a read
    racing a write may see half of it, which costs one request a bound that is off for
    at most ``REFRESH_S`` (no lock: the hot path takes none).
    """

    SLOT = struct.Struct("<Qdd")
    REFRESH_S = 0.01  # the other slots are read, and this one written unchanged, at most this often

    def __init__(self, buffer: mmap.mmap | bytearray, index: int, fd: int | None = None) -> None:
        self.count = len(buffer) // self.SLOT.size
        if not 0 <= index < self.count:
            raise ValueError(f"slot {index} of a board of {self.count}")
        self.index = index
        self.fd = fd  # the first process's: passed on to its workers
        self._buffer = buffer
        self._others = [i for i in range(self.count) if i != index]
        self._seen: list[tuple[int, float, float]] = []
        self._read_at = self._written_at = -1e18
        self._written_key = 0
        self._keys: dict[str, int] = {}
        self._file: IO[bytes] | None = None  # the first process's: keeps ``fd`` open

    @classmethod
    def create(cls, count: int) -> Board:
        """The first process's board, for ``count`` processes; ``fd`` is what its workers attach."""
        size = max(1, count) * cls.SLOT.size
        if hasattr(os, "memfd_create"):  # Linux: memory only, named in /proc/<pid>/maps
            fd = os.memfd_create("dropgate-admission", os.MFD_CLOEXEC)
            os.ftruncate(fd, size)
            return cls(mmap.mmap(fd, 0), 0, fd)
        file = tempfile.TemporaryFile(prefix="dropgate-admission-")  # unlinked: gone with the server
        file.truncate(size)
        board = cls(mmap.mmap(file.fileno(), 0), 0, file.fileno())
        board._file = file
        return board

    @classmethod
    def attach(cls, fd: int, index: int) -> Board:
        """A worker's view of the first process's board (``fd`` inherited; closed here)."""
        try:
            return cls(mmap.mmap(fd, 0), index)
        finally:
            os.close(fd)

    def key(self, tenant_id: str) -> int:
        """The tenant's 64-bit hash (the same in every process, unlike ``hash``)."""
        key = self._keys.get(tenant_id)
        if key is None:
            if len(self._keys) > 10_000:
                self._keys.clear()
            key = int.from_bytes(hashlib.blake2b(tenant_id.encode(), digest_size=8).digest(), "little") or 1
            self._keys[tenant_id] = key
        return key

    def write(self, tenant_id: str, latest_at: float, previous_at: float, now: float) -> None:
        """This process's slot: ``tenant_id`` arrived last, at ``latest_at``; another
        tenant before it at ``previous_at``. Skipped while the tenant is unchanged and the
        last write is under ``REFRESH_S`` old."""
        key = self.key(tenant_id)
        if key == self._written_key and now - self._written_at < self.REFRESH_S:
            return
        self.SLOT.pack_into(self._buffer, self.index * self.SLOT.size, key, latest_at, previous_at)
        self._written_key, self._written_at = key, now

    def other_at(self, tenant_id: str, now: float) -> float:
        """When a tenant other than ``tenant_id`` last arrived in another process."""
        if now - self._read_at >= self.REFRESH_S:
            self._seen = [self.SLOT.unpack_from(self._buffer, i * self.SLOT.size) for i in self._others]
            self._read_at = now
        at, own = -1e18, 0
        for key, latest_at, previous_at in self._seen:
            if now - latest_at >= CONTENDED_WINDOW_S:
                continue  # nobody arrived there within the window
            own = own or self.key(tenant_id)
            at = max(at, previous_at if key == own else latest_at)
        return at


class Admission:
    """Slots per tenant in this process, handed over in arrival order."""

    def __init__(self, per_tenant: int, max_waiting: int, contended: int | None = None,
                 clock: Callable[[], float] = time.monotonic, board: Board | None = None) -> None:
        self._per_tenant = per_tenant
        if contended is not None and board is not None:  # this process's share of the server's
            contended = math.ceil(contended / board.count)
        self._contended = per_tenant if contended is None else max(1, min(contended, per_tenant))
        self._board = board
        self._max_waiting = max_waiting
        self._lines: dict[str, _Line] = {}
        self._clock = clock
        # the last tenant to arrive and when; the last *other* tenant before it and when:
        # enough to tell any tenant whether someone else arrived within the window
        self._latest, self._latest_at = "", -1e18
        self._previous_at = -1e18

    def _arrive(self, tenant_id: str) -> int:
        """Note the arrival; the tenant's bound now."""
        now = self._clock()
        if tenant_id != self._latest:
            self._previous_at = self._latest_at
            self._latest = tenant_id
        self._latest_at = now
        other_at = self._previous_at
        if self._board is not None:
            self._board.write(tenant_id, now, self._previous_at, now)
            other_at = max(other_at, self._board.other_at(tenant_id, now))
        return self._contended if now - other_at < CONTENDED_WINDOW_S else self._per_tenant

    def bound(self, tenant_id: str) -> int:
        """The tenant's bound now, without noting an arrival."""
        now = self._clock()
        other_at = self._previous_at if tenant_id == self._latest else self._latest_at
        if self._board is not None:
            other_at = max(other_at, self._board.other_at(tenant_id, now))
        return self._contended if now - other_at < CONTENDED_WINDOW_S else self._per_tenant

    def contended(self, tenant_id: str) -> bool:
        """Another tenant arrived within the window: the tenant is under the smaller bound."""
        return self._contended < self._per_tenant and self.bound(tenant_id) == self._contended

    def try_enter(self, tenant_id: str) -> bool:
        """Take a slot at once when one is free (no await)."""
        bound = self._arrive(tenant_id)
        line = self._lines.get(tenant_id)
        if line is None:
            self._lines[tenant_id] = _Line(active=1)
            return True
        if line.active < bound and not line.waiting:
            line.active += 1
            return True
        return False

    async def enter(self, tenant_id: str) -> None:
        """Wait for a slot of ``tenant_id`` (after ``try_enter`` said no)."""
        line = self._lines.setdefault(tenant_id, _Line())
        if line.active < self.bound(tenant_id) and not line.waiting:
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
        """Give the slot back: to the next in line while the tenant is under its bound
        (none while a shrunk bound is still exceeded, several when it grew back)."""
        line = self._lines[tenant_id]
        line.active -= 1
        if line.waiting:
            bound = self.bound(tenant_id)
            while line.waiting and line.active < bound:
                turn = line.waiting.popleft()
                if not turn.done():
                    line.active += 1
                    turn.set_result(None)
        self._forget(tenant_id, line)

    def _forget(self, tenant_id: str, line: _Line) -> None:
        if line.active <= 0 and not line.waiting and self._lines.get(tenant_id) is line:
            del self._lines[tenant_id]


class Slot:
    """One request's slot: ``release`` gives it back once, whichever comes first, the
    request parking on a batch or its end."""

    __slots__ = ("_admission", "_held", "_tenant_id")

    def __init__(self, admission: Admission, tenant_id: str) -> None:
        self._admission = admission
        self._tenant_id = tenant_id
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._admission.leave(self._tenant_id)

    def park(self) -> None:
        """The request parks on a batch: its slot goes back early only while its tenant is
        alone. Under contention it keeps it: a parked crowd resumes all at once when its
        batch answers, and the quiet tenant's steps would queue behind every one of them
        (measured: with early release the contended bound no longer helped the quiet
        tenant, BENCHMARKS.md "Fairness between tenants")."""
        if self._admission.contended(self._tenant_id):
            return
        self.release()
