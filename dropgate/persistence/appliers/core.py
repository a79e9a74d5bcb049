"""Tenants and API keys."""

from __future__ import annotations

import asyncpg

from dropgate.engine.events import ApikeyCreated, ApikeyRevoked, Event, TenantCheckout, TenantSaved
from dropgate.persistence.appliers.base import Applier, ts


async def tenant_saved(conn: asyncpg.Connection, events: list[Event[TenantSaved]]) -> None:
    await conn.executemany(
        """INSERT INTO tenants (tenant_id, name, subscription_status, trial_end, created_at, version)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (tenant_id) DO UPDATE SET
               name = EXCLUDED.name, subscription_status = EXCLUDED.subscription_status,
               trial_end = EXCLUDED.trial_end, version = EXCLUDED.version
           WHERE tenants.version < EXCLUDED.version""",
        [
            (d.tenant_id, d.name, d.status, ts(d.trial_end_ms), ts(d.created_ms), e.version)
            for e in events
            for d in (e.data,)
        ],
    )
    # every creation and subscription change, kept forever (a resync's re-emit has no
    # changed_ms: the change it repeats is already there, or was lost with its event)
    await conn.executemany(
        """INSERT INTO subscription_history (tenant_id, version, subscription_status, trial_end,
                                             changed_at, changed_by)
           VALUES ($1, $2, $3, $4, $5, NULLIF($6, '')) ON CONFLICT DO NOTHING""",
        [(d.tenant_id, e.version, d.status, ts(d.trial_end_ms), ts(d.changed_ms), d.changed_by)
         for e in events for d in (e.data,) if d.changed_ms is not None],
    )


async def apikey_created(conn: asyncpg.Connection, events: list[Event[ApikeyCreated]]) -> None:
    await conn.executemany(
        """INSERT INTO api_keys (key_id, secret_sha256, role, tenant_id, created_at, name, scopes,
                                 created_by)
           VALUES ($1, $2, $3, NULLIF($4, ''), $5, NULLIF($6, ''), NULLIF($7, '*'), NULLIF($8, ''))
           ON CONFLICT (key_id) DO NOTHING""",
        [(d.key_id, d.secret_sha256, d.role, d.tenant_id, ts(d.created_ms), d.name, d.scopes,
          d.created_by)
         for d in (e.data for e in events)],
    )


async def apikey_revoked(conn: asyncpg.Connection, events: list[Event[ApikeyRevoked]]) -> None:
    await conn.executemany(
        "UPDATE api_keys SET revoked_at = $2 WHERE key_id = $1 AND revoked_at IS NULL",
        [(e.data.key_id, ts(e.data.revoked_ms)) for e in events],
    )



async def tenant_checkout(conn: asyncpg.Connection, events: list[Event[TenantCheckout]]) -> None:
    """A tenant's checkout URLs, by their own version (the tenant row exists: its
    tenant.saved came first in the log)."""
    await conn.executemany(
        """UPDATE tenants SET success_url = $2, cancel_url = $3, checkout_version = $4
           WHERE tenant_id = $1 AND coalesce(checkout_version, 0) < $4""",
        [(e.data.tenant_id, e.data.success_url, e.data.cancel_url, e.version) for e in events])

APPLIERS: dict[str, Applier] = {
    "tenant.saved": tenant_saved,
    "tenant.checkout": tenant_checkout,
    "apikey.created": apikey_created,
    "apikey.revoked": apikey_revoked,
}
