"""``dropgate purchases list --tenant T [--offer O] [--user U] [--status S] [--json]``."""

from __future__ import annotations

from dropgate.cli import listing
from dropgate.cli.common import AddCommand, Invocation
from dropgate.http.listspecs import PURCHASES

STATUSES = PURCHASES.filters["status"].values  # the API's filter, not a copy


def register(add: AddCommand) -> None:
    purchases = add("purchases", "List purchases.", run)
    sub = purchases.add_subparsers(dest="purchases_command", required=True)
    listed = sub.add_parser("list", help="purchases, newest first: an offer's, a user's, by status",
                            description="Purchases, newest first, from PostgreSQL page by page.",
                            epilog=purchases.epilog, formatter_class=purchases.formatter_class)
    listed.add_argument("--tenant", required=True)
    listed.add_argument("--offer", help="only this offer's purchases")
    listed.add_argument("--user", help="only this user's purchases")
    listed.add_argument("--status", choices=STATUSES)
    listing.add_output_flags(listed)


async def run(call: Invocation) -> int:
    return await listing.run_guarded(listing.purchases_list, call)
