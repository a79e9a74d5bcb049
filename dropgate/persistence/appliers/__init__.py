"""Event type -> the function that applies a run of such events to PostgreSQL.

Each domain has one module here exporting ``APPLIERS``. An applier receives a run
of consecutive events of one type (so it can use ``executemany``), inside the
persister's transaction. Appliers must be idempotent on their own too
(``ON CONFLICT``, version guards), although the committed offset already makes the
persister apply each event once.
"""

from __future__ import annotations

from dropgate.persistence.appliers import codes, core, invites, ledger, offers, promos
from dropgate.persistence.appliers.base import Applier, PipelineKey

APPLIERS: dict[str, Applier] = {}
for _module in (core, invites, codes, promos, ledger, offers):
    for _type, _fn in _module.APPLIERS.items():
        if _type in APPLIERS:
            raise RuntimeError(f"two appliers for {_type}")
        APPLIERS[_type] = _fn

# The types a hot partition's next batch may apply while its previous one commits, and the
# row key each writes (``base.PipelineKey`` says when a type may be one).
PIPELINED: dict[str, PipelineKey] = {**invites.PIPELINED, **promos.PIPELINED, **offers.PIPELINED}

__all__ = ["APPLIERS", "PIPELINED", "Applier", "PipelineKey"]
