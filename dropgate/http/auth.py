"""Bearer keys and tenant resolution, as docs/api.md's "Auth and tenancy" states."""

from __future__ import annotations

import hmac
import re

from aiohttp import web

from dropgate.engine.apikeys import Principal
from dropgate.errors import Forbidden, NotFound, TenantRequired, Unauthorized, ValidationError
from dropgate.ids import check_id
from dropgate.runtime import Runtime

_BOOTSTRAP = Principal(role="admin", tenant_id=None, key_id=None, name="")


# RFC 6750's b64token: anything else (``*``, ``{``, Latin-1 bytes) is not a key of ours
_TOKEN_RE = re.compile(r"^[A-Za-z0-9._~+/=-]{1,512}$")


# Authorization header -> its token, for headers that parsed: a crowd sends the same few
# keys on every request, and the parse (partition, lower, strip, the regex) was a visible
# share of a request's CPU (BENCHMARKS.md, "Where each microsecond of a request goes").
# Bounded like the key cache (cleared when full); refusals are not kept.
_TOKENS: dict[str, str] = {}
_TOKENS_MAX = 10_000


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    token = _TOKENS.get(header)
    if token is not None:
        return token
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Send Authorization: Bearer <key>.")
    token = token.strip()
    if not _TOKEN_RE.match(token):
        raise Unauthorized("Unknown API key.")
    if len(_TOKENS) >= _TOKENS_MAX:
        _TOKENS.clear()
    _TOKENS[header] = token
    return token


def bootstrap_principal(token: str, runtime: Runtime) -> Principal | None:
    """The bootstrap admin (DROPGATE_ADMIN_KEY: not a stored key, never revoked); else None."""
    admin_key = runtime.settings.admin_key
    if admin_key and hmac.compare_digest(token.encode(), admin_key.encode()):
        return _BOOTSTRAP
    return None


async def look_up(token: str, runtime: Runtime) -> Principal:
    """A stored key, checked against the revocation version on every call
    (engine/apikeys.py): a key revoked before this request is refused."""
    try:
        principal = await runtime.api_keys.authenticate(token)
    except ValidationError:  # a key id no key could have: unknown, not a malformed body
        principal = None
    if principal is None:
        raise Unauthorized("Unknown API key.")
    return principal


def require_scope(principal: Principal, scope: str | None) -> None:
    """403 FORBIDDEN, details {scope}, when the key lacks the route's scope."""
    if scope is not None and not principal.allows(scope):
        raise Forbidden(f"This key lacks the scope {scope}.", details={"scope": scope})


def own_tenant(request: web.Request, principal: Principal) -> str:
    """A service key's tenant (X-Tenant-Id, when sent, must name it)."""
    assert principal.tenant_id is not None
    header = request.headers.get("X-Tenant-Id")
    if header is not None and check_id(header, "X-Tenant-Id") != principal.tenant_id:
        raise Forbidden("This key belongs to another tenant.")
    return principal.tenant_id


async def resolve_tenant(request: web.Request, runtime: Runtime, principal: Principal) -> str:
    """Admin: X-Tenant-Id (400 without it, 404 if unknown); service: its own tenant."""
    if principal.role != "admin":
        return own_tenant(request, principal)
    header = request.headers.get("X-Tenant-Id")
    if not header:
        raise TenantRequired("Admin keys must name the tenant in X-Tenant-Id.")
    tenant_id = check_id(header, "X-Tenant-Id")
    if not await runtime.tenants.exists(tenant_id):
        raise NotFound("No such tenant.", details={"tenant_id": tenant_id})
    return tenant_id
