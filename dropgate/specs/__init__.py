"""Entity specs: each entity described once, as data (see ``base`` and ``entities``)."""

from __future__ import annotations

from dropgate.specs.base import Count, Domain, Entity, Field, Members
from dropgate.specs.entities import DOMAINS

__all__ = ["DOMAINS", "Count", "Domain", "Entity", "Field", "Members"]
