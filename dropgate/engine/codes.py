"""Campaign code pools: upload, reserve, assign, release and count, none scanning the pool.

Script <-> method: ``codes_upload-6.lua`` <-> ``Codes.upload_batch`` (driven by
``Codes.upload``), ``codes_reserve-8.lua`` <-> ``Codes.reserve`` and
``Codes.reserve_keyed`` (coalesced by the engine's ``Batcher``: concurrent reservations
of one pool share a script call, which also decides the keyed ones' records),
``codes_assign-7.lua`` <-> ``Codes.assign``, ``codes_release-5.lua`` <->
``Codes.release``, ``codes_count-3.lua`` <-> ``Codes.count``; ``codes_commit-5.lua`` /
``codes_discard-5.lua`` <-> ``Codes._commit`` / ``Codes._discard`` (staged uploads, all or
nothing), ``campaign_save-2.lua`` <-> ``Codes.save_campaign``.

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

from dropgate.engine.actors.batcher import Batcher
from dropgate.engine.codefile import CodeFileParser
from dropgate.engine.context import EngineContext
from dropgate.engine.idempotency import (
    Answered,
    KeyedAnswer,
    RecordKey,
    answered,
    record_times,
    records_arg,
)
from dropgate.errors import (
    DropgateError,
    InsufficientCodes,
    NotFound,
    UnknownType,
    ValidationError,
)
from dropgate.ids import check_id, check_type, random_hex, text, text_map
from dropgate.specs.coderecord import parse_record

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
    short: int | None = None  # refused all-or-nothing: the codes that were available


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


class CampaignState(msgspec.Struct, kw_only=True):
    name: str
    types: list[str]
    ttl_s: int | None
    low_watermark: int | None
    created_ms: int


class CodeState(msgspec.Struct, kw_only=True):
    code: str
    type: str
    status: str
    reserve_id: str | None
    reserved_at_ms: int | None
    assigned_at_ms: int | None
    assigned_to: str | None


class _Batch(msgspec.Struct):
    inserted: int
    updated: int
    skipped: int
    upload: int = 0  # the upload's number (0: a single-batch upload has none)


class _Updated(msgspec.Struct):
    updated: int


class _Discarded(msgspec.Struct):
    removed: int
    left: int


class _Ask(msgspec.Struct, frozen=True):
    """One reservation request waiting for its pool's next script call."""

    reserve_id: str
    count: int
    partial: bool = True
    record: RecordKey | None = None  # its record under an Idempotency-Key


class _Reserved(KeyedAnswer, kw_only=True):
    """One reservation's entry in a batch answer (``short``: refused all-or-nothing)."""

    reserve_id: str = ""
    codes: list[str] = []
    reserved_at_ms: int = 0
    expires_at_ms: int = 0
    short: int | None = None

    def reservation(self) -> Reservation:
        return Reservation(reserve_id=self.reserve_id, codes=self.codes, reserved_at_ms=self.reserved_at_ms,
                           expires_at_ms=self.expires_at_ms)


def _insufficient(available: int) -> InsufficientCodes:
    return InsufficientCodes(f"Only {available} codes are available; nothing was reserved.",
                             details={"available": available})


# tenant, campaign, type, ttl_ms (0: the campaign's): reservations coalesce per pool
_Pool = tuple[str, str, str, int]


def _ask_count(ask: _Ask) -> int:
    return ask.count


def _joined(codes: Sequence[bytes | str]) -> bytes:
    """A batch as one newline-joined argument (str codes, the parser's, joined in one call)."""
    if all(isinstance(c, str) for c in codes):
        return "\n".join(codes).encode()  # type: ignore[arg-type]
    return b"\n".join(c.encode() if isinstance(c, str) else c for c in codes)


def _distinct(codes: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(check_id(c, "codes") for c in codes))


class Codes:
    def __init__(self, ctx: EngineContext) -> None:
        self._ctx = ctx
        # one script call per batch of a pool's reservations, within MAX_RESERVE codes
        self.reservations: Batcher[_Pool, _Ask, _Reserved] = Batcher(
            self._reserve_batch, max_batch=MAX_COALESCED, max_queue=MAX_QUEUED,
            weight=_ask_count, max_weight=MAX_RESERVE, name="code_reservations",
            queued="reservations of this pool")
        self._idem_ttl_ms, self._idem_stale_ms = record_times(ctx)
        self._known: set[tuple[str, str, str]] = set()
        self._cleanups: set[asyncio.Future[None]] = set()  # discards outliving their request

    async def close(self) -> None:
        """Let queued reservations finish (briefly), then stop their drains."""
        await self.reservations.close()

    # -- upload --------------------------------------------------------------------------
    async def upload(
        self,
        tenant_id: str,
        campaign_id: str,
        type: str | None,
        chunks: AsyncIterable[bytes],
        *,
        batch_size: int | None = None,
        on_batch: Callable[[UploadResult], None] | None = None,
    ) -> UploadResult:
        """Parse a CSV code file as it streams in; all of it goes live, or none of it.

        ``type`` is the file's code type, or None when the file has a ``code,type``
        header (each row then names its type). A file that fits in one batch of one
        type is one script call (atomic by itself). A larger one is staged batch by
        batch under its upload number (recorded, not reservable) and made live by one
        ``codes_commit`` per type at the end; a refusal at any line, a conflict, or a
        failure discards what was staged (``codes_discard``), so nothing is live (#21).
        """
        check_id(campaign_id, "campaign_id")
        if type is not None:
            check_type(type)
        size = batch_size or self._ctx.settings.code_upload_batch_size
        if size < 1:
            raise ValueError("batch_size must be >= 1")
        parser = CodeFileParser()
        totals = UploadResult()
        batches: dict[str, dict[str, None]] = {}
        upload_id: str | None = None
        number: int | None = None  # the upload's number, from its first staged batch
        staged: set[str] = set()
        in_flight: asyncio.Task[None] | None = None

        async def stage(code_type: str, codes: list[str]) -> None:
            nonlocal number
            staged.add(code_type)
            result = await self.upload_batch(tenant_id, campaign_id, code_type, codes,
                                             upload_id=upload_id, final=False, number=number,
                                             staged=True)
            number = result.upload
            count(result)

        def count(result: _Batch) -> None:
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

        async def flush(code_type: str) -> None:
            """Stage a full batch; the next one is parsed while Redis runs this one."""
            nonlocal upload_id, in_flight
            await settle()
            if upload_id is None:
                upload_id = random_hex(16)
            codes = list(batches.pop(code_type))
            in_flight = asyncio.create_task(stage(code_type, codes))

        async def absorb(codes: list[str], types: list[str] | None) -> None:
            totals.lines += len(codes)
            if types is None:  # the bulk case: one type for the whole file
                if type is None:
                    raise ValidationError(
                        "The code type is missing: send ?type= or a `code,type` header.",
                        details={"field": "type"})
                batch = batches.setdefault(type, {})
                for code in codes:
                    if code in batch:
                        totals.skipped += 1
                        continue
                    batch[code] = None
                    if len(batch) >= size:
                        await flush(type)
                        batch = batches.setdefault(type, {})
                return
            for code, code_type in zip(codes, types, strict=True):
                batch = batches.setdefault(code_type, {})
                if code in batch:
                    totals.skipped += 1
                    continue
                batch[code] = None
                if len(batch) >= size:
                    await flush(code_type)

        try:
            async for chunk in chunks:
                codes, types, error = parser.feed(chunk)
                await absorb(codes, types)
                if error is not None:
                    raise error
            codes, types, error = parser.finish()
            await absorb(codes, types)
            if error is not None:
                raise error
            await settle()
            rest = {t: list(b) for t, b in batches.items() if b}
            if upload_id is None and len(rest) <= 1:
                for code_type, codes_ in rest.items():  # one batch of one type: atomic as is
                    count(await self.upload_batch(tenant_id, campaign_id, code_type, codes_))
                return totals
            if upload_id is None:
                upload_id = random_hex(16)
            for code_type, codes_ in rest.items():
                await stage(code_type, codes_)
            assert number is not None
            types = sorted(staged)
            while types:
                code_type = types[0]
                await self._commit(tenant_id, campaign_id, code_type, upload_id, number,
                                   last=len(types) == 1)
                staged.discard(types.pop(0))
        except BaseException as exc:
            if in_flight is not None:
                in_flight.cancel()
                await asyncio.gather(in_flight, return_exceptions=True)
            if staged and upload_id is not None and number is not None:
                discard = asyncio.ensure_future(
                    self._discard(tenant_id, campaign_id, sorted(staged), upload_id, number))
                if isinstance(exc, asyncio.CancelledError):  # a client gone: clean up anyway
                    self._cleanups.add(discard)
                    discard.add_done_callback(self._cleanups.discard)
                else:
                    await asyncio.gather(discard, return_exceptions=True)
            if isinstance(exc, DropgateError):
                exc.details.setdefault("applied", UploadResult().as_details())
            raise
        return totals

    async def _commit(self, tenant_id: str, campaign_id: str, code_type: str, upload_id: str,
                      number: int, *, last: bool = True) -> None:
        """One type of a staged upload goes live; the ``last`` drops its pending mark.
        CONFLICT when the upload is no longer pending (a restore dropped its staging)."""
        tk = self._ctx.keys.tenant(tenant_id)
        await self._ctx.scripts.call(
            "codes_commit",
            [tk.log, tk.codes_meta(campaign_id), tk.codes_available(campaign_id, code_type),
             tk.codes_staged(campaign_id, upload_id, code_type), tk.codes_upload(campaign_id, upload_id)],
            [tenant_id, campaign_id, code_type, number, "1" if last else "0"])

    async def _discard(self, tenant_id: str, campaign_id: str, types: list[str], upload_id: str,
                       number: int) -> None:
        """Remove a refused upload's staged codes, 10,000 per script call."""
        tk = self._ctx.keys.tenant(tenant_id)
        for i, code_type in enumerate(types):
            # one codes.discarded, with the last type: its applier deletes the rows of
            # every type the upload did not commit, then its pending row
            last = "1" if i == len(types) - 1 else "0"
            while True:
                result = await self._ctx.scripts.call(
                    "codes_discard",
                    [tk.log, tk.codes_meta(campaign_id), tk.codes_records(campaign_id),
                     tk.codes_staged(campaign_id, upload_id, code_type),
                     tk.codes_upload(campaign_id, upload_id)],
                    [tenant_id, campaign_id, code_type, number, last, 10_000, last], type=_Discarded)
                if result.left == 0:
                    break

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
        staged: bool = False,
    ) -> _Batch:
        """One script call: distinct, validated codes of one batch.

        An upload of several batches passes its ``upload_id`` with each and, from the
        second on, the ``number`` its first batch answered (the script marks the codes
        it inserts with it, to recognise repeats in later batches). ``staged``: the new
        codes wait in the upload's staged set for ``codes_commit``.
        """
        tk = self._ctx.keys.tenant(tenant_id)
        seen = tk.codes_upload(campaign_id, upload_id or "single")
        return await self._ctx.scripts.call(
            "codes_upload",
            [tk.log, tk.codes_meta(campaign_id), tk.codes_records(campaign_id),
             tk.codes_available(campaign_id, type), seen,
             tk.codes_staged(campaign_id, upload_id or "single", type)],
            [self._ctx.backlog_bound, tenant_id, campaign_id, type,
             "" if upload_id is None else SEEN_TTL_MS, "1" if final else "0",
             _joined(codes),
             "" if upload_id is None else ("new" if number is None else number),
             "1" if staged and upload_id is not None else "0"],
            type=_Batch,
        )

    # -- reserve / assign / release ---------------------------------------------------
    async def reserve(
        self, tenant_id: str, campaign_id: str, type: str, count: int, *, ttl_ms: int | None = None,
        partial: bool = True,
    ) -> Reservation:
        """Up to ``count`` codes under a fresh reserve_id (fewer or none when the pool runs low;
        ``partial=False``: all of them or 409 ``INSUFFICIENT_CODES``). 404 for an unknown
        campaign, 400 ``UNKNOWN_TYPE`` for a type it does not have. Without ``ttl_ms`` the
        campaign's ``reservation_ttl_s`` applies, else the setting.

        Concurrent calls for one pool are coalesced: while one script call is in
        flight, new requests queue, and the next call serves all of them at once (each
        under its own reserve_id). No added latency, far fewer round trips in a crowd.
        """
        answer = await self._reserve(tenant_id, campaign_id, type, count, ttl_ms, partial, None)
        assert answer.err is None  # a request's own error answers only a keyed one (its record)
        if answer.short is not None:
            raise _insufficient(answer.short)
        return answer.reservation()

    async def reserve_keyed(
        self, tenant_id: str, campaign_id: str, type: str, count: int, *, ttl_ms: int | None = None,
        partial: bool = True, record: RecordKey,
    ) -> Answered[Reservation]:
        """``reserve`` under an Idempotency-Key: a repeat gets the first answer (the same
        reserve_id and codes), filed in the same script call as the codes taken."""
        answer = await self._reserve(tenant_id, campaign_id, type, count, ttl_ms, partial, record)
        if answer.short is not None and answer.err is None and not answer.status:
            return Answered(None, _insufficient(answer.short), answer.replayed == 1)
        return answered(answer, answer.reservation())

    async def _reserve(self, tenant_id: str, campaign_id: str, type: str, count: int, ttl_ms: int | None,
                       partial: bool, record: RecordKey | None) -> _Reserved:
        if not 1 <= count <= MAX_RESERVE:
            raise ValidationError(f"count must be 1-{MAX_RESERVE}.", details={"field": "count"})
        ttl = ttl_ms if ttl_ms is not None else 0
        if ttl_ms is not None and ttl < 1:
            raise ValidationError("The reservation TTL must be positive.", details={"field": "ttl_s"})
        check_id(campaign_id, "campaign_id")
        check_type(type)
        await self.require_campaign(tenant_id, campaign_id, type)
        pool = (check_id(tenant_id, "tenant_id"), campaign_id, type, ttl)
        # a full queue: 503 TENANT_BUSY (QueueFull), before anything of the request ran
        waiter = self.reservations.enqueue(pool, _Ask(random_hex(16), count, partial, record))
        return await waiter  # a cancelled caller's codes expire with the TTL

    async def _reserve_batch(self, pool: _Pool, asks: list[_Ask]) -> list[_Reserved]:
        """One script call serving a batch of the pool's reservations, each under its id."""
        tenant_id, campaign_id, type, ttl = pool
        tk = self._ctx.keys.tenant(tenant_id)
        return await self._ctx.scripts.call(
            "codes_reserve",
            [tk.log, tk.codes_meta(campaign_id), tk.codes_records(campaign_id),
             tk.codes_available(campaign_id, type), tk.codes_reserved(campaign_id, type),
             tk.codes_def(campaign_id), tk.offer_idempotency(), tk.offer_idempotency_expiry()],
            [self._ctx.backlog_bound, tenant_id, campaign_id, type,
             "\n".join(a.reserve_id for a in asks), "\n".join(str(a.count) for a in asks),
             ttl or "", "\n".join("1" if a.partial else "0" for a in asks),
             self._ctx.settings.code_reservation_ttl * 1000, self._idem_ttl_ms, self._idem_stale_ms,
             records_arg([a.record for a in asks])],
            type=list[_Reserved],
        )

    async def assign(
        self, tenant_id: str, campaign_id: str, codes: Sequence[str], *,
        reserve_id: str | None = None, type: str | None = None, assigned_to: str | None = None,
    ) -> Changed:
        """Assign reserved (or expired-reserved) codes; with ``reserve_id``, only that reservation's.
        ``assigned_to``: the user id stored with each code assigned."""
        if assigned_to is not None:
            check_id(assigned_to, "assigned_to")
        return await self._change("codes_assign", tenant_id, campaign_id, codes,
                                  reserve_id=reserve_id, type=type, assigned_to=assigned_to)

    async def release(
        self, tenant_id: str, campaign_id: str, codes: Sequence[str], *,
        reserve_id: str | None = None, type: str | None = None,
    ) -> Changed:
        """Return reserved codes to the pool; assigned codes are never touched."""
        return await self._change("codes_release", tenant_id, campaign_id, codes,
                                  reserve_id=reserve_id, type=type)

    async def _change(
        self, script: str, tenant_id: str, campaign_id: str, codes: Sequence[str], *,
        reserve_id: str | None, type: str | None, assigned_to: str | None = None,
    ) -> Changed:
        if not codes:
            raise ValidationError("codes must name at least one code.", details={"field": "codes"})
        distinct = _distinct(codes)
        if len(distinct) > MAX_CODES_PER_CALL:
            raise ValidationError(f"At most {MAX_CODES_PER_CALL} codes per call.",
                                  details={"field": "codes"})
        if reserve_id is not None:
            check_id(reserve_id, "reserve_id")
        await self.require_campaign(tenant_id, campaign_id, type)
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
            extra: list[str] = []
            if script == "codes_assign":
                keys += [tk.codes_assigned(campaign_id, code_type), tk.codes_assigned_to(campaign_id)]
                extra = [assigned_to or ""]
            result = await self._ctx.scripts.call(
                script, keys,
                [self._ctx.backlog_bound, tenant_id, campaign_id, code_type, reserve_id or "",
                 *extra, *group],
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
        tk = self._ctx.keys.tenant(tenant_id)
        meta, definition = tk.codes_meta(campaign_id), tk.codes_def(campaign_id)
        if type is None:
            if not await self._ctx.redis.exists(meta, definition):
                raise NotFound("No such campaign.", details={"campaign_id": campaign_id})
        elif not (await self._ctx.redis.hexists(meta, f"t:{type}")
                  or await self._ctx.redis.hexists(definition, f"t:{type}")):
            types = await self.types(tenant_id, campaign_id)
            if not types and not await self._ctx.redis.exists(meta, definition):
                raise NotFound("No such campaign.", details={"campaign_id": campaign_id})
            raise UnknownType(f"Campaign {campaign_id} has no code type {type!r}.",
                              details={"types": types})
        if len(self._known) < 100_000:
            self._known.add(key)

    async def save_campaign(
        self, tenant_id: str, campaign_id: str, *, create: bool, name: str | None = None,
        types: Sequence[str] = (), ttl_s: int | msgspec.UnsetType | None = msgspec.UNSET,
        low_watermark: int | msgspec.UnsetType | None = msgspec.UNSET,
    ) -> CampaignState:
        """Create a campaign (409 ``ALREADY_EXISTS``) or change one (404 when unknown)."""
        check_id(campaign_id, "campaign_id")
        for t in types:
            check_type(t, "types")

        def opt(v: int | msgspec.UnsetType | None) -> str:
            return "" if v is msgspec.UNSET else "-" if v is None else str(v)

        tk = self._ctx.keys.tenant(tenant_id)
        return await self._ctx.scripts.call(
            "campaign_save", [tk.log, tk.codes_def(campaign_id)],
            [self._ctx.backlog_bound, tenant_id, campaign_id, "create" if create else "update",
             "\0" if name is None else name, "\n".join(types), opt(ttl_s), opt(low_watermark)],
            type=CampaignState)

    async def campaign(self, tenant_id: str, campaign_id: str) -> CampaignState:
        """A campaign's definition, live from Redis (404 when unknown)."""
        tk = self._ctx.keys.tenant(tenant_id)
        meta = text_map(await self._ctx.redis.hgetall(tk.codes_meta(campaign_id)))
        definition = text_map(await self._ctx.redis.hgetall(tk.codes_def(campaign_id)))
        if not meta and not definition:
            raise NotFound("No such campaign.", details={"campaign_id": campaign_id})
        return CampaignState(
            name=definition.get("name", ""),
            types=sorted({k[2:] for k in (*meta, *definition) if k.startswith("t:")}),
            ttl_s=int(definition["ttl_s"]) if "ttl_s" in definition else None,
            low_watermark=int(definition["low_wm"]) if "low_wm" in definition else None,
            created_ms=int(definition.get("created_ms") or meta.get("created_ms") or 0))

    async def code(self, tenant_id: str, campaign_id: str, code: str) -> CodeState:
        """One code, live from Redis (404 when unknown, or staged by an upload still running)."""
        tk = self._ctx.keys.tenant(tenant_id)
        raw = await self._ctx.redis.hget(tk.codes_records(campaign_id), code)
        if raw is None:
            raise NotFound("No such code in this campaign.", details={"code": code})
        rec = parse_record(text(raw))
        # an uploaded code nobody touched yet is live once it is in the available set;
        # until its upload commits it is staged: not a code of the campaign yet
        staged = rec.upload is not None and rec.status == "available" and rec.reserve_id is None
        if staged and not await self._ctx.redis.sismember(tk.codes_available(campaign_id, rec.type), code):
            raise NotFound("No such code in this campaign.", details={"code": code})
        to = await self._ctx.redis.hget(tk.codes_assigned_to(campaign_id), code)
        seconds, micros = await self._ctx.redis.time()
        now_ms = seconds * 1000 + micros // 1000
        status = rec.status
        if status == "reserved" and rec.expires_ms is not None and rec.expires_ms <= now_ms:
            status = "available"
        return CodeState(code=code, type=rec.type, status=status, reserve_id=rec.reserve_id,
                         reserved_at_ms=rec.reserved_ms, assigned_at_ms=rec.assigned_ms,
                         assigned_to=text(to) if to is not None else None)

    # -- reads -----------------------------------------------------------------------
    async def types(self, tenant_id: str, campaign_id: str) -> list[str]:
        """The campaign's code types: those its pool has, and those its definition names."""
        tk = self._ctx.keys.tenant(tenant_id)
        fields = [*await self._ctx.redis.hkeys(tk.codes_meta(campaign_id)),
                  *await self._ctx.redis.hkeys(tk.codes_def(campaign_id))]
        return sorted({f[2:] for f in map(text, fields) if f.startswith("t:")})

    async def count(self, tenant_id: str, campaign_id: str, type: str | None = None) -> Counts:
        """Counts by status at one instant of Redis time (per type); expired reservations
        count as available. Without ``type``: summed over the campaign's types."""
        tk = self._ctx.keys.tenant(tenant_id)
        check_id(campaign_id, "campaign_id")
        await self.require_campaign(tenant_id, campaign_id, type)
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
