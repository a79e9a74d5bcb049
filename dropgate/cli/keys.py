"""``dropgate keys create --role R [--tenant T --name N --scope S]`` / ``keys revoke KEY_ID [--cascade]``
/ ``keys list [--tenant T] [--role R] [--json]``."""

from __future__ import annotations

import sys

from dropgate.cli import listing
from dropgate.cli.common import AddCommand, Invocation
from dropgate.models.scopes import SCOPES


def register(add: AddCommand) -> None:
    keys = add("keys", "Create, list or revoke API keys.", run)
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key (printed once)", description="Create a key "
                                 "(printed once).", epilog=keys.epilog, formatter_class=keys.formatter_class)
    create.add_argument("--role", choices=["admin", "service"], required=True)
    create.add_argument("--tenant", help="the tenant of a service key")
    create.add_argument("--name", help="who holds the key (required for a service key)")
    create.add_argument("--scope", action="append", choices=SCOPES, dest="scopes",
                        help="a scope the key carries (repeat; default every scope)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key", description="Revoke a key.",
                                 epilog=keys.epilog, formatter_class=keys.formatter_class)
    revoke.add_argument("key_id")
    revoke.add_argument("--cascade", action="store_true",
                        help="also revoke every key minted by this one, transitively")
    listed = keys_sub.add_parser("list", help="list keys, newest first (never a secret)",
                                 description="List keys, newest first (never a secret).",
                                 epilog=keys.epilog, formatter_class=keys.formatter_class)
    listed.add_argument("--tenant", help="only this tenant's keys")
    listed.add_argument("--role", choices=["admin", "service"])
    listing.add_output_flags(listed)


async def run(call: Invocation) -> int:
    args = call.args
    if args.keys_command == "list":
        return await listing.run_guarded(listing.keys_list, call)
    if args.keys_command == "create" and args.role == "service" and not args.tenant:
        print("dropgate: --tenant is required for a service key", file=sys.stderr)
        return 2
    if args.keys_command == "create" and args.role == "service" and not args.name:
        print("dropgate: --name is required for a service key (who holds it)", file=sys.stderr)
        return 2
    async with call.runtime() as runtime:
        if args.keys_command == "create":
            if args.role == "service" and not await runtime.tenants.exists(args.tenant):
                print(f"dropgate: no tenant {args.tenant!r}", file=sys.stderr)
                return 2
            key_id, token = await runtime.api_keys.create(role=args.role, tenant_id=args.tenant,
                                                          name=args.name or "", scopes=args.scopes)
            print(f"key_id: {key_id}\nkey:    {token}\n(the key is shown once)")
        else:
            result = await runtime.api_keys.revoke(args.key_id, cascade=args.cascade)
            print("revoked " + " ".join(result.revoked))
    return 0
