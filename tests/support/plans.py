"""PostgreSQL's JSON plans walked, for the tests that hold a query to its plan."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of ``EXPLAIN (FORMAT JSON)``'s ``[0]["Plan"]``, the root first."""
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)
