"""Every entity of dropgate, described once: Redis form, PostgreSQL row, members, counters.

Reconcile compares, repairs and restores from these specs (dropgate/persistence/
reconcile/); adding a field to an entity means adding it here, to the scripts that
change it, to its API model and to a test. ``DOMAINS`` lists the reconciled groups in
restore order (a tenant before what it owns; the ledger after tenants, as it merges
balances into the tenant hash).
"""

from __future__ import annotations

from dropgate.specs.base import SQL_MS, Count, Domain, Entity, Field, Members

_INT, _BIG, _TS, _BOOL = "integer", "bigint", "timestamptz", "boolean"


def _int(name: str, column: str | None = None, sql_type: str = _INT, **kw: object) -> Field:
    return Field(name, column, sql_type, "int", **kw)  # type: ignore[arg-type]


def _ms(name: str, column: str, **kw: object) -> Field:
    return Field(name, column, _TS, "ms", **kw)  # type: ignore[arg-type]


def _flag(name: str, column: str | None = None) -> Field:
    return Field(name, column, _BOOL, "flag")


_TENANT_ID = Field("tenant_id", compared=False)
_VERSION = _int("version", sql_type=_BIG)

TENANT = Entity(
    kind="tenant", domain="core", table="tenants", key="tenant", ids=(), merge=True,
    fields=(_TENANT_ID, Field("name"), Field("status", "subscription_status"), _ms("trial_end_ms", "trial_end"),
            _ms("created_ms", "created_at"), _VERSION,
            # where its checkouts return buyers when the offer names no URL (versioned apart)
            Field("success_url", null=True), Field("cancel_url", null=True),
            _int("checkout_version", sql_type=_BIG, null=True)),
    resync=("resync_tenant",))

API_KEY = Entity(
    kind="apikey", domain="core", table="api_keys", key="api_key", global_=True, versioned=False,
    ids=(Field("key_id"),), where="{a}revoked_at IS NULL",
    fields=(Field("secret_sha256", secret=True), Field("role"), Field("tenant_id", sql="coalesce({a}tenant_id, '')"),
            _ms("created_ms", "created_at"), Field("name"), Field("scopes"), Field("created_by")),
    resync=("resync_apikey",))

INVITE_USES = Members("uses", "invite_users", "set", "invite_code_uses", ("tenant_id", "code"), "user_id")
INVITE = Entity(
    kind="invite", domain="invites", table="invite_codes", key="invite", ids=(Field("code"),), words=("invite",),
    fields=(_TENANT_ID, Field("code", compared=False), _int("max_uses"), _flag("active"),
            _ms("expires_at_ms", "expires_at", null=True), _ms("created_ms", "created_at"), _int("used_count"),
            _VERSION,
            # its newest use (redeem sets it): derived from the use rows, so restored but not
            # compared (invites redeemed before it existed lack it in Redis)
            _ms("last_used_ms", "last_used_at", null=True, compared=False, saved=False,
                sql="(SELECT " + SQL_MS.format("max(u.used_at)") + " FROM invite_code_uses u"
                    " WHERE u.tenant_id = {a}tenant_id AND u.code = {a}code)")),
    members=(INVITE_USES,),
    counts=(Count("used_count", "invite_code_uses", ("tenant_id", "code"), "use rows"),),
    resync=("resync_invite",), restore="restore_swap")

PROMO_USES = Members(
    "uses", "promo_uses", "hash", "promo_code_uses", ("tenant_id", "code"), "use_id",
    fields=(Field("customer_id"), _int("base_amount", sql_type=_BIG), _int("bonus_amount", sql_type=_BIG),
            _ms("at_ms", "used_at")),
    tally=("customers", "promo_customers", "customer_id"))
_PROMO_ROWS = ("promo_code_uses", ("tenant_id", "code"), "use rows")
PROMO = Entity(
    kind="promo", domain="promos", table="promo_codes", key="promo", ids=(Field("code"),), words=("promo",),
    fields=(_TENANT_ID, Field("code", compared=False), Field("kind", "bonus_kind"),
            _int("amount", "bonus_amount", _BIG, null=True), _int("percent", "bonus_percent", null=True),
            Field("currency"), _int("max_uses", null=True), _int("per_customer_limit"),
            _ms("starts_at_ms", "starts_at", null=True), _ms("ends_at_ms", "ends_at", null=True), _flag("active"),
            _ms("created_ms", "created_at"), _int("times_used"),
            _int("total_bonus_issued", sql_type=_BIG), _VERSION),
    members=(PROMO_USES,),
    counts=(Count("times_used", *_PROMO_ROWS), Count("total_bonus_issued", *_PROMO_ROWS, total="bonus_amount")),
    resync=("resync_promo",), restore="restore_swap", recount_setting="dropgate.promo_counter_sync")

OFFER_HOLDS = Members("holds", "offer_holds", "zset", "offer_purchases", ("tenant_id", "offer_id"), "purchase_id",
                      score=_ms("hold_expires_ms", "hold_expires_at"), where="{a}status = 'pending'")
_PURCHASE_ROWS = ("offer_purchases", ("tenant_id", "offer_id"), "purchase rows")
OFFER = Entity(
    kind="offer", domain="offers", table="offers", key="offer", ids=(Field("offer_id"),),
    words=("offer", "purchases", "event", "whevt"),
    fields=(_TENANT_ID, Field("offer_id", compared=False), Field("event_id"), Field("name"),
            _int("price_minor", sql_type=_BIG), Field("currency"), _int("total", "inventory_total"),
            _int("reserved"), _int("sold"), _int("max_per_order"), _flag("active"), _flag("archived"),
            _ms("expires_at_ms", "expires_at", null=True), _ms("created_ms", "created_at"), _VERSION,
            # units one user may hold plus own (none: no cap); where its checkout returns the buyer
            _int("max_per_user", null=True), Field("success_url", null=True), Field("cancel_url", null=True)),
    members=(OFFER_HOLDS,),
    counts=(Count("reserved", *_PURCHASE_ROWS, total="quantity", when=("status", "pending")),
            Count("sold", *_PURCHASE_ROWS, total="quantity", when=("units", "sold"))),
    resync=("resync_offer",), restore="restore_swap")

# A purchase is a JSON record in its tenant's purchases hash. Its checkout session is
# attached after the hold without an event of its own, kept beside the record while it is
# pending (``purchase_sessions``) and taken into it when it settles: compared once settled.
PURCHASE = Entity(
    kind="purchase", domain="offers", table="offer_purchases", key="purchases", ids=(Field("purchase_id"),),
    record_in="purchases", owner=("offer", "offer_id"),
    fields=(Field("purchase_id", compared=False), _TENANT_ID, Field("offer_id"), Field("user_id"),
            _int("quantity"), Field("status"), _int("amount_minor", sql_type=_BIG), Field("currency"),
            _ms("hold_expires_ms", "hold_expires_at"),
            Field("session_id", "checkout_session_id",
                  compare_sql="CASE WHEN {a}status <> 'pending' THEN {a}checkout_session_id END"),
            Field("payment_intent"), Field("refund_id"), _flag("retaken"), _ms("created_ms", "created_at"),
            _ms("updated_ms", "updated_at"), _VERSION,
            # where its units are (held / sold / none: a refund without restock keeps them
            # sold), what was refunded, and each refund id applied (jsonb re-spells the
            # JSON text: compared through refunded_minor)
            Field("units"), _int("refunded_minor", sql_type=_BIG),
            Field("refunds", sql_type="jsonb", redis="json", compared=False)),
    resync=("resync_offer",))

# Campaign codes: the entity is the campaign; its members are packed code records
# (dg_code_pack), compared and restored by reconcile/codes.py.
CODES = Entity(
    kind="codes", domain="codes", table="campaign_codes", key="codes_meta", ids=(Field("campaign_id"),),
    words=("codes",),
    fields=(Field("code"), Field("type"), Field("status"), Field("reserve_id"), _ms("reserved_ms", "reserved_at"),
            _ms("expires_ms", "expires_at"), _ms("assigned_ms", "assigned_at"), _VERSION),
    resync=("resync_codes",), restore="restore_codes")

# Ledger: a balance is the ``bal:<currency>`` field of the tenant hash, derived from
# the ledger rows (payments in, completed withdrawals out).
BALANCE = Entity(
    kind="balance", domain="ledger", table="tenant_balances", key="tenant", ids=(Field("currency"),),
    versioned=False, fields=(_int("balance", "balance_minor", _BIG),), restore="restore_balance",
    counts=(Count("balance", "tenant_balances_from_rows", ("tenant_id", "currency"), "ledger rows",
                  total="balance_minor", column="balance_minor"),))
WITHDRAWAL = Entity(
    kind="withdrawal", domain="ledger", table="withdrawals", key="withdrawal", ids=(Field("withdrawal_id"),),
    words=("wd",),
    fields=(_TENANT_ID, Field("withdrawal_id", compared=False), _int("amount", "amount_minor", _BIG),
            Field("currency"), Field("initiated_by"), Field("approved_by"), Field("status"),
            _ms("created_ms", "created_at"), _ms("completed_ms", "completed_at"), _VERSION,
            Field("initiator"), Field("initiator_key_id"), Field("approver"), Field("approver_key_id"),
            _ms("rejected_ms", "rejected_at"), Field("reason", "reject_reason")),
    resync=("resync_ledger", "withdrawal"))
ORDER = Entity(
    kind="order", domain="ledger", table="orders", key="order", ids=(Field("order_id"),), words=("order",),
    # PostgreSQL keeps items as jsonb, which re-spells the JSON text: not compared
    fields=(_TENANT_ID, Field("order_id", compared=False), Field("items", sql_type="jsonb", redis="json",
                                                                 compared=False),
            _int("total", "total_minor", _BIG), Field("currency"), Field("status"), _ms("created_ms", "created_at"),
            _ms("updated_ms", "updated_at"), _VERSION),
    resync=("resync_ledger", "order"))
# A slot carries no version in PostgreSQL: its Redis version (which orders its events)
# is restored as its booked count.
SLOT = Entity(
    kind="slot", domain="ledger", table="booking_slots", key="booking_slot", versioned=False, words=("slot",),
    ids=(Field("resource_id"), _ms("slot_start", "slot_start"), _ms("slot_end", "slot_end")),
    fields=(_int("capacity"), _int("booked"), _int("version", compared=False, same_as="booked")),
    counts=(Count("booked", "bookings", ("tenant_id", "resource_id", "slot_start", "slot_end"), "booking rows",
                  when=("status", "booked")),))

DOMAINS: tuple[Domain, ...] = (
    Domain("core", (TENANT,)),
    Domain("core", (API_KEY,)),
    Domain("invites", (INVITE,)),
    Domain("codes", (CODES,)),
    Domain("promos", (PROMO,)),
    Domain("offers", (OFFER, PURCHASE)),
    Domain("ledger", (BALANCE, WITHDRAWAL, ORDER, SLOT)),
)
