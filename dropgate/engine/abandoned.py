"""Abandoned staged uploads: found and discarded after the server that ran them died.

A multi-batch upload stages its codes (``codes_upload-6.lua``) and marks itself pending
in the campaign meta (``p:<n>`` = its upload id) until ``codes_commit`` or
``codes_discard`` ends it. A server killed mid-upload runs neither: its staged and seen
sets expire with their TTL (``SEEN_TTL_MS``, refreshed by every batch), but the records
it inserted (``type|a#n``), the pending mark and, in PostgreSQL, its rows and pending
row stay. An upload is *abandoned* when it is pending and none of its sets exist any
more; ``discard_abandoned`` then removes its records with ``codes_abandon-6.lua``
(which appends ``codes.discarded``, so the persister deletes its rows) and drops the
mark. Reconcile reports such uploads and ``--repair`` runs this (docs/reconcile.md).
Nothing scans the keyspace: the caller names the campaign.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from typing import Any

from dropgate.engine.keys import TenantKeys
from dropgate.engine.redisclient import scan_pages
from dropgate.engine.scripts import Scripts
from dropgate.ids import text
from dropgate.specs.coderecord import parse_record

HSCAN_COUNT = 5_000
PER_CALL = 5_000


def pending_uploads(meta: dict[str, str]) -> dict[int, str]:
    """The meta's pending marks: upload number -> upload id."""
    return {int(k[2:]): v for k, v in meta.items() if k.startswith("p:") and k[2:].isascii() and k[2:].isdigit()}


async def marked_records(redis: Any, tk: TenantKeys, campaign_id: str,
                         numbers: set[int]) -> dict[tuple[int, str], list[str]]:
    """(upload number, type) -> the available codes those uploads inserted (one HSCAN)."""
    out: dict[tuple[int, str], list[str]] = defaultdict(list)
    if not numbers:
        return out
    async for page in scan_pages(redis.hscan, tk.codes_records(campaign_id), count=HSCAN_COUNT):
        for code, packed in page.items():
            rec = parse_record(text(packed))
            if rec.status == "available" and rec.upload in numbers:
                out[(rec.upload, rec.type)].append(text(code))
    return out


async def abandoned(redis: Any, tk: TenantKeys, campaign_id: str, pending: dict[int, str],
                    types: dict[int, set[str]]) -> list[int]:
    """The pending uploads none of whose sets exist: seen set, staged set per type."""
    out = []
    for n, upload_id in sorted(pending.items()):
        keys = [tk.codes_upload(campaign_id, upload_id)]
        keys += [tk.codes_staged(campaign_id, upload_id, ty) for ty in sorted(types.get(n, ()))]
        if await redis.exists(*keys) == 0:
            out.append(n)
    return out


async def live_counts(redis: Any, tk: TenantKeys, campaign_id: str,
                      numbers: set[int]) -> dict[tuple[int, str], int]:
    """(upload number, type) -> how many of those uploads' records are live (in the
    available set: a type that committed before its server died)."""
    out: dict[tuple[int, str], int] = {}
    for (n, ty), codes in (await marked_records(redis, tk, campaign_id, numbers)).items():
        key = tk.codes_available(campaign_id, ty)
        out[(n, ty)] = sum([sum(await redis.smismember(key, codes[i:i + PER_CALL]))
                            for i in range(0, len(codes), PER_CALL)])
    return out


async def find_abandoned(redis: Any, tk: TenantKeys, campaign_id: str
                         ) -> tuple[dict[str, str], dict[int, str], dict[tuple[int, str], list[str]]]:
    """(meta, abandoned uploads: number -> upload id, their records by (number, type)).

    An upload with a staged set of a type the campaign has (or its seen set) is alive,
    found without reading the records; only the others cost one HSCAN of the campaign."""
    meta = {text(k): text(v) for k, v in (await redis.hgetall(tk.codes_meta(campaign_id))).items()}
    known = sorted(k[2:] for k in meta if k.startswith("t:"))
    pending = pending_uploads(meta)
    for n, upload_id in list(pending.items()):
        keys = [tk.codes_upload(campaign_id, upload_id)]
        keys += [tk.codes_staged(campaign_id, upload_id, ty) for ty in known]
        if await redis.exists(*keys):
            del pending[n]
    if not pending:
        return meta, {}, {}
    records = await marked_records(redis, tk, campaign_id, set(pending))
    types: dict[int, set[str]] = defaultdict(set)
    for n, ty in records:
        types[n].add(ty)
    gone = await abandoned(redis, tk, campaign_id, pending, types)
    return meta, {n: pending[n] for n in gone}, {k: v for k, v in records.items() if k[0] in gone}


async def discard_abandoned(redis: Any, scripts: Scripts, tk: TenantKeys, tenant_id: str,
                            campaign_id: str, *, only: Collection[int] | None = None) -> dict[int, int]:
    """Discard the campaign's abandoned uploads (``only`` those numbers, when given):
    upload number -> records removed.

    The script re-checks each call (mark, staged and seen set gone), so an upload that
    staged again meanwhile is left alone."""
    meta, gone, records = await find_abandoned(redis, tk, campaign_id)
    types: dict[int, set[str]] = defaultdict(set)
    for n, ty in records:
        types[n].add(ty)
    done: dict[int, int] = {}
    for n, upload_id in sorted(gone.items()):
        if only is not None and n not in only:
            continue
        calls = [(ty, records[(n, ty)][i:i + PER_CALL])
                 for ty in sorted(types[n]) for i in range(0, len(records[(n, ty)]), PER_CALL)]
        if not calls:  # nothing inserted: only the mark (and PostgreSQL's pending row) go
            known = sorted(k[2:] for k in meta if k.startswith("t:"))
            calls = [(known[0] if known else "none", [])]
        removed = 0
        for i, (ty, codes) in enumerate(calls):
            result = await scripts.call(
                "codes_abandon",
                [tk.log, tk.codes_meta(campaign_id), tk.codes_records(campaign_id),
                 tk.codes_available(campaign_id, ty), tk.codes_staged(campaign_id, upload_id, ty),
                 tk.codes_upload(campaign_id, upload_id)],
                [tenant_id, campaign_id, ty, n, upload_id, "1" if i == len(calls) - 1 else "0", *codes])
            if not result["abandoned"]:
                break
            removed += int(result["removed"])
        else:
            done[n] = removed
    return done
