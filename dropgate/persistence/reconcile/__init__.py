"""Reconciliation (Redis <-> PostgreSQL), repair and restore, driven by the entity specs.

``RECONCILERS`` holds one reconciler per group of ``dropgate.specs.DOMAINS``, in
restore order (a tenant before what it owns): the generic one, or a domain's hooks
where it really differs (offers, codes, the ledger). See docs/reconcile.md.
"""

from __future__ import annotations

from dropgate.persistence.reconcile.base import (
    Comparison,
    Drift,
    KindCount,
    ReconcileContext,
    Repair,
    Scope,
)
from dropgate.persistence.reconcile.codes import CodesReconciler
from dropgate.persistence.reconcile.generic import SpecReconciler
from dropgate.persistence.reconcile.ledger import LedgerReconciler
from dropgate.persistence.reconcile.offers import OfferReconciler
from dropgate.specs import DOMAINS

HOOKS: dict[str, type[SpecReconciler]] = {"codes": CodesReconciler, "offers": OfferReconciler,
                                          "ledger": LedgerReconciler}

Reconciler = SpecReconciler

RECONCILERS: tuple[Reconciler, ...] = tuple(
    HOOKS[d.name]() if d.name in HOOKS else SpecReconciler(*d.entities) for d in DOMAINS)

__all__ = ["RECONCILERS", "Comparison", "Drift", "KindCount", "ReconcileContext", "Reconciler", "Repair", "Scope"]
