"""The demo's domains, in the order their summary rows print."""

from __future__ import annotations

from dropgate.demo.base import DemoDomain
from dropgate.demo.codes import CodesDemo
from dropgate.demo.invites import InvitesDemo

DOMAINS: list[type[DemoDomain]] = [InvitesDemo, CodesDemo]
