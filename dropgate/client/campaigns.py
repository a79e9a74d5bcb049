"""``client.campaigns``: campaigns as things (v1.1), their codes one by one, and exports."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator

import msgspec

from dropgate.client.base import Namespace
from dropgate.models.codes import Campaign, CampaignCreate, CampaignPatch, CodeInfo
from dropgate.models.lists import CampaignPage, CodePage


class Campaigns(Namespace):
    """Campaigns (``/v1/campaigns``): their code types, reservation TTL, low watermark."""

    async def create(
        self,
        campaign_id: str,
        *,
        types: builtins.list[str],
        name: str = "",
        reservation_ttl_s: int | None = None,
        low_watermark: int | None = None,
        idempotency_key: str | None = None,
    ) -> Campaign:
        """Create a campaign (``POST /v1/campaigns``). Raises ``AlreadyExists``."""
        body = CampaignCreate(campaign_id=campaign_id, name=name, types=types,
                              reservation_ttl_s=reservation_ttl_s, low_watermark=low_watermark)
        return await self._call("POST", "/v1/campaigns", Campaign, body=body,
                                idempotency_key=idempotency_key)

    async def get(self, campaign_id: str) -> Campaign:
        """A campaign with live counts per type (``GET /v1/campaigns/{campaign_id}``)."""
        return await self._call("GET", "/v1/campaigns/{campaign_id}", Campaign,
                                path_params={"campaign_id": campaign_id})

    async def update(
        self,
        campaign_id: str,
        *,
        name: str | None = None,
        types: builtins.list[str] | None = None,
        reservation_ttl_s: int | msgspec.UnsetType | None = msgspec.UNSET,
        low_watermark: int | msgspec.UnsetType | None = msgspec.UNSET,
    ) -> Campaign:
        """Change a campaign (``PATCH /v1/campaigns/{campaign_id}``); ``types`` are added.

        ``None`` for the TTL or the watermark clears it. Raises ``NotFound``.
        """
        body = CampaignPatch(name=name, types=types, reservation_ttl_s=reservation_ttl_s,
                             low_watermark=low_watermark)
        return await self._call("PATCH", "/v1/campaigns/{campaign_id}", Campaign,
                                path_params={"campaign_id": campaign_id}, body=body)

    async def code(self, campaign_id: str, code: str) -> CodeInfo:
        """One code, live (``GET /v1/campaigns/{campaign_id}/codes/{code}``). Raises ``NotFound``."""
        return await self._call("GET", "/v1/campaigns/{campaign_id}/codes/{code}", CodeInfo,
                                path_params={"campaign_id": campaign_id, "code": code})

    async def export(self, campaign_id: str, *, status: str | None = None,
                     type: str | None = None) -> bytes:
        """The campaign's codes as CSV (``GET /v1/campaigns/{campaign_id}/codes/export``).

        The header is ``code,type,status,reserve_id,reserved_at,assigned_at,assigned_to``.
        The server streams any size; this method returns the whole body.
        """
        return await self._call("GET", "/v1/campaigns/{campaign_id}/codes/export", bytes,
                                path_params={"campaign_id": campaign_id},
                                query={"status": status, "type": type})

    def codes(
        self,
        campaign_id: str,
        *,
        type: str | None = None,
        status: str | None = None,
        page_size: int | None = None,
        consistent: bool = False,
    ) -> AsyncIterator[CodeInfo]:
        """A campaign's codes in code order (``GET /v1/campaigns/{campaign_id}/codes``).

        Iterated, it fetches page after page (``page_size`` items each, default 100);
        ``consistent=True`` first waits until PostgreSQL has every change made before
        the call (read-your-writes).
        """
        async def fetch(query: dict[str, str | None]) -> CodePage:
            return await self._call("GET", "/v1/campaigns/{campaign_id}/codes", CodePage,
                                    path_params={"campaign_id": campaign_id}, query=query)

        return self._pages(fetch, {"type": type, "status": status},
                           page_size=page_size, consistent=consistent)

    def list(self, *, page_size: int | None = None, consistent: bool = False) -> AsyncIterator[Campaign]:
        """Campaigns, newest first (``GET /v1/campaigns``); paged as ``codes``."""
        async def fetch(query: dict[str, str | None]) -> CampaignPage:
            return await self._call("GET", "/v1/campaigns", CampaignPage, query=query)

        return self._pages(fetch, {}, page_size=page_size, consistent=consistent)
