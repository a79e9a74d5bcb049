"""``dropgate webhooks list|deliveries|replay``: a tenant's endpoints, an endpoint's
delivery log, and resending chosen deliveries.

``replay`` puts deliveries back in the queue (pending, due now) with the same event id
and body: a receiver deduplicating on ``id`` sees a replay of an event it already has
as the duplicate it is; its retry window starts again. ``--enable`` also re-enables a disabled endpoint (else its
replayed deliveries would fail again at once). A running dispatcher sends them.
"""

from __future__ import annotations

import argparse
import sys

import msgspec

from dropgate.cli.common import AddCommand, Invocation
from dropgate.http import listspecs as L
from dropgate.models.webhooks import WebhookEndpointList
from dropgate.persistence.lists import MAX_LIMIT, Cursors, cursor_secret, fetch_page


def register(add: AddCommand) -> None:
    hooks = add("webhooks", "Inspect webhook endpoints and resend deliveries.", run)
    sub = hooks.add_subparsers(dest="webhooks_command", required=True)

    def parser(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, epilog=hooks.epilog,
                              formatter_class=hooks.formatter_class)

    listing = parser("list", "A tenant's endpoints (never their secrets).")
    listing.add_argument("--tenant", required=True)
    deliveries = parser("deliveries", "An endpoint's delivery log, newest first.")
    deliveries.add_argument("endpoint_id")
    deliveries.add_argument("--status", choices=("pending", "succeeded", "failed"))
    deliveries.add_argument("--limit", type=int, default=50)
    replay = parser("replay", "Send chosen deliveries again (same event id).")
    replay.add_argument("delivery_ids", nargs="*", metavar="DELIVERY_ID")
    replay.add_argument("--endpoint", help="every delivery of this endpoint with --status")
    replay.add_argument("--status", choices=("failed", "succeeded"), default="failed")
    replay.add_argument("--enable", action="store_true", help="re-enable the endpoint(s) too")
    for p in (listing, deliveries):
        p.add_argument("--json", action="store_true", help="one JSON document instead of lines")


async def run(call: Invocation) -> int:
    args = call.args
    async with call.runtime() as runtime:
        pool = runtime.pool
        if args.webhooks_command in ("list", "deliveries"):
            # the API's lists (http/listspecs.py), first page only: no cursor is read
            cursors = Cursors(await cursor_secret(pool))
            if args.webhooks_command == "list":
                page = await fetch_page(pool, cursors, L.WEBHOOK_ENDPOINTS, scope=(args.tenant,),
                                        query={}, limit=MAX_LIMIT, cursor=None)
                if args.json:
                    print(msgspec.json.encode(WebhookEndpointList(
                        data=page.data, has_more=False, next_cursor=None)).decode())
                for e in [] if args.json else page.data:
                    print(f"{e.endpoint_id}  {e.status:8}  {','.join(e.events)}  {e.url}")
                return 0
            page = await fetch_page(pool, cursors, L.WEBHOOK_DELIVERIES, scope=(args.endpoint_id,),
                                    query={"status": args.status} if args.status else {},
                                    limit=max(1, min(args.limit, MAX_LIMIT)), cursor=None)
            if args.json:
                print(msgspec.json.encode(page.data).decode())
                return 0
            for d in page.data:
                print(f"{d.delivery_id}  {d.status:9}  attempts={d.attempts}  {d.type}  {d.event_id}"
                      + (f"  {d.error}" if d.error else ""))
            return 0
        if not args.delivery_ids and not args.endpoint:
            print("dropgate: webhooks replay needs DELIVERY_IDs or --endpoint", file=sys.stderr)
            return 2
        async with pool.acquire() as conn, conn.transaction():
            replayed = await conn.fetch(
                """UPDATE dg_webhook_deliveries
                      SET status = 'pending', next_attempt_at = now(), locked_until = NULL,
                          created_at = now(), delivered_at = NULL
                    WHERE (delivery_id = ANY($1) OR (endpoint_id = $2 AND status = $3))
                      AND status <> 'pending'
                RETURNING endpoint_id""", args.delivery_ids, args.endpoint, args.status)
            endpoints = sorted({r["endpoint_id"] for r in replayed})
            if args.enable and endpoints:
                await conn.execute(
                    """UPDATE dg_webhook_endpoints SET disabled_at = NULL, failing_since = NULL
                        WHERE endpoint_id = ANY($1)""", endpoints)
        print(f"dropgate: {len(replayed)} deliveries queued again"
              + (f" ({len(endpoints)} endpoints re-enabled)" if args.enable and endpoints else ""))
        return 0
