"""Every Redis key name dropgate uses, and the map from entity to partition.

This is the only module that formats keys. A tenant and everything it owns live in
one partition (``crc32(tenant_id) % P``), and every key of that partition carries
the hash tag ``{pN}``: a script that checks a tenant's subscription and changes
one of its offers touches one hash slot, so the scripts run unchanged on Redis
Cluster, and the partition's event log ``<prefix>:{pN}:log`` is in the same slot.

Ids are validated here (``dropgate.ids``), before they reach a key, so ``:``, ``{`` and ``}`` can
never forge another entity's key or hash tag.
"""

from __future__ import annotations

import zlib
from functools import lru_cache

from dropgate.ids import check_id, check_type


def partition_of(entity_id: str, partitions: int) -> int:
    """Stable across processes and versions (crc32, never Python's salted hash)."""
    return zlib.crc32(entity_id.encode()) % partitions


class Keys:
    """Key names under one prefix with P partitions."""

    def __init__(self, prefix: str, partitions: int) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self.prefix = prefix
        self.partitions = partitions

    # -- global and per-partition keys ---------------------------------------------
    def meta(self) -> str:
        """Install-time facts (P) — checked at every start."""
        return f"{self.prefix}:meta"

    def tag(self, partition: int) -> str:
        return f"{self.prefix}:{{p{partition}}}"

    def log(self, partition: int) -> str:
        """The partition's event log: the write-behind outbox."""
        return f"{self.tag(partition)}:log"

    def dead_letters(self, partition: int) -> str:
        return f"{self.tag(partition)}:dead"

    def persister_lease(self, partition: int) -> str:
        return f"{self.tag(partition)}:persister"

    def dispatcher_lease(self, partition: int) -> str:
        """The webhook dispatcher's lease on the partition (same script as the persister's)."""
        return f"{self.tag(partition)}:dispatcher"

    def persister_members(self) -> str:
        """The live persisters (zset name -> expiry ms): each takes ceil(P / live) partitions."""
        return f"{self.prefix}:persisters"

    def dispatcher_members(self) -> str:
        """The live webhook dispatchers (zset name -> expiry ms), as ``persister_members``."""
        return f"{self.prefix}:dispatchers"

    def offer_hold_expiry(self, partition: int) -> str:
        """Offer holds of the partition by expiry (member ``tenant:offer:purchase``): the sweeper's queue."""
        return f"{self.tag(partition)}:offer_holds"

    def offer_idempotency(self, partition: int) -> str:
        """Purchase idempotency records of the partition (field ``tenant:sha256(key)``)."""
        return f"{self.tag(partition)}:idem"

    def offer_idempotency_expiry(self, partition: int) -> str:
        """The same records by expiry ms (24 h after their first use)."""
        return f"{self.tag(partition)}:idem_exp"

    def purchase_ratelimit(self, partition: int) -> str:
        """Per-user purchase rate limits of the partition (field ``tenant:user`` -> GCRA TAT)."""
        return f"{self.tag(partition)}:rl_purchase"

    @staticmethod
    def staging(key: str, what: str = "restore") -> str:
        """Where a restore stages a set before swapping it into ``key`` (same hash tag);
        ``what`` tells apart several staged next to one key."""
        return f"{key}:{what}"

    # -- per tenant ----------------------------------------------------------------
    def tenant(self, tenant_id: str) -> TenantKeys:
        return _tenant_keys(self.prefix, self.partitions, check_id(tenant_id, "tenant_id"))

    def api_key(self, key_id: str) -> tuple[int, str]:
        """An API key's record lives in the partition of its key id (the token carries it)."""
        check_id(key_id, "key_id")
        p = partition_of(key_id, self.partitions)
        return p, f"{self.tag(p)}:apikey:{key_id}"

    def api_key_prefix(self, partition: int) -> str:
        """What every API key hash of the partition starts with (apikey_revoke walks from it)."""
        return f"{self.tag(partition)}:apikey:"

    def api_key_minted(self, key_id: str) -> str:
        """Set of the key ids a key minted (they live in its partition): cascade follows it."""
        return f"{self.api_key(key_id)[1]}:minted"

    def api_key_pollers(self, partition: int) -> str:
        """Hash: serving process id -> "<revocation version it applied> <redis ms>"."""
        return f"{self.tag(partition)}:apikeys:pollers"

    def api_key_revocations(self, partition: int) -> str:
        """The partition's revocation version: bumped by every revoke, compared per request."""
        return f"{self.tag(partition)}:apikeys:revocations"


class TenantKeys:
    """Key names of one tenant's entities, all in the tenant's partition."""

    __slots__ = ("base", "log", "partition", "tag", "tenant_id")

    def __init__(self, prefix: str, partitions: int, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self.partition = partition_of(tenant_id, partitions)
        self.tag = f"{prefix}:{{p{self.partition}}}"
        self.log = f"{self.tag}:log"
        self.base = f"{self.tag}:t:{tenant_id}"

    def tenant(self) -> str:
        """Tenant hash: name, subscription status, trial end, balances, version."""
        return f"{self.tag}:tenant:{self.tenant_id}"

    def ratelimit(self, scope: str, subject: str) -> str:
        """GCRA state of one subject (user, customer) under one limit scope."""
        return f"{self.base}:rl:{scope}:{check_id(subject, 'subject')}"

    def ratelimit_table(self, scope: str) -> str:
        """GCRA state of every subject under one limit scope, one hash (subject -> TAT ms):
        one key a batched script names in KEYS, whatever subjects its batch holds."""
        return f"{self.base}:rl:{scope}"

    # -- invites -------------------------------------------------------------------
    def invite(self, code: str) -> str:
        return f"{self.base}:invite:{check_id(code, 'code')}"

    def invite_users(self, code: str) -> str:
        """Set of user ids that redeemed the code."""
        return f"{self.base}:invite:{check_id(code, 'code')}:users"

    # -- codes (campaign pools) ----------------------------------------------------
    # Per campaign: a meta hash (version, the types seen) and one hash of every code's
    # record. Per campaign and type: the available set, the reserved zset (score =
    # expiry ms) and the assigned set. No operation scans any of them.
    def codes_meta(self, campaign_id: str) -> str:
        """Hash: ``version`` of the campaign's pool, and a field ``t:<type>`` per type."""
        return f"{self.base}:codes:{check_id(campaign_id, 'campaign_id')}:meta"

    def codes_records(self, campaign_id: str) -> str:
        """Hash code -> ``type|status|reserve_id|reserved_at_ms|expires_at_ms|assigned_at_ms``."""
        return f"{self.base}:codes:{check_id(campaign_id, 'campaign_id')}:records"

    def codes_available(self, campaign_id: str, type: str) -> str:
        """Set of available codes of one type (SPOP hands them out)."""
        return self._codes_type(campaign_id, type) + ":available"

    def codes_reserved(self, campaign_id: str, type: str) -> str:
        """Zset of reserved codes of one type, scored by expiry (ms, Redis time)."""
        return self._codes_type(campaign_id, type) + ":reserved"

    def codes_assigned(self, campaign_id: str, type: str) -> str:
        """Set of assigned codes of one type."""
        return self._codes_type(campaign_id, type) + ":assigned"

    def codes_upload(self, campaign_id: str, upload_id: str) -> str:
        """Set of the codes one upload has seen so far (de-duplicates across batches)."""
        return f"{self.base}:codes:{check_id(campaign_id, 'campaign_id')}:upload:{check_id(upload_id, 'upload_id')}"

    def codes_staged(self, campaign_id: str, upload_id: str, type: str) -> str:
        """Set of an upload's new codes of one type, not reservable until it commits."""
        return f"{self.codes_upload(campaign_id, upload_id)}:staged:{check_type(type)}"

    def codes_def(self, campaign_id: str) -> str:
        """Hash: a campaign's definition (name, ttl_s, low_wm, created_ms, t:<type>); not
        under ``codes:``, whose keys reconcile compares with the code rows."""
        return f"{self.base}:campaign:{check_id(campaign_id, 'campaign_id')}"

    def codes_assigned_to(self, campaign_id: str) -> str:
        """Hash: assigned code -> the user it was assigned to (``assigned_to``)."""
        return f"{self.base}:codes:{check_id(campaign_id, 'campaign_id')}:assigned_to"

    def _codes_type(self, campaign_id: str, type: str) -> str:
        return f"{self.base}:codes:{check_id(campaign_id, 'campaign_id')}:type:{check_type(type)}"

    # -- promos --------------------------------------------------------------------
    def promo(self, code: str) -> str:
        """Promo hash: definition, times_used, total_bonus_issued, version."""
        return f"{self.base}:promo:{check_id(code, 'code')}"

    def promo_uses(self, code: str) -> str:
        """Hash use_id -> JSON use record (customer, base, bonus, time): the counters' truth."""
        return f"{self.base}:promo:{check_id(code, 'code')}:uses"

    def promo_customers(self, code: str) -> str:
        """Hash customer_id -> that customer's live uses of the code."""
        return f"{self.base}:promo:{check_id(code, 'code')}:customers"

    # -- offers --------------------------------------------------------------------
    def offer(self, offer_id: str) -> str:
        """Offer hash: definition, total/reserved/sold, version."""
        return f"{self.base}:offer:{check_id(offer_id, 'offer_id')}"

    def offer_holds(self, offer_id: str) -> str:
        """The offer's live holds: purchase id -> expiry ms."""
        return f"{self.base}:offer:{check_id(offer_id, 'offer_id')}:holds"

    def offer_users(self, offer_id: str) -> str:
        """The offer's buyers: user id -> units held or owned (max_per_user)."""
        return f"{self.base}:offer:{check_id(offer_id, 'offer_id')}:users"

    def offers_by_event(self, event_id: str) -> str:
        """Set of the offer ids of one event (the list endpoint reads it)."""
        return f"{self.base}:event:{check_id(event_id, 'event_id')}:offers"

    def purchases(self) -> str:
        """Hash of the tenant's purchases: purchase id -> JSON record."""
        return f"{self.base}:purchases"

    def purchase_sessions(self) -> str:
        """Hash of the checkout sessions of pending purchases, apart from their records:
        purchase id -> ``<session id>\n<checkout url>`` (``lua/lib/dg_purchase_session.lua``)."""
        return f"{self.base}:purchase_sessions"

    def webhook_event(self, event_id: str) -> str:
        """Marks a processed payment-provider event (kept for a week)."""
        return f"{self.base}:whevt:{check_id(event_id, 'event_id')}"

    def offer_hold_expiry(self) -> str:
        return f"{self.tag}:offer_holds"

    def offer_idempotency(self) -> str:
        return f"{self.tag}:idem"

    def offer_idempotency_expiry(self) -> str:
        return f"{self.tag}:idem_exp"

    def purchase_ratelimit(self) -> str:
        return f"{self.tag}:rl_purchase"


    # -- tenant operations (payments, withdrawals, orders, bookings) ----------------
    def actor_lease(self) -> str:
        """Hash of the tenant actor's leases: ``epoch`` (a counter that never resets,
        so the key never expires) and ``e:<epoch>`` -> lease expiry ms per activation."""
        return f"{self.base}:actor"

    def withdrawal(self, withdrawal_id: str) -> str:
        return f"{self.base}:wd:{check_id(withdrawal_id, 'withdrawal_id')}"

    def order(self, order_id: str) -> str:
        return f"{self.base}:order:{check_id(order_id, 'order_id')}"

    def booking(self, booking_id: str) -> str:
        """One booking's record (its slot, user, status): cancel and GET read it."""
        return f"{self.base}:booking:{check_id(booking_id, 'booking_id')}"

    def booking_slot(self, resource_id: str, start_ms: int, end_ms: int) -> str:
        """One slot of a resource: capacity and booked count."""
        return f"{self.base}:slot:{check_id(resource_id, 'resource_id')}:{int(start_ms)}:{int(end_ms)}"


@lru_cache(maxsize=65536)
def _tenant_keys(prefix: str, partitions: int, tenant_id: str) -> TenantKeys:
    return TenantKeys(prefix, partitions, tenant_id)
