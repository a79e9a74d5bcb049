"""``client.invites``: invite codes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import msgspec

from dropgate.client.base import Namespace, flag
from dropgate.models.invites import (
    Invite,
    InviteCreate,
    InviteEligibility,
    InvitePatch,
    InviteRedeem,
    InviteRedemption,
)
from dropgate.models.lists import InvitePage, InviteUse, InviteUsePage


class Invites(Namespace):
    """Invite codes (``/v1/invites``): each user uses a code at most once, never past ``max_uses``."""

    async def create(
        self,
        code: str | None = None,
        *,
        max_uses: int,
        expires_at: datetime | None = None,
        active: bool = True,
        idempotency_key: str | None = None,
    ) -> Invite:
        """Create an invite code (``POST /v1/invites``); a code is generated when none is given.

        ``max_uses`` 0 means unlimited. Raises ``AlreadyExists`` when the code is taken.
        """
        body = InviteCreate(code=code, max_uses=max_uses, expires_at=expires_at, active=active)
        return await self._call("POST", "/v1/invites", Invite, body=body,
                                idempotency_key=idempotency_key)

    async def get(self, code: str) -> Invite:
        """An invite code with its ``used_count`` (``GET /v1/invites/{code}``). Raises ``NotFound``."""
        return await self._call("GET", "/v1/invites/{code}", Invite, path_params={"code": code})

    async def update(
        self,
        code: str,
        *,
        active: bool | None = None,
        expires_at: datetime | msgspec.UnsetType | None = msgspec.UNSET,
        max_uses: int | None = None,
    ) -> Invite:
        """Change an invite code (``PATCH /v1/invites/{code}``); arguments left out stay as they are.

        ``expires_at=None`` removes the expiry. Raises ``NotFound``, or ``Conflict``
        when ``max_uses`` would go below ``used_count``.
        """
        body = InvitePatch(active=active, expires_at=expires_at, max_uses=max_uses)
        return await self._call("PATCH", "/v1/invites/{code}", Invite, path_params={"code": code},
                                body=body)

    async def redeem(self, code: str, *, user_id: str, idempotency_key: str | None = None) -> InviteRedemption:
        """Use ``code`` for ``user_id`` (``POST /v1/invites/{code}/redeem``).

        Raises ``AlreadyUsed`` (this user used it before), ``Exhausted``, ``Expired``,
        ``Inactive`` or ``NotFound``. Sent with an ``Idempotency-Key`` kept across
        retries (pass your own to span processes).
        """
        return await self._call("POST", "/v1/invites/{code}/redeem", InviteRedemption,
                                path_params={"code": code}, body=InviteRedeem(user_id=user_id),
                                idempotency_key=idempotency_key)

    async def eligibility(self, code: str, *, user_id: str) -> InviteEligibility:
        """Could ``user_id`` redeem ``code`` now? (``GET /v1/invites/{code}/eligibility``).

        Changes nothing; ``reason`` is the refusal a redeem would get (``ALREADY_USED``,
        ``EXHAUSTED``, ``EXPIRED``, ``INACTIVE``), None when eligible. Raises ``NotFound``.
        """
        return await self._call("GET", "/v1/invites/{code}/eligibility", InviteEligibility,
                                path_params={"code": code}, query={"user_id": user_id})

    def uses(
        self,
        code: str,
        *,
        page_size: int | None = None,
        consistent: bool = False,
    ) -> AsyncIterator[InviteUse]:
        """Who used ``code`` and when, newest first (``GET /v1/invites/{code}/uses``).

        Iterated, it fetches page after page (``page_size`` items each, default 100);
        ``consistent=True`` first waits until PostgreSQL has every change made before
        the call (read-your-writes).
        """
        async def fetch(query: dict[str, str | None]) -> InviteUsePage:
            return await self._call("GET", "/v1/invites/{code}/uses", InviteUsePage,
                                    path_params={"code": code}, query=query)

        return self._pages(fetch, {},
                           page_size=page_size, consistent=consistent)

    def list(
        self,
        *,
        active: bool | None = None,
        page_size: int | None = None,
        consistent: bool = False,
    ) -> AsyncIterator[Invite]:
        """Invite codes, newest first (``GET /v1/invites``).

        Iterated, it fetches page after page (``page_size`` items each, default 100);
        ``consistent=True`` first waits until PostgreSQL has every change made before
        the call (read-your-writes).
        """
        async def fetch(query: dict[str, str | None]) -> InvitePage:
            return await self._call("GET", "/v1/invites", InvitePage, query=query)

        return self._pages(fetch, {"active": flag(active)},
                           page_size=page_size, consistent=consistent)
