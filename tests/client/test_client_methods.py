"""Every client method against the live server, async and sync, and the client's coverage of the routes."""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import dropgate.client
from dropgate.client import AsyncDropgate, Dropgate, Unauthorized
from dropgate.http.routes import ROUTE_TABLES
from dropgate.models.invites import Invite, InviteRedemption
from dropgate.models.tenants import KeyCreated, Tenant
from tests.client.conftest import LiveServer, TenantAccess
from tests.support.contract import NOT_IN_CLIENT, OPS, shape

CLIENT_DIR = Path(dropgate.client.__file__).parent


def _client_routes() -> set[tuple[str, str]]:
    """Every ``self._call("METHOD", "/path", ...)`` in the client's namespaces."""
    found: set[tuple[str, str]] = set()
    for file in CLIENT_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "_call" and len(node.args) >= 2
                    and all(isinstance(a, ast.Constant) for a in node.args[:2])):
                method, path = (a.value for a in node.args[:2])  # type: ignore[attr-defined]
                found.add((method, path))
    return found


def test_every_route_has_a_client_method_and_every_method_a_route() -> None:
    server = {(s.method, s.path) for t in ROUTE_TABLES for s in t.specs}
    client = _client_routes()
    assert client <= server, f"client calls routes the server does not have: {client - server}"
    wanted = {r for r in server if shape(*r) not in OPS | NOT_IN_CLIENT}
    assert wanted <= client, f"routes without a client method: {sorted(wanted - client)}"


def test_the_client_imports_no_server_code() -> None:
    code = ("import sys, dropgate.client; "
            "bad = [m for m in ('redis', 'asyncpg', 'dropgate.engine.scripts', 'dropgate.http', "
            "'dropgate.runtime', 'dropgate.persistence', 'aiohttp.web') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_public_method_has_a_docstring() -> None:
    client = AsyncDropgate("http://127.0.0.1:1", "k")
    namespaces = [v for v in vars(client).values() if isinstance(v, dropgate.client.Namespace)]
    assert {type(n).__name__ for n in namespaces} >= {
        "Tenants", "Keys", "Invites", "Codes", "Promos", "Offers", "Purchases", "Sandbox", "Payments",
        "Withdrawals", "Orders", "Bookings"}
    for owner in [AsyncDropgate, Dropgate, *[type(n) for n in namespaces]]:
        for name in dir(owner):
            if not name.startswith("_") and callable(getattr(owner, name)):
                assert (getattr(owner, name).__doc__ or "").strip(), f"{owner.__name__}.{name}"


async def test_tenants_and_keys(live: LiveServer, admin: AsyncDropgate) -> None:
    tenant_id = "c" + uuid.uuid4().hex[:12]
    trial_end = datetime(2031, 1, 1, tzinfo=UTC)
    created = await admin.tenants.create(tenant_id, name="Client Co", subscription_status="trialing",
                                         trial_end=trial_end)
    assert created == Tenant(tenant_id=tenant_id, name="Client Co", subscription_status="trialing",
                             trial_end=trial_end, balance={})
    assert await admin.tenants.get(tenant_id) == created
    suspended = await admin.tenants.set_subscription(tenant_id, subscription_status="suspended")
    assert (suspended.subscription_status, suspended.trial_end) == ("suspended", None)
    key = await admin.keys.create("service", tenant_id=tenant_id, name="svc")
    assert isinstance(key, KeyCreated) and key.key.startswith("dg_") and key.tenant_id == tenant_id
    async with AsyncDropgate(live.url, key.key, retries=0) as service:
        await service.invites.create("K1", max_uses=1)
        await admin.keys.delete(key.key_id)
        with pytest.raises(Unauthorized):
            await service.invites.get("K1")
    admin_key = await admin.keys.create("admin")
    assert admin_key.role == "admin" and admin_key.tenant_id is None
    async with AsyncDropgate(live.url, admin_key.key, retries=0) as second_admin:
        assert (await second_admin.tenants.get(tenant_id)).subscription_status == "suspended"


async def test_invites(dg: AsyncDropgate) -> None:
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    invite = await dg.invites.create("LAUNCH", max_uses=2, expires_at=expires)
    assert isinstance(invite, Invite)
    assert (invite.code, invite.max_uses, invite.used_count, invite.active, invite.expires_at) == (
        "LAUNCH", 2, 0, True, expires)
    generated = await dg.invites.create(max_uses=0, active=False)
    assert generated.code and generated.code != "LAUNCH" and not generated.active
    assert await dg.invites.redeem("LAUNCH", user_id="u1") == InviteRedemption(
        code="LAUNCH", user_id="u1", used_count=1)
    assert (await dg.invites.get("LAUNCH")).used_count == 1
    updated = await dg.invites.update("LAUNCH", max_uses=5)
    assert (updated.max_uses, updated.expires_at, updated.active) == (5, expires, True)
    cleared = await dg.invites.update("LAUNCH", expires_at=None, active=False)
    assert (cleared.expires_at, cleared.active, cleared.max_uses) == (None, False, 5)
    untouched = await dg.invites.update("LAUNCH")
    assert untouched == cleared


async def test_admin_acts_on_a_tenant_with_tenant_id_or_for_tenant(
        live: LiveServer, tenant: TenantAccess) -> None:
    async with AsyncDropgate(live.url, live.admin_key, tenant_id=tenant.tenant_id, retries=0) as admin:
        await admin.invites.create("ADMIN1", max_uses=1)
        view = admin.for_tenant(tenant.tenant_id)
        assert (await view.invites.get("ADMIN1")).code == "ADMIN1"
        assert view.tenant_id == tenant.tenant_id and repr(view).endswith(f"tenant_id={tenant.tenant_id!r})")


async def test_ops_methods(dg: AsyncDropgate) -> None:
    assert (await dg.health()).status == "ok"
    ready = await dg.readiness()
    assert ready.status == "ready" and ready.redis and ready.postgres
    doc = await dg.openapi()
    assert doc["openapi"] == "3.1.0" and "/v1/invites" in doc["paths"]
    await dg.invites.create("M1", max_uses=1)
    assert "dropgate_http_requests_total" in await dg.metrics()


async def test_path_values_are_encoded_so_they_cannot_change_the_route(dg: AsyncDropgate) -> None:
    await dg.invites.create("SAFE", max_uses=1)
    for hostile in ("SAFE/redeem", "../invites/SAFE", "SAFE?x=1", "SAFE#x"):
        with pytest.raises(dropgate.client.ValidationError) as info:
            await dg.invites.get(hostile)
        assert info.value.details.get("field") == "code"
    # "." and ".." are valid ids; the client sends them as they are, without dot-segment removal
    for dots in (".", ".."):
        await dg.invites.create(dots, max_uses=1)
        assert (await dg.invites.redeem(dots, user_id="u1")).code == dots
        assert (await dg.invites.get(dots)).used_count == 1


async def test_closed_client_refuses_calls(live: LiveServer, tenant: TenantAccess) -> None:
    client = AsyncDropgate(live.url, tenant.service_key)
    async with client:
        await client.invites.create("C1", max_uses=1)
    with pytest.raises(RuntimeError, match="closed"):
        await client.invites.get("C1")


async def test_a_session_passed_in_is_used_and_left_open(live: LiveServer, tenant: TenantAccess) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with AsyncDropgate(live.url, tenant.service_key, session=session) as client:
            await client.invites.create("S1", max_uses=1)
        assert not session.closed


# --- the synchronous wrapper ----------------------------------------------------------


def test_sync_client_every_method(live: LiveServer) -> None:
    with Dropgate(live.url, live.admin_key, retries=0) as admin:
        tenant_id = "sync" + uuid.uuid4().hex[:12]
        assert admin.tenants.create(tenant_id).tenant_id == tenant_id
        assert admin.tenants.get(tenant_id).subscription_status == "active"
        assert admin.tenants.set_subscription(tenant_id, subscription_status="past_due").subscription_status \
            == "past_due"
        key = admin.keys.create("service", tenant_id=tenant_id, name="svc")
        scoped = admin.for_tenant(tenant_id)
        assert scoped.invites.create("SYNC", max_uses=1).code == "SYNC"
        assert admin.health().status == "ok" and admin.readiness().status == "ready"
        assert "paths" in admin.openapi() and "dropgate_" in admin.metrics()
        with Dropgate(live.url, key.key, retries=0) as service:
            assert service.invites.redeem("SYNC", user_id="u1").used_count == 1
            assert service.invites.get("SYNC").used_count == 1
            assert service.invites.update("SYNC", active=False).active is False
            with pytest.raises(dropgate.client.Exhausted):
                service.invites.update("SYNC", active=True)
                service.invites.redeem("SYNC", user_id="u2")
        admin.keys.delete(key.key_id)
        scoped.close()  # a view closes nothing
        assert admin.tenants.get(tenant_id).tenant_id == tenant_id
    admin.close()  # twice is fine


def test_sync_client_keeps_docstrings_and_signatures(live: LiveServer) -> None:
    import inspect

    with Dropgate(live.url, live.admin_key) as client:
        redeem = client.invites.redeem
        assert redeem.__doc__ == AsyncDropgate("http://x", "k").invites.redeem.__doc__
        assert "user_id" in inspect.signature(redeem).parameters
        assert "redeem" in dir(client.invites)


async def test_sync_client_works_inside_a_running_event_loop(live: LiveServer, tenant: TenantAccess) -> None:
    # as in a notebook cell: an event loop is running in this thread
    asyncio.get_running_loop()
    with Dropgate(live.url, tenant.service_key) as client:
        assert client.invites.create("NB", max_uses=1).code == "NB"


def test_sync_client_is_safe_to_share_between_threads(live: LiveServer) -> None:
    with Dropgate(live.url, live.admin_key) as admin:
        tenant_id = "threads" + uuid.uuid4().hex[:12]
        admin.tenants.create(tenant_id)
        scoped = admin.for_tenant(tenant_id)
        scoped.invites.create("T", max_uses=0)
        errors: list[BaseException] = []

        def worker(i: int) -> None:
            try:
                scoped.invites.redeem("T", user_id=f"u{i}")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not errors
        assert scoped.invites.get("T").used_count == 20


def test_sync_client_closes_when_dropped_and_a_view_keeps_its_owner_alive(
        live: LiveServer, tenant: TenantAccess) -> None:
    import gc

    before = threading.active_count()
    view = Dropgate(live.url, live.admin_key).for_tenant(tenant.tenant_id)  # the owner is dropped
    gc.collect()
    assert view.invites.create("VIEW", max_uses=1).code == "VIEW"
    del view
    gc.collect()
    assert threading.active_count() == before  # the client's thread stopped with it
