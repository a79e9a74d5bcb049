"""Campaign code pools: upload, reserve, assign, release and count, none scanning the pool.

Script <-> method: ``codes_upload-5.lua`` <-> ``Codes.upload_batch`` (driven by
``Codes.upload``), ``codes_reserve-5.lua`` <-> ``Codes.reserve`` (coalesced by the
engine's ``Batcher``: concurrent reservations of one pool share a script call),
``codes_assign-6.lua`` <-> ``Codes.assign``, ``codes_release-5.lua`` <->
``Codes.release``, ``codes_count-3.lua`` <-> ``Codes.count``.

Hot state per campaign: one hash of code records (type, status, reservation) and a
meta hash (version, types); per campaign and type: an available set, a reserved
zset scored by expiry and an assigned set (keys.py). A code belongs to one type of
its campaign for good, so assign and release without a type read the codes' types
(a plain read: a type never changes) and run one script call per type.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable, Iterable, Sequence

import msgspec

from dropgate.engine.actors.batcher import Batcher, QueueFull
from dropgate.engine.codefile import CodeFileParser
from dropgate.engine.context import EngineContext
from dropgate.errors import DropgateError, NotFound, Unavailable, UnknownType, ValidationError
from dropgate.ids import check_id, check_type, random_hex, text

STATUSES = ("available", "reserved", "assigned")
MAX_RESERVE = 10_000
MAX_CODES_PER_CALL = 10_000
MAX_COALESCED = 256  # reservations served by one script call
MAX_QUEUED = 10_000  # reservations waiting for one pool in one process
SEEN_TTL_MS = 3_600_000  # an abandoned upload's de-duplication set lives an hour


class UploadResult(msgspec.Struct, kw_only=True):
    """``lines`` = non-blank lines (the API's ``in``)."""

    lines: int = 0
    inserted: int = 0
    updated: int = 0
    skipped: int = 0
    batches: int = 0

    def as_details(self) -> dict[str, int]:
        return {"in": self.lines, "inserted": self.inserted, "updated": self.updated,
                "skipped": self.skipped, "batches": self.batches}


class Reservation(msgspec.Struct, kw_only=True):
    reserve_id: str
    codes: list[str]
    reserved_at_ms: int
    expires_at_ms: int


class Changed(msgspec.Struct, kw_only=True):
    """Assign / release: ``requested`` codes (the API's ``in``), ``updated`` changed."""

    requested: int
    updated: int


class Counts(msgspec.Struct, kw_only=True):
    available: int = 0
    reserved: int = 0
    assigned: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(available=self.available + other.available,
                      reserved=self.reserved + other.reserved,
                      assigned=self.assigned + other.assigned)


class _Batch(msgspec.Struct):
    inserted: int
    updated: int
    skipped: int
    upload: int = 0  # the upload's number (0: a single-batch upload has none)


class _Updated(msgspec.Struct):
    updated: int


class _Ask(msgspec.Struct, frozen=True):
    """One reservation request waiting for its pool's next script call."""

    reserve_id: str
    count: int


_Pool = tuple[str, str, str, int]  # tenant, campaign, type, ttl_ms: reservations coalesce per pool


def _ask_count(ask: _Ask) -> int:
    return ask.count


def _distinct(codes: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(check_id(c, "codes") for c in codes))


class Codes:
    def __init__(self, ctx: EngineContext) -> None:
        self._ctx = ctx
        # one script call per batch of a pool's reservations, within MAX_RESERVE codes
        self._reservations: Batcher[_Pool, _Ask, Reservation] = Batcher(
            self._reserve_batch, max_batch=MAX_COALESCED, max_queue=MAX_QUEUED,
            weight=_ask_count, max_weight=MAX_RESERVE)
        self._known: set[tuple[str, str, str]] = set()

    async def close(self) -> None:
        """Let queued reservations finish (briefly), then stop their drains."""
        await self._reservations.close()

    # -- upload --------------------------------------------------------------------------
    async def upload(
        self,
        tenant_id: str,
        campaign_id: str,
        type: str,
        chunks: AsyncIterable[bytes],
        *,
        batch_size: int | None = None,
        on_batch: Callable[[UploadResult], None] | None = None,
    ) -> UploadResult:
        """Parse a code file as it streams in and apply it in batches (one script call each).

        A malformed line raises 400 naming the line before anything of its batch is
        applied; the batches before it stay applied (``details.applied`` says what).
        """
        check_id(campaign_id, "campaign_id")
        check_type(type)
        size = batch_size or self._ctx.settings.code_upload_batch_size
        if size < 1:
            raise ValueError("batch_size must be >= 1")
        parser = CodeFileParser()
        totals = UploadResult()
        batch: dict[bytes, None] = {}
        upload_id: str | None = None
        in_flight: asyncio.Task[None] | None = None

        number: int | None = None  # the upload's number, from its first batch

        async def apply(codes: list[bytes], *, final: bool) -> None:
            nonlocal number
            result = await self.upload_batch(tenant_id, campaign_id, type, codes,
                                             upload_id=upload_id, final=final, number=number)
            if upload_id is not None:
                number = result.upload
            totals.inserted += result.inserted
            totals.updated += result.updated
            totals.skipped += result.skipped
            totals.batches += 1
            if on_batch is not None:
                on_batch(totals)

        async def settle() -> None:
            nonlocal in_flight
            if in_flight is not None:
                task, in_flight = in_flight, None
                await task

        async def flush(*, final: bool) -> None:
            """Apply the batch; the next one is parsed while Redis runs this one."""
            nonlocal upload_id, in_flight, batch
            await settle()
            if not final and upload_id is None:
                upload_id = random_hex(16)  # more than one batch: de-duplicate across them
            codes = list(batch)
            batch = {}
            if final:
                if codes or upload_id is not None:
                    await apply(codes, final=True)
            else:
                in_flight = asyncio.create_task(apply(codes, final=False))

        def take(codes: list[bytes]) -> list[bytes]:
            """Add codes to the batch; answer the ones past a full batch."""
            for i, code in enumerate(codes):
                if code in batch:
                    totals.skipped += 1
                    continue
                batch[code] = None
                if len(batch) >= size:
                    return codes[i + 1:]
            return []

        async def absorb(codes: list[bytes]) -> None:
            totals.lines += len(codes)
            while True:
                codes = take(codes)
                if len(batch) < size:
                    return
                await flush(final=False)

        try:
            async for chunk in chunks:
                codes, error = parser.feed(chunk)
                await absorb(codes)
                if error is not None:
                    raise error
            codes, error = parser.finish()
            await absorb(codes)
            if error is not None:
                raise error
            await flush(final=True)
        except DropgateError as exc:
            if in_flight is not None:
                await asyncio.gather(in_flight, return_exceptions=True)
                in_flight = None
            exc.details.setdefault("applied", totals.as_details())
            raise
        finally:
            if in_flight is not None:
                in_flight.cancel()
                await asyncio.gather(in_flight, return_exceptions=True)
        return totals

    async def upload_batch(
        self,
        tenant_id: str,
        campaign_id: str,
        type: str,
        codes: Sequence[bytes | str],
        *,
        upload_id: str | None = None,
        final: bool = True,
        number: int | None = None,
    ) -> _Batch:
        """One script call: distinct, validated codes of one batch.

        An upload of several batches passes its ``upload_id`` with each and, from the
        second on, the ``number`` its first batch answered (the script marks the codes
        it inserts with it, to recognise repeats in later batches).
        """
        tk = self._ctx.keys.tenant(tenant_id)
        seen = tk.codes_upload(campaign_id, upload_id or "single")
        return await self._ctx.scripts.call(
            "codes_upload",
            [tk.log, tk.codes_meta(campaign_id), tk.codes_records(campaign_id),
             tk.codes_available(campaign_id, type), seen],
            [self._ctx.backlog_bound, tenant_id, campaign_id, type,
             "" if upload_id is None else SEEN_TTL_MS, "1" if final else "0",
             b"\n".join(c.encode() if isinstance(c, str) else c for c in codes),
             "" if upload_id is None else ("new" if number is None else number)],
            type=_Batch,
        )

    # -- reserve / assign / release ---------------------------------------------------
    async def reserve(
        self, tenant_id: str, campaign_id: str, type: str, count: int, *, ttl_ms: int | None = None
    ) -> Reservation:
        """Up to ``count`` codes under a fresh reserve_id (fewer or none when the pool runs low).

        Concurrent calls for one pool are coalesced: while one script call is in
        flight, new requests queue, and the next call serves all of them at once (each
        under its own reserve_id). No added latency, far fewer round trips in a crowd.
        """
        if not 1 <= count <= MAX_RESERVE:
            raise ValidationError(f"count must be 1-{MAX_RESERVE}.", details={"field": "count"})
        ttl = ttl_ms if ttl_ms is not None else self._ctx.settings.code_reservation_ttl * 1000
        if ttl < 1:
            raise ValidationError("The reservation TTL must be positive.", details={"field": "ttl_s"})
        check_id(campaign_id, "campaign_id")
        check_type(type)
        pool = (check_id(tenant_id, "tenant_id"), campaign_id, type, ttl)
        try:
            waiter = self._reservations.enqueue(pool, _Ask(random_hex(16), count))
        except QueueFull:
            raise Unavailable("Too many reservations are queued for this pool; retry shortly.",
                              details={"campaign_id": campaign_id, "type": type}) from None
        return await waiter  # a cancelled caller's codes expire with the TTL

    async def _reserve_batch(self, pool: _Pool, asks: list[_Ask]) -> list[Reservation]:
        """One script call serving a batch of the pool's reservations, each under its id."""
        tenant_id, campaign_id, type, ttl = pool
        tk = self._ctx.keys.tenant(tenant_id)
        return await self._ctx.scripts.call(
            "codes_reserve",
            [tk.log, tk.codes_meta(campaign_id), tk.codes_records(campaign_id),
             tk.codes_available(campaign_id, type), tk.codes_reserved(campaign_id, type)],
            [self._ctx.backlog_bound, tenant_id, campaign_id, type,
             "\n".join(a.reserve_id for a in asks), "\n".join(str(a.count) for a in asks), ttl],
            type=list[Reservation],
        )

    async def assign(
        self, tenant_id: str, campaign_id: str, codes: Sequence[str], *,
        reserve_id: str | None = None, type: str | None = None,
    ) -> Changed:
        """Assign reserved (or expired-reserved) codes; with ``reserve_id``, only that reservation's."""
        return await self._change("codes_assign", tenant_id, campaign_id, codes,
                                  reserve_id=reserve_id, type=type)

    async def release(
        self, tenant_id: str, campaign_id: str, codes: Sequence[str], *,
        reserve_id: str | None = None, type: str | None = None,
    ) -> Changed:
        """Return reserved codes to the pool; assigned codes are never touched."""
        return await self._change("codes_release", tenant_id, campaign_id, codes,
                                  reserve_id=reserve_id, type=type)

    async def _change(
        self, script: str, tenant_id: str, campaign_id: str, codes: Sequence[str], *,
        reserve_id: str | None, type: str | None,
    ) -> Changed:
        distinct = _distinct(codes)
        if len(distinct) > MAX_CODES_PER_CALL:
            raise ValidationError(f"At most {MAX_CODES_PER_CALL} codes per call.",
                                  details={"field": "codes"})
        if reserve_id is not None:
            check_id(reserve_id, "reserve_id")
        tk = self._ctx.keys.tenant(tenant_id)
        by_type: dict[str, list[str]] = {}
        if type is not None:
            by_type[check_type(type)] = distinct
        elif distinct:
            # A code's type never changes once uploaded: reading it first is safe.
            records = await self._ctx.redis.hmget(tk.codes_records(campaign_id), distinct)
            for code, record in zip(distinct, records, strict=True):
                if record is not None:
                    by_type.setdefault(text(record).split("|", 1)[0], []).append(code)
        updated = 0
        for code_type, group in by_type.items():
            keys = [tk.log, tk.codes_meta(campaign_id), tk.codes_records(campaign_id),
                    tk.codes_available(campaign_id, code_type),
                    tk.codes_reserved(campaign_id, code_type)]
            if script == "codes_assign":
                keys.append(tk.codes_assigned(campaign_id, code_type))
            result = await self._ctx.scripts.call(
                script, keys,
                [self._ctx.backlog_bound, tenant_id, campaign_id, code_type, reserve_id or "",
                 *group],
                type=_Updated,
            )
            updated += result.updated
        return Changed(requested=len(codes), updated=updated)

    # -- campaigns -------------------------------------------------------------------
    async def require_campaign(self, tenant_id: str, campaign_id: str,
                               type: str | None = None) -> None:
        """404 for a campaign nobody created or uploaded to, 400 ``UNKNOWN_TYPE`` for a type
        it does not have. Campaigns and their types are never removed, so a positive
        answer is cached for the process's life and the check costs a round trip once."""
        key = (tenant_id, campaign_id, type or "")
        if key in self._known:
            return
        meta = self._ctx.keys.tenant(tenant_id).codes_meta(campaign_id)
        if type is None:
            if not await self._ctx.redis.exists(meta):
                raise NotFound("No such campaign.", details={"campaign_id": campaign_id})
        elif not await self._ctx.redis.hexists(meta, f"t:{type}"):
            types = await self.types(tenant_id, campaign_id)
            if not types and not await self._ctx.redis.exists(meta):
                raise NotFound("No such campaign.", details={"campaign_id": campaign_id})
            raise UnknownType(f"Campaign {campaign_id} has no code type {type!r}.",
                              details={"types": types})
        if len(self._known) < 100_000:
            self._known.add(key)

    # -- reads -----------------------------------------------------------------------
    async def types(self, tenant_id: str, campaign_id: str) -> list[str]:
        fields = await self._ctx.redis.hkeys(self._ctx.keys.tenant(tenant_id).codes_meta(campaign_id))
        return sorted(f[2:] for f in map(text, fields) if f.startswith("t:"))

    async def count(self, tenant_id: str, campaign_id: str, type: str | None = None) -> Counts:
        """Counts by status at one instant of Redis time (per type); expired reservations
        count as available. Without ``type``: summed over the campaign's types."""
        tk = self._ctx.keys.tenant(tenant_id)
        check_id(campaign_id, "campaign_id")
        types = [check_type(type)] if type is not None else await self.types(tenant_id, campaign_id)
        total = Counts()
        for code_type in types:
            total = total + await self._ctx.scripts.call(
                "codes_count",
                [tk.codes_available(campaign_id, code_type), tk.codes_reserved(campaign_id, code_type),
                 tk.codes_assigned(campaign_id, code_type)],
                [],
                type=Counts,
            )
        return total
