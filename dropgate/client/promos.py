"""``client.promos``: promo codes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import msgspec

from dropgate.client.base import Namespace, flag
from dropgate.models.lists import PromoPage, PromoUse, PromoUsePage
from dropgate.models.promos import (
    Bonus,
    Promo,
    PromoCreate,
    PromoPatch,
    PromoRedeem,
    PromoRedemption,
    PromoRollback,
)


class Promos(Namespace):
    """Promo codes (``/v1/promos``): a bonus per use, never past ``max_uses`` or a customer's limit.

    Amounts are decimal strings in the promo's currency (``"12.50"``), never floats.
    """

    async def create(
        self,
        code: str,
        *,
        bonus: Bonus,
        currency: str,
        max_uses: int | None = None,
        per_customer_limit: int = 1,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
        active: bool = True,
        idempotency_key: str | None = None,
    ) -> Promo:
        """Create a promo code (``POST /v1/promos``).

        ``bonus`` is ``FixedBonus(amount="5.00")`` or ``PercentBonus(percent="10")``
        (``dropgate.models.promos``); ``max_uses=None`` means unlimited. Raises
        ``ValidationError`` (an amount with more decimals than the currency has,
        ``ends_at`` not after ``starts_at``), ``AlreadyExists`` or ``PersistenceLagging``.
        """
        body = PromoCreate(code=code, bonus=bonus, currency=currency, max_uses=max_uses,
                           per_customer_limit=per_customer_limit, starts_at=starts_at,
                           ends_at=ends_at, active=active)
        return await self._call("POST", "/v1/promos", Promo, body=body,
                                idempotency_key=idempotency_key)

    async def get(self, code: str) -> Promo:
        """A promo code with ``times_used`` and ``total_bonus_issued`` (``GET /v1/promos/{code}``).

        Raises ``NotFound``.
        """
        return await self._call("GET", "/v1/promos/{code}", Promo, path_params={"code": code})

    async def update(
        self,
        code: str,
        *,
        active: bool | None = None,
        starts_at: datetime | msgspec.UnsetType | None = msgspec.UNSET,
        ends_at: datetime | msgspec.UnsetType | None = msgspec.UNSET,
        max_uses: int | msgspec.UnsetType | None = msgspec.UNSET,
        per_customer_limit: int | None = None,
    ) -> Promo:
        """Change a promo code (``PATCH /v1/promos/{code}``); arguments left out stay as they are.

        ``starts_at=None`` / ``ends_at=None`` remove that bound, ``max_uses=None``
        makes it unlimited. A deactivation is final the moment it answers: no
        redemption commits after it. Raises ``NotFound``, ``Conflict`` (``max_uses``
        below ``times_used``), ``ValidationError`` or ``PersistenceLagging``.
        """
        body = PromoPatch(active=active, starts_at=starts_at, ends_at=ends_at, max_uses=max_uses,
                          per_customer_limit=per_customer_limit)
        return await self._call("PATCH", "/v1/promos/{code}", Promo, path_params={"code": code},
                                body=body)

    async def redeem(
        self,
        code: str,
        *,
        customer_id: str,
        base_amount: str,
        idempotency_key: str | None = None,
    ) -> PromoRedemption:
        """Use ``code`` on a purchase of ``base_amount`` (``POST /v1/promos/{code}/redeem``).

        Answers the bonus, the total and the code's ``times_used``, with the
        ``use_id`` that ``rollback`` takes. Raises ``NotFound``, ``Inactive``,
        ``NotStarted``, ``Expired``, ``CustomerLimit``, ``Exhausted``, ``Conflict``,
        ``ValidationError``, ``RateLimited`` (``retry_after``) or ``PersistenceLagging``.
        The server does not replay redemptions by key: a retry after a lost answer
        meets the first use (``CustomerLimit`` with the default limit of 1).
        """
        return await self._call("POST", "/v1/promos/{code}/redeem", PromoRedemption,
                                path_params={"code": code},
                                body=PromoRedeem(customer_id=customer_id, base_amount=base_amount),
                                idempotency_key=idempotency_key)

    async def rollback(self, code: str, *, use_id: str) -> PromoRollback:
        """Undo one use (``DELETE /v1/promos/{code}/uses/{use_id}``).

        ``times_used`` and ``total_bonus_issued`` go back by exactly what the use
        added. Raises ``NotFound`` (also for a use already rolled back) or
        ``PersistenceLagging``.
        """
        return await self._call("DELETE", "/v1/promos/{code}/uses/{use_id}", PromoRollback,
                                path_params={"code": code, "use_id": use_id})

    def uses(
        self,
        code: str,
        *,
        customer_id: str | None = None,
        page_size: int | None = None,
        consistent: bool = False,
    ) -> AsyncIterator[PromoUse]:
        """A promo code's uses, newest first (``GET /v1/promos/{code}/uses``).

        Iterated, it fetches page after page (``page_size`` items each, default 100);
        ``consistent=True`` first waits until PostgreSQL has every change made before
        the call (read-your-writes).
        """
        async def fetch(query: dict[str, str | None]) -> PromoUsePage:
            return await self._call("GET", "/v1/promos/{code}/uses", PromoUsePage,
                                    path_params={"code": code}, query=query)

        return self._pages(fetch, {"customer_id": customer_id},
                           page_size=page_size, consistent=consistent)

    def list(
        self,
        *,
        active: bool | None = None,
        page_size: int | None = None,
        consistent: bool = False,
    ) -> AsyncIterator[Promo]:
        """Promo codes, newest first (``GET /v1/promos``).

        Iterated, it fetches page after page (``page_size`` items each, default 100);
        ``consistent=True`` first waits until PostgreSQL has every change made before
        the call (read-your-writes).
        """
        async def fetch(query: dict[str, str | None]) -> PromoPage:
            return await self._call("GET", "/v1/promos", PromoPage, query=query)

        return self._pages(fetch, {"active": flag(active)},
                           page_size=page_size, consistent=consistent)
