"""Every list of the API as a ``ListSpec``: its rows, index order, filters and item.

Each spec's ``scope`` + ``keys`` match one index of migration 0013 (0012 for the
webhook lists, or a primary key), so a page is an index range scan; ``tests/http/test_lists_explain.py`` checks
every spec's query plan for that (no sequential scan, no sort, no OFFSET).
"""

from __future__ import annotations

import typing

import asyncpg

from dropgate.models.codes import Campaign, CodeInfo
from dropgate.models.invites import Invite
from dropgate.models.ledger import Booking, Order, OrderItem, Withdrawal
from dropgate.models.lists import InviteUse, KeyItem, PaymentItem, PromoUse, TenantItem
from dropgate.models.offers import Offer, OfferInventory, Purchase, PurchaseStatus
from dropgate.models.promos import FixedBonus, PercentBonus, Promo
from dropgate.models.webhooks import WebhookDelivery, WebhookEndpoint
from dropgate.money import format_amount, format_percent
from dropgate.persistence.lists import Filter, KeyKind, ListSpec

_TS: KeyKind = "ts"
_ACTIVE = Filter("bool", "active", description="true or false")
_SUBSCRIPTION = ("active", "trialing", "past_due", "suspended", "canceled")
_PURCHASE: tuple[str, ...] = typing.get_args(PurchaseStatus)  # every status a purchase can have


def _tenant(r: asyncpg.Record) -> TenantItem:
    return TenantItem(tenant_id=r["tenant_id"], name=r["name"],
                      subscription_status=r["subscription_status"], trial_end=r["trial_end"],
                      created_at=r["created_at"])


def _key(r: asyncpg.Record) -> KeyItem:
    return KeyItem(key_id=r["key_id"], role=r["role"], tenant_id=r["tenant_id"], name=r["name"],
                   created_at=r["created_at"], revoked_at=r["revoked_at"])


def _invite(r: asyncpg.Record) -> Invite:
    return Invite(code=r["code"], max_uses=r["max_uses"], used_count=r["used_count"],
                  active=r["active"], expires_at=r["expires_at"], created_at=r["created_at"],
                  last_used_at=r["last_used_at"])


def _invite_use(r: asyncpg.Record) -> InviteUse:
    return InviteUse(user_id=r["user_id"], used_at=r["used_at"])


def _promo(r: asyncpg.Record) -> Promo:
    cur = r["currency"]
    bonus: FixedBonus | PercentBonus = (
        FixedBonus(amount=format_amount(r["bonus_amount"], cur)) if r["bonus_kind"] == "fixed"
        else PercentBonus(percent=format_percent(r["bonus_percent"])))
    return Promo(code=r["code"], bonus=bonus, currency=cur, max_uses=r["max_uses"],
                 per_customer_limit=r["per_customer_limit"], starts_at=r["starts_at"],
                 ends_at=r["ends_at"], active=r["active"], times_used=r["times_used"],
                 total_bonus_issued=format_amount(r["total_bonus_issued"], cur),
                 created_at=r["created_at"])


def _promo_use(r: asyncpg.Record) -> PromoUse:
    cur = r["currency"]
    return PromoUse(use_id=r["use_id"], customer_id=r["customer_id"], currency=cur,
                    base_amount=format_amount(r["base_amount"], cur),
                    bonus_amount=format_amount(r["bonus_amount"], cur),
                    total_amount=format_amount(r["base_amount"] + r["bonus_amount"], cur),
                    used_at=r["used_at"], rolled_back=r["rolled_back_at"] is not None)


def _offer(r: asyncpg.Record) -> Offer:
    total, reserved, sold = r["inventory_total"], r["reserved"], r["sold"]
    return Offer(offer_id=r["offer_id"], event_id=r["event_id"], name=r["name"],
                 price=format_amount(r["price_minor"], r["currency"]), currency=r["currency"],
                 max_per_order=r["max_per_order"], active=r["active"], archived=r["archived"],
                 expires_at=r["expires_at"], created_at=r["created_at"], max_per_user=r["max_per_user"],
                 success_url=r["success_url"], cancel_url=r["cancel_url"],
                 inventory=OfferInventory(total=total, available=max(0, total - reserved - sold),
                                          reserved=reserved, sold=sold))


def _purchase(r: asyncpg.Record) -> Purchase:
    return Purchase(purchase_id=r["purchase_id"], offer_id=r["offer_id"], user_id=r["user_id"],
                    quantity=r["quantity"], status=r["status"],
                    amount=format_amount(r["amount_minor"], r["currency"]), currency=r["currency"],
                    expires_at=r["hold_expires_at"], created_at=r["created_at"],
                    refunded_amount=format_amount(r["refunded_minor"], r["currency"]))


def _payment(r: asyncpg.Record) -> PaymentItem:
    return PaymentItem(payment_id=r["payment_id"],
                       amount=format_amount(r["amount_minor"], r["currency"]),
                       currency=r["currency"], reference=r["reference"], created_at=r["created_at"])


def _withdrawal(r: asyncpg.Record) -> Withdrawal:
    return Withdrawal(withdrawal_id=r["withdrawal_id"], status=r["status"],
                      amount=format_amount(r["amount_minor"], r["currency"]), currency=r["currency"],
                      initiated_by=r["initiated_by"], created_at=r["created_at"],
                      approved_by=r["approved_by"], completed_at=r["completed_at"],
                      initiated_by_key=r["initiator_key_id"], approved_by_key=r["approver_key_id"],
                      rejected_at=r["rejected_at"], reason=r["reject_reason"])


def _order(r: asyncpg.Record) -> Order:
    import msgspec

    items = r["items"]
    raw = items.encode() if isinstance(items, str) else msgspec.json.encode(items)
    return Order(order_id=r["order_id"], items=msgspec.json.decode(raw, type=list[OrderItem]),
                 total=format_amount(r["total_minor"], r["currency"]), currency=r["currency"],
                 status=r["status"], created_at=r["created_at"], updated_at=r["updated_at"])


def _booking(r: asyncpg.Record) -> Booking:
    return Booking(booking_id=r["booking_id"], resource_id=r["resource_id"],
                   slot_start=r["slot_start"], slot_end=r["slot_end"], user_id=r["user_id"],
                   capacity=r["capacity"], booked=r["booked"], created_at=r["created_at"],
                   status=r["status"], canceled_at=r["canceled_at"])


def _campaign(r: asyncpg.Record) -> Campaign:
    return Campaign(campaign_id=r["campaign_id"], name=r["name"], types=list(r["types"]),
                    reservation_ttl_s=r["reservation_ttl_s"], low_watermark=r["low_watermark"],
                    created_at=r["created_at"])


def _code(r: asyncpg.Record) -> CodeInfo:
    return CodeInfo(code=r["code"], type=r["type"], status=r["shown_status"],
                    reserve_id=r["reserve_id"], reserved_at=r["reserved_at"],
                    assigned_at=r["assigned_at"], assigned_to=r["assigned_to"])


def _webhook_endpoint(r: asyncpg.Record) -> WebhookEndpoint:
    return WebhookEndpoint(
        endpoint_id=r["endpoint_id"], url=r["url"], events=list(r["events"]),
        status="disabled" if r["disabled_at"] else "enabled", created_at=r["created_at"],
        description=r["description"], disabled_at=r["disabled_at"])


def _webhook_delivery(r: asyncpg.Record) -> WebhookDelivery:
    return WebhookDelivery(
        delivery_id=r["delivery_id"], event_id=r["event_id"], type=r["event_type"],
        status=r["status"], attempts=r["attempts"], created_at=r["created_at"],
        next_attempt_at=r["next_attempt_at"] if r["status"] == "pending" else None,
        last_attempt_at=r["last_attempt_at"], response_status=r["response_status"],
        error=r["last_error"], delivered_at=r["delivered_at"])


# A reservation past its expiry is available, as everywhere else.
CODE_STATUS_SQL = ("CASE WHEN status = 'reserved' AND expires_at <= now() THEN 'available' "
                   "ELSE status END")
_CODE_STATUS = {
    "available": "(status = 'available' OR (status = 'reserved' AND expires_at <= now()))",
    "reserved": "(status = 'reserved' AND expires_at > now())",
    "assigned": "status = 'assigned'",
}

TENANTS = ListSpec(
    "tenants", "tenants", "*", (("created_at", _TS), ("tenant_id", "text")), (), _tenant,
    {"subscription_status": Filter("enum", "subscription_status", _SUBSCRIPTION)})
KEYS = ListSpec(
    "keys", "api_keys", "key_id, role, tenant_id, name, created_at, revoked_at",
    (("created_at", _TS), ("key_id", "text")), (), _key,
    {"tenant_id": Filter("id", "tenant_id"),
     "role": Filter("enum", "role", ("admin", "service"))})
# a service key's own tenant: the same list scoped by tenant_id
KEYS_OF_TENANT = ListSpec(
    "keys", "api_keys", KEYS.columns, KEYS.keys, ("tenant_id",), _key,
    {"role": KEYS.filters["role"]})
INVITES = ListSpec(
    "invites", "invite_codes AS i",
    "i.*, (SELECT max(u.used_at) FROM invite_code_uses u WHERE u.tenant_id = i.tenant_id "
    "AND u.code = i.code) AS last_used_at",
    (("i.created_at", _TS), ("i.code", "text")), ("i.tenant_id",), _invite,
    {"active": Filter("bool", "i.active")})
INVITE_USES = ListSpec(
    "invite_uses", "invite_code_uses", "user_id, used_at",
    (("used_at", _TS), ("user_id", "text")), ("tenant_id", "code"), _invite_use)
PROMOS = ListSpec(
    "promos", "promo_codes", "*", (("created_at", _TS), ("code", "text")), ("tenant_id",),
    _promo, {"active": _ACTIVE})
PROMO_USES = ListSpec(
    "promo_uses", "promo_code_uses_listed AS u JOIN promo_codes AS p USING (tenant_id, code)",
    "u.use_id, u.customer_id, u.base_amount, u.bonus_amount, u.used_at, u.rolled_back_at, p.currency",
    (("u.used_at", _TS), ("u.use_id", "text")), ("u.tenant_id", "u.code"), _promo_use,
    {"customer_id": Filter("id", "u.customer_id")})
OFFERS = ListSpec(
    "offers", "offers", "*", (("created_at", _TS), ("offer_id", "text")), ("tenant_id",), _offer,
    {"event_id": Filter("id", "event_id"), "active": _ACTIVE})
PURCHASES = ListSpec(
    "purchases", "offer_purchases", "*", (("created_at", _TS), ("purchase_id", "text")),
    ("tenant_id",), _purchase,
    {"offer_id": Filter("id", "offer_id"), "user_id": Filter("id", "user_id"),
     "status": Filter("enum", "status", _PURCHASE)})
PAYMENTS = ListSpec(
    "payments", "payments", "*", (("created_at", _TS), ("payment_id", "text")), ("tenant_id",),
    _payment)
WITHDRAWALS = ListSpec(
    "withdrawals", "withdrawals", "*", (("created_at", _TS), ("withdrawal_id", "text")),
    ("tenant_id",), _withdrawal,
    {"status": Filter("enum", "status", ("pending", "completed", "rejected"))})
ORDERS = ListSpec(
    "orders", "orders", "*", (("created_at", _TS), ("order_id", "text")), ("tenant_id",), _order,
    {"status": Filter("id", "status")})
BOOKINGS = ListSpec(
    "bookings", "bookings AS b JOIN booking_slots AS s USING (tenant_id, resource_id, slot_start, slot_end)",
    "b.*, s.capacity, s.booked", (("b.created_at", _TS), ("b.booking_id", "text")), ("b.tenant_id",),
    _booking, {"resource_id": Filter("id", "b.resource_id"),
               "status": Filter("enum", "b.status", ("booked", "canceled"))})
CAMPAIGNS = ListSpec(
    "campaigns", "campaigns", "*", (("created_at", _TS), ("campaign_id", "text")), ("tenant_id",),
    _campaign)
# a staged upload's rows stay out until it commits (#21), type by type
NOT_PENDING = ("(upload IS NULL OR NOT EXISTS (SELECT 1 FROM campaign_pending_uploads p "
               "WHERE p.tenant_id = campaign_codes.tenant_id "
               "AND p.campaign_id = campaign_codes.campaign_id AND p.upload = campaign_codes.upload "
               "AND NOT (campaign_codes.type = ANY (p.committed_types))))")
CODES = ListSpec(
    "codes", "campaign_codes", f"*, {CODE_STATUS_SQL} AS shown_status", (("code", "text"),),
    ("tenant_id", "campaign_id"), _code,
    {"type": Filter("type", "type"), "status": Filter("enum", values=tuple(_CODE_STATUS),
                                                      sql=_CODE_STATUS)},
    descending=False, where=NOT_PENDING)

# Webhook tables are written by the API and the dispatcher directly (no persister), in
# ``seq`` order: never the secret. Deliveries are scoped by an endpoint the route has
# checked belongs to the caller's tenant.
WEBHOOK_ENDPOINTS = ListSpec(
    "webhook_endpoints", "dg_webhook_endpoints",
    "seq, endpoint_id, url, events, description, created_at, disabled_at",
    (("seq", "int"),), ("tenant_id",), _webhook_endpoint)
WEBHOOK_DELIVERIES = ListSpec(
    "webhook_deliveries", "dg_webhook_deliveries",
    "seq, delivery_id, event_id, event_type, status, attempts, created_at, next_attempt_at, "
    "last_attempt_at, response_status, last_error, delivered_at",
    (("seq", "int"),), ("endpoint_id",), _webhook_delivery,
    {"status": Filter("enum", "status", ("pending", "succeeded", "failed"),
                      description="pending, succeeded or failed")})

ALL: tuple[ListSpec, ...] = (TENANTS, KEYS, KEYS_OF_TENANT, INVITES, INVITE_USES, PROMOS,
                             PROMO_USES, OFFERS, PURCHASES, PAYMENTS, WITHDRAWALS, ORDERS,
                             BOOKINGS, CAMPAIGNS, CODES, WEBHOOK_ENDPOINTS, WEBHOOK_DELIVERIES)

