"""Tenants and API keys (admin)."""

from __future__ import annotations

from typing import Literal

import msgspec

from dropgate.models.common import Id, Struct, Text, Timestamp
from dropgate.models.offers import RedirectUrl

SubscriptionStatus = Literal["active", "trialing", "past_due", "suspended", "canceled"]


class TenantCreate(Struct, kw_only=True):
    tenant_id: Id
    name: Text = ""
    subscription_status: SubscriptionStatus = "active"
    trial_end: Timestamp | None = None


class SubscriptionUpdate(Struct, kw_only=True):
    subscription_status: SubscriptionStatus
    trial_end: Timestamp | None = None


class Tenant(msgspec.Struct, kw_only=True):
    tenant_id: str
    name: str
    subscription_status: SubscriptionStatus
    trial_end: Timestamp | None
    balance: dict[str, str]


class TenantCheckoutUpdate(Struct, kw_only=True):
    """Where the tenant's checkouts return the buyer when the offer names no URL (null:
    dropgate's own pages)."""

    success_url: RedirectUrl | None = None
    cancel_url: RedirectUrl | None = None


class TenantCheckout(msgspec.Struct, kw_only=True):
    tenant_id: str
    success_url: str | None
    cancel_url: str | None


class KeyCreate(Struct, kw_only=True):
    role: Literal["admin", "service"]
    tenant_id: Id | None = None


class KeyCreated(msgspec.Struct, kw_only=True):
    key_id: str
    key: str
    role: str
    tenant_id: str | None
