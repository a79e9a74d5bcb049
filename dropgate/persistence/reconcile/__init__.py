"""Reconciliation (Redis <-> PostgreSQL), repair and restore, one plug-in per domain.

``RECONCILERS`` lists every domain's reconciler, in restore order (a tenant before
what it owns). A new domain adds its module here; see docs/reconcile.md.
"""

from __future__ import annotations

from dropgate.persistence.reconcile.base import (
    Comparison,
    Drift,
    KindCount,
    ReconcileContext,
    Reconciler,
    Repair,
    Scope,
)
from dropgate.persistence.reconcile.codes import CodesReconciler
from dropgate.persistence.reconcile.core import ApiKeyReconciler, TenantReconciler
from dropgate.persistence.reconcile.invites import InviteReconciler
from dropgate.persistence.reconcile.ledger import LedgerReconciler
from dropgate.persistence.reconcile.offers import OfferReconciler
from dropgate.persistence.reconcile.promos import PromoReconciler

RECONCILERS: tuple[Reconciler, ...] = (
    TenantReconciler(),
    ApiKeyReconciler(),
    InviteReconciler(),
    CodesReconciler(),
    PromoReconciler(),
    OfferReconciler(),
    LedgerReconciler(),  # after tenants: merges bal:* into the tenant hash
)

__all__ = ["RECONCILERS", "Comparison", "Drift", "KindCount", "ReconcileContext", "Reconciler", "Repair", "Scope"]
