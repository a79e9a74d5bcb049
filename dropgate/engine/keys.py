"""Every Redis key name dropgate uses, and the map from entity to partition.

This is the only module that formats keys. A tenant and everything it owns live in
one partition (``crc32(tenant_id) % P``), and every key of that partition carries
the hash tag ``{pN}``: a script that checks a tenant's subscription and changes
one of its offers touches one hash slot, so the scripts run unchanged on Redis
Cluster, and the partition's event log ``<prefix>:{pN}:log`` is in the same slot.

Ids are validated here, before they reach a key, so ``:``, ``{`` and ``}`` can
never forge another entity's key or hash tag.
"""

from __future__ import annotations

import re
import zlib
from functools import lru_cache

from dropgate.engine.errors import ValidationError
from dropgate.models.common import ID_PATTERN, TYPE_PATTERN

_ID_RE = re.compile(ID_PATTERN)
_TYPE_RE = re.compile(TYPE_PATTERN)


def check_id(value: str, field: str = "id") -> str:
    """Return ``value`` if it is a valid id, else raise a 400 naming ``field``."""
    if not isinstance(value, str) or _ID_RE.match(value) is None:
        raise ValidationError(
            f"{field} must be 1-64 characters of A-Z, a-z, 0-9, '_', '.' or '-'.",
            details={"field": field},
        )
    return value


def check_type(value: str, field: str = "type") -> str:
    if not isinstance(value, str) or _TYPE_RE.match(value) is None:
        raise ValidationError(f"{field} must match ^[a-z][a-z0-9_-]{{0,31}}$.",
                              details={"field": field})
    return value


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

    @staticmethod
    def staging(key: str) -> str:
        """Where a restore stages a set before swapping it into ``key`` (same hash tag)."""
        return f"{key}:restore"

    def all_logs(self) -> list[str]:
        return [self.log(p) for p in range(self.partitions)]

    def pattern(self) -> str:
        """SCAN pattern matching every key of this installation."""
        return f"{self.prefix}:*"

    # -- per tenant ----------------------------------------------------------------
    def tenant(self, tenant_id: str) -> TenantKeys:
        return _tenant_keys(self.prefix, self.partitions, check_id(tenant_id, "tenant_id"))

    def api_key(self, key_id: str) -> tuple[int, str]:
        """An API key's record lives in the partition of its key id (the token carries it)."""
        check_id(key_id, "key_id")
        p = partition_of(key_id, self.partitions)
        return p, f"{self.tag(p)}:apikey:{key_id}"


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

    # -- invites -------------------------------------------------------------------
    def invite(self, code: str) -> str:
        return f"{self.base}:invite:{check_id(code, 'code')}"

    def invite_users(self, code: str) -> str:
        """Set of user ids that redeemed the code."""
        return f"{self.base}:invite:{check_id(code, 'code')}:users"

    # -- codes (campaign pools) ----------------------------------------------------

    # -- promos --------------------------------------------------------------------

    # -- offers --------------------------------------------------------------------

    # -- tenant operations (payments, withdrawals, orders, bookings) ----------------


@lru_cache(maxsize=65536)
def _tenant_keys(prefix: str, partitions: int, tenant_id: str) -> TenantKeys:
    return TenantKeys(prefix, partitions, tenant_id)
