"""Every error becomes its exception class: from the live server, and for every code of the API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web

from dropgate.client import (
    ERRORS,
    AlreadyExists,
    AlreadyUsed,
    AsyncDropgate,
    Conflict,
    DropgateError,
    Exhausted,
    Expired,
    Forbidden,
    Inactive,
    Internal,
    InvalidResponse,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    TenantRequired,
    Unauthorized,
    Unavailable,
    ValidationError,
)
from tests.client.conftest import LiveServer, TenantAccess


async def test_live_server_refusals_raise_their_classes(
        live: LiveServer, tenant: TenantAccess, dg: AsyncDropgate, admin: AsyncDropgate) -> None:
    async def raises(cls: type[DropgateError], call: object) -> DropgateError:
        with pytest.raises(cls) as info:
            await call  # type: ignore[misc]
        exc = info.value
        assert type(exc) is cls and exc.status == cls.status and exc.code == cls.code
        assert exc.request_id and len(exc.request_id) == 32  # the server's X-Request-Id
        assert str(exc)  # the server's sentence
        return exc

    async with AsyncDropgate(live.url, "dg_k1_unknown", retries=0) as stranger:
        await raises(Unauthorized, stranger.invites.get("X"))
    await raises(Forbidden, dg.tenants.get(tenant.tenant_id))  # a service key on an admin route
    await raises(Forbidden, dg.for_tenant("someone-else").invites.get("X"))
    await raises(TenantRequired, admin.invites.get("X"))
    await raises(NotFound, dg.invites.get("NOPE"))
    await raises(NotFound, admin.for_tenant("no-such-tenant").invites.get("X"))
    exc = await raises(ValidationError, dg.invites.create("bad code", max_uses=1))
    assert exc.details["field"] == "code"
    exc = await raises(ValidationError, dg.invites.create("NEG", max_uses=-1))
    assert exc.details["field"] == "max_uses"
    await raises(PayloadTooLarge, dg.invites.create("x" * (2 * 1024 * 1024), max_uses=1))

    await dg.invites.create("E1", max_uses=1)
    await raises(AlreadyExists, dg.invites.create("E1", max_uses=1))
    await dg.invites.redeem("E1", user_id="u1")
    await raises(AlreadyUsed, dg.invites.redeem("E1", user_id="u1"))
    await raises(Exhausted, dg.invites.redeem("E1", user_id="u2"))
    await dg.invites.create("E4", max_uses=3)
    for user in ("u1", "u2"):
        await dg.invites.redeem("E4", user_id=user)
    await raises(Conflict, dg.invites.update("E4", max_uses=1))  # below used_count
    await dg.invites.create("E2", max_uses=5, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    await raises(Expired, dg.invites.redeem("E2", user_id="u1"))
    await dg.invites.create("E3", max_uses=5, active=False)
    await raises(Inactive, dg.invites.redeem("E3", user_id="u1"))


# --- every code of the API, from a server that answers it ------------------------------


@pytest.fixture
async def echo_server() -> AsyncIterator[str]:
    """Answers ``/error/{code}`` with that code's error body and status; other shapes by path."""

    async def error(request: web.Request) -> web.Response:
        code = request.match_info["code"]
        status = ERRORS[code].status if code in ERRORS else int(request.query.get("status", "418"))
        body = {"error": f"sentence for {code}", "code": code, "details": {"n": 1}}
        headers = {"X-Request-Id": f"rid-{code}"}
        if "retry_after" in request.query:
            headers["Retry-After"] = request.query["retry_after"]
        return web.json_response(body, status=status, headers=headers)

    async def foreign(request: web.Request) -> web.Response:
        status = int(request.match_info["status"])
        return web.Response(status=status, text="<html>bad gateway</html>", content_type="text/html")

    async def garbled(request: web.Request) -> web.Response:
        return web.Response(status=200, text=json.dumps({"code": 5}), content_type="application/json")

    app = web.Application()
    app.router.add_get("/error/{code}", error)
    app.router.add_get("/foreign/{status}", foreign)
    app.router.add_get("/garbled", garbled)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def _get(client: AsyncDropgate, path: str) -> None:
    await client._transport.request("GET", path)


@pytest.mark.parametrize("code", sorted(ERRORS))
async def test_every_api_error_code_maps_to_its_class(echo_server: str, code: str) -> None:
    cls = ERRORS[code]
    async with AsyncDropgate(echo_server, "k", retries=0) as client:
        with pytest.raises(cls) as info:
            await _get(client, f"/error/{code}")
    exc = info.value
    assert type(exc) is cls and isinstance(exc, DropgateError)
    assert (exc.code, exc.status, exc.details, exc.request_id) == (code, cls.status, {"n": 1}, f"rid-{code}")
    assert str(exc) == f"sentence for {code}"


async def test_rate_limited_carries_retry_after_from_details_or_header(echo_server: str) -> None:
    async with AsyncDropgate(echo_server, "k", retries=0) as client:
        with pytest.raises(RateLimited) as info:
            await _get(client, "/error/RATE_LIMITED?retry_after=7")
        assert info.value.retry_after == 7.0  # no details.retry_after_s: the header
    exc = RateLimited(details={"retry_after_s": 3})
    exc.header_retry_after_s = 9.0
    assert exc.retry_after == 3.0  # details win
    assert RateLimited().retry_after is None


async def test_an_unknown_code_keeps_its_code_and_status(echo_server: str) -> None:
    async with AsyncDropgate(echo_server, "k", retries=0) as client:
        with pytest.raises(DropgateError) as info:
            await _get(client, "/error/FROM_A_NEWER_SERVER?status=418")
    assert type(info.value) is DropgateError
    assert (info.value.code, info.value.status) == ("FROM_A_NEWER_SERVER", 418)


async def test_answers_without_the_error_shape_map_by_status(echo_server: str) -> None:
    async with AsyncDropgate(echo_server, "k", retries=0) as client:
        for status, cls in ((404, NotFound), (500, Internal), (503, Unavailable)):
            with pytest.raises(cls) as info:
                await _get(client, f"/foreign/{status}")
            assert "bad gateway" in str(info.value)
        with pytest.raises(DropgateError) as generic:
            await _get(client, "/foreign/502")
        assert (generic.value.code, generic.value.status) == ("HTTP_502", 502)


async def test_an_undecodable_success_raises_invalid_response(echo_server: str) -> None:
    from dropgate.client.base import Namespace
    from dropgate.models.invites import Invite

    async with AsyncDropgate(echo_server, "k", retries=0) as client:
        with pytest.raises(InvalidResponse):
            await Namespace(client)._call("GET", "/garbled", Invite)
