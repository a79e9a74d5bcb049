"""``dropgate keys create --role R [--tenant T]`` / ``keys revoke KEY_ID``: API keys."""

from __future__ import annotations

import sys

from dropgate.cli.common import AddCommand, Invocation


def register(add: AddCommand) -> None:
    keys = add("keys", "Create or revoke API keys.", run)
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key (printed once)", description="Create a key "
                                 "(printed once).", epilog=keys.epilog, formatter_class=keys.formatter_class)
    create.add_argument("--role", choices=["admin", "service"], required=True)
    create.add_argument("--tenant", help="the tenant of a service key")
    revoke = keys_sub.add_parser("revoke", help="revoke a key", description="Revoke a key.",
                                 epilog=keys.epilog, formatter_class=keys.formatter_class)
    revoke.add_argument("key_id")


async def run(call: Invocation) -> int:
    args = call.args
    if args.keys_command == "create" and args.role == "service" and not args.tenant:
        print("dropgate: --tenant is required for a service key", file=sys.stderr)
        return 2
    async with call.runtime() as runtime:
        if args.keys_command == "create":
            if args.role == "service" and not await runtime.tenants.exists(args.tenant):
                print(f"dropgate: no tenant {args.tenant!r}", file=sys.stderr)
                return 2
            key_id, token = await runtime.api_keys.create(role=args.role, tenant_id=args.tenant)
            print(f"key_id: {key_id}\nkey:    {token}\n(the key is shown once)")
        else:
            await runtime.api_keys.revoke(args.key_id)
            print(f"revoked {args.key_id}")
    return 0
