"""Tenants and API keys (admin)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from dropgate.models.common import Id, Struct, Text, Timestamp
from dropgate.models.offers import RedirectUrl
from dropgate.models.scopes import Scope

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


# who holds a key: printable, no surrounding blanks (compared case-insensitively); no control
# character anywhere (a NUL inside one never reached PostgreSQL: make fuzz)
KeyName = Annotated[str, msgspec.Meta(min_length=1, max_length=64,
                                      pattern=r"^[^\x00-\x1f\x7f\s]([^\x00-\x1f\x7f]*[^\x00-\x1f\x7f\s])?$",
                                      description="1-64 printable characters, compared case-insensitively")]


class SubscriptionChange(msgspec.Struct, kw_only=True):
    subscription_status: SubscriptionStatus
    trial_end: Timestamp | None
    changed_at: Timestamp
    changed_by: str | None  # the key's id; null: the bootstrap key or the CLI


class SubscriptionHistory(msgspec.Struct, kw_only=True):
    tenant_id: str
    data: list[SubscriptionChange]  # oldest first


class KeyCreate(Struct, kw_only=True):
    role: Literal["admin", "service"]
    tenant_id: Id | None = None
    name: KeyName | None = None  # required for service keys
    scopes: Annotated[list[Scope], msgspec.Meta(max_length=32)] | None = None  # None: every scope


class KeyCreated(msgspec.Struct, kw_only=True):
    key_id: str
    key: str
    role: str
    tenant_id: str | None
    name: str | None = None
    scopes: list[str] | None = None  # None: every scope
    created_by: str | None = None


class KeyRevoked(msgspec.Struct, kw_only=True):
    key_id: str
    revoked: list[str]  # the key, and with cascade every key minted from it
