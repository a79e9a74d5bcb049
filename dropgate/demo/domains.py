"""The demo's domains, in the order their summary rows print."""

from __future__ import annotations

from dropgate.demo.base import DemoDomain
from dropgate.demo.codes import CodesDemo
from dropgate.demo.invites import InvitesDemo
from dropgate.demo.ledger import LedgerDemo
from dropgate.demo.offers import OffersDemo
from dropgate.demo.promos import PromosDemo

DOMAINS: list[type[DemoDomain]] = [InvitesDemo, CodesDemo, PromosDemo, LedgerDemo, OffersDemo]
