"""The hot routes' own path (http/hotpath.py) answers exactly as the router would.

Two checks. The front's ``match`` is compared with aiohttp's router on a matrix of
requests: whenever the front takes a request, the router finds the same route with the
same parameters (and the front takes the plain hot requests). Then the same requests,
good and bad, go to two servers over one runtime: one through the server's own runner
(the front), one through aiohttp's plain runner (router and middleware only); their
answers must agree in status, error body, content type and the headers every answer
carries.
"""

from __future__ import annotations

import gzip
import itertools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from dropgate.http import hotpath, routing
from dropgate.http.app import create_app
from dropgate.http.appkeys import FRONT
from dropgate.http.hotpath import HotFront
from dropgate.http.routes import ROUTE_TABLES
from dropgate.runtime import Runtime, open_runtime
from dropgate.settings import Settings
from tests.conftest import Api
from tests.support.apiserver import ApiServer
from tests.support.codes import upload_csv

# the routes declared hot (``hot=True``): the four a crowd arrives on, and no other
HOT_ROUTES = {(spec.method, spec.path) for table in ROUTE_TABLES for spec in table.specs if spec.hot}


def test_the_four_crowd_routes_are_the_hot_ones() -> None:
    assert HOT_ROUTES == {("POST", "/v1/invites/{code}/redeem"), ("POST", "/v1/promos/{code}/redeem"),
                          ("POST", "/v1/campaigns/{campaign_id}/reservations"),
                          ("POST", "/v1/offers/{offer_id}/purchase")}


PATHS = [
    "/v1/invites/SPRING/redeem", "/v1/promos/P10/redeem", "/v1/campaigns/c1/reservations",
    "/v1/offers/o1/purchase",
    # near misses: the router's 404s, other routes, escapes, queries, empty or extra segments
    "/v1/invites//redeem", "/v1/invites/SPRING/redeem/", "/v1/invites/SPRING", "/v1/invites/a/b/redeem",
    "/v1/invites/SP%52ING/redeem", "/v1/invites/a%2Fb/redeem", "/v1/invites/SPRING/redeem?x=1",
    "/v1/invites/{x}/redeem", "/v1/invites/a}/redeem", "/v1/promos/P10/uses", "/v1/offers/o1/purchases",
    "/v1/campaigns/c1/reservations/r1", "/v2/invites/SPRING/redeem", "/v1/invite/SPRING/redeem",
    "/v1/invites/SPRING/Redeem", "/v1/offers/o.1-x_y:z/purchase", "/healthz", "/",
]


def _front_of(app: web.Application) -> HotFront:
    front = app[FRONT].__self__  # type: ignore[attr-defined]
    assert isinstance(front, HotFront)
    return front


@pytest.mark.parametrize("method", ["POST", "GET", "PUT"])
@pytest.mark.parametrize("path", PATHS)
async def test_the_front_takes_a_request_only_as_the_router_would(runtime: Runtime, method: str,
                                                                  path: str) -> None:
    app = create_app(runtime)
    front = _front_of(app)
    for headers in ({}, {"Expect": "100-continue"}):
        request = make_mocked_request(method, path, headers=headers, app=app)
        found = front.match(request)
        routed = await app.router.resolve(request)
        if found is None:
            plain = (method == "POST" and "?" not in path and "%" not in path and "{" not in path
                     and "}" not in path and not headers and routed.http_exception is None
                     and ("POST", routed.route.resource.canonical) in HOT_ROUTES)  # type: ignore[union-attr]
            assert not plain, f"the front left a plain hot request to the router: {method} {path}"
            continue
        hot, params = found
        assert routed.http_exception is None, f"the front took what the router refuses: {method} {path}"
        assert routed.route.resource is not None
        assert (routed.route.method, routed.route.resource.canonical) == ("POST", hot.route)
        assert params == dict(routed), (params, dict(routed))


async def test_every_hot_route_has_one_shape_and_every_route_is_known(runtime: Runtime) -> None:
    app = create_app(runtime)
    registered = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    assert HOT_ROUTES <= registered
    front = _front_of(app)
    taken = {found[0].route for path in PATHS[:4]
             if (found := front.match(make_mocked_request("POST", path, app=app))) is not None}
    assert taken == {path for _, path in HOT_ROUTES}
    # no other POST route of the API could match a hot route's path (the router would then
    # have to choose): some segment is a different literal in the two
    for _, hot in HOT_ROUTES:
        hot_parts = hot.split("/")
        for method, other in registered:
            other_parts = other.split("/")
            if method != "POST" or other == hot or len(other_parts) != len(hot_parts):
                continue
            assert any(a != b and "{" not in a + b for a, b in zip(hot_parts, other_parts, strict=True)), \
                (hot, other)


async def test_the_front_keeps_each_short_paths_match_and_no_more(runtime: Runtime,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A crowd's path is matched once (the parameters then read-only, shared by its requests);
    what is kept is bounded in paths and in length, and a kept path still honours the
    method and ``Expect`` (asked before what is kept)."""
    app = create_app(runtime)
    front = _front_of(app)

    def post(path: str, **headers: str) -> Any:
        return front.match(make_mocked_request("POST", path, headers=headers, app=app))

    first = post("/v1/offers/o1/purchase")
    assert first is not None and post("/v1/offers/o1/purchase") is first
    hot, params = first
    assert hot.route == "/v1/offers/{offer_id}/purchase" and dict(params) == {"offer_id": "o1"}
    with pytest.raises(TypeError):
        params["offer_id"] = "another"  # type: ignore[index]
    assert post("/v1/offers/o1/purchase", Expect="100-continue") is None
    assert front.match(make_mocked_request("GET", "/v1/offers/o1/purchase", app=app)) is None
    assert post("/v1/offers/o1/purchase?x=1") is None and post("/v1/offers/o1/purchase?x=1") is None

    long_id = "x" * 300  # matched (the router would), never kept
    assert post(f"/v1/offers/{long_id}/purchase") is not None
    assert f"/v1/offers/{long_id}/purchase" not in front._seen

    monkeypatch.setattr(hotpath, "_SEEN_MAX", 8)
    for i in range(20):
        assert post(f"/v1/invites/C{i}/redeem") is not None
        assert len(front._seen) <= 8
    assert dict(post("/v1/invites/C19/redeem")[1]) == {"code": "C19"}


@pytest.fixture
async def router_only(runtime: Runtime) -> AsyncIterator[TestClient[Any, Any]]:
    """The same runtime behind aiohttp's plain runner: router and middleware, no front."""
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(runtime)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


_CARRIED = ("Server", "WWW-Authenticate", "Retry-After", "Idempotent-Replayed", "Allow")


async def _answer(response: ClientResponse, sent_id: str | None) -> dict[str, Any]:
    """What must agree between the two ways: status, type, the error body (a success
    body's fields), and the headers an answer carries."""
    raw = await response.read()
    body: Any = None
    if response.content_type == "application/json" and raw:
        decoded = await response.json()
        body = decoded if response.status >= 400 else sorted(decoded)
    request_id = response.headers.get("X-Request-Id", "")
    return {"status": response.status, "type": response.content_type, "body": body,
            "request_id": request_id == sent_id if sent_id else len(request_id) == 32,
            **{name: response.headers.get(name) for name in _CARRIED}}


async def test_both_ways_answer_alike(api: Api, router_only: TestClient[Any, Any], runtime: Runtime,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    api_settings = runtime.settings
    taken: list[str] = []  # the paths the front served itself (the router's server has no front)
    match = HotFront.match

    def spy(front: HotFront, request: web.Request) -> Any:
        found = match(front, request)
        if found is not None:
            taken.append(request.path)
        return found

    monkeypatch.setattr(HotFront, "match", spy)
    assert (await api.call("POST", "/v1/invites", json={"code": "SPRING", "max_uses": 1000}))[0] == 201
    assert (await api.call("POST", "/v1/invites", json={"code": "ONCE", "max_uses": 2}))[0] == 201
    assert (await api.call("POST", "/v1/promos", json={
        "code": "P10", "bonus": {"kind": "percent", "percent": "10"}, "currency": "usd"}))[0] == 201
    assert (await api.call("POST", "/v1/campaigns", json={"campaign_id": "c1", "types": ["tm"]}))[0] == 201
    await upload_csv(api, "c1", "tm", "".join(f"C{i}\n" for i in range(40)))
    assert (await api.call("POST", "/v1/offers", json={
        "offer_id": "o1", "event_id": "ev1", "name": "x", "price": "5", "currency": "usd",
        "inventory_total": 100}))[0] == 201
    read_only = await api.new_key("reader", scopes=["read"])
    other = {"Authorization": f"Bearer {await api.new_tenant('other')}"}
    svc = api.service
    counter = itertools.count()

    def user() -> str:
        return f"u{next(counter)}"

    # (method, path, headers, body: bytes, or a function of a fresh user id giving a JSON object)
    cases: list[tuple[str, str, dict[str, str], Any]] = []
    for path, good in (
        ("/v1/invites/SPRING/redeem", lambda u: {"user_id": u}),
        ("/v1/promos/P10/redeem", lambda u: {"customer_id": u, "base_amount": "19.99"}),
        ("/v1/campaigns/c1/reservations", lambda u: {"type": "tm", "count": 1}),
        ("/v1/offers/o1/purchase", lambda u: {"user_id": u, "quantity": 1}),
    ):
        cases += [
            ("POST", path, svc, good),
            ("POST", path, {**svc, "X-Request-Id": "mine-1"}, good),
            ("POST", path, {**svc, "X-Request-Id": "not ok!"}, good),
            ("POST", path, {}, good),  # no key
            ("POST", path, {"Authorization": "Bearer dg_k1_nope"}, good),
            ("POST", path, {"Authorization": "Basic eA=="}, good),
            ("POST", path, read_only, good),  # lacks the route's scope
            ("POST", path, {**svc, "X-Tenant-Id": "other"}, good),
            ("POST", path, {**svc, "X-Tenant-Id": "acme"}, good),
            ("POST", path, api.admin, good),  # an admin key without a tenant
            ("POST", path, api.as_admin_of("acme"), good),
            ("POST", path, svc, b"{not json"),
            ("POST", path, svc, b"[]"),
            ("POST", path, svc, b""),
            ("POST", path, svc, lambda u, good=good: {**good(u), "surprise": 1}),
            ("POST", path + "?x=1", svc, good),
            ("POST", "/".join(part + "%20x" if i == 3 else part for i, part in enumerate(path.split("/"))),
             svc, good),  # an escape in the id: the router's (its 400, decoded)
            ("GET", path, svc, None),
            ("POST", path, other, good),  # another tenant: its own 404
        ]
    async def chunked(u: str) -> AsyncIterator[bytes]:  # no Content-Length: aiohttp's own read
        yield b'{"user_id": '
        yield json.dumps(u).encode() + b"}"

    limit = api_settings.body_limit_bytes
    cases += [
        ("POST", "/v1/invites/SPRING/redeem", svc, chunked),
        # small on the wire, over the limit decoded: 413 either way
        ("POST", "/v1/invites/SPRING/redeem", {**svc, "Content-Encoding": "gzip"},
         gzip.compress(b'{"user_id": "u", "pad": "' + b"x" * limit + b'"}')),
        ("POST", "/v1/invites/SPRING/redeem", {**svc, "Content-Encoding": "gzip"},
         lambda u: gzip.compress(json.dumps({"user_id": u}).encode())),
        ("POST", "/v1/invites/NOPE/redeem", svc, lambda u: {"user_id": u}),
        ("POST", "/v1/invites/bad!id/redeem", svc, lambda u: {"user_id": u}),
        ("POST", "/v1/invites/SPRING/redeem", svc, lambda u: {"user_id": "bad id"}),
        ("POST", "/v1/invites/{x}/redeem", svc, lambda u: {"user_id": u}),
        ("POST", "/v1/promos/P10/redeem", svc, lambda u: {"customer_id": u, "base_amount": "1.999"}),
        ("POST", "/v1/campaigns/c1/reservations", svc, lambda u: {"type": "nope", "count": 1}),
        ("POST", "/v1/campaigns/ghost/reservations", svc, lambda u: {"type": "tm", "count": 1}),
        ("POST", "/v1/offers/o1/purchase", svc, lambda u: {"user_id": u, "quantity": 0}),
        ("POST", "/v1/offers/ghost/purchase", svc, lambda u: {"user_id": u, "quantity": 1}),
    ]
    ways = {"front": api.client, "router": router_only}
    for method, path, headers, body in cases:
        answers = {}
        for way, client in ways.items():
            data = body(user()) if callable(body) else body
            kw: dict[str, Any] = {"json": data} if isinstance(data, dict) else {"data": data}
            async with client.request(method, path, headers=headers, **kw) as response:
                answers[way] = await _answer(response, headers.get("X-Request-Id")
                                             if headers.get("X-Request-Id") == "mine-1" else None)
        assert answers["front"] == answers["router"], (method, path, headers, body)
    # every plain POST to a hot route took the front (the other cases took the router)
    plain = [path for method, path, _, _ in cases
             if method == "POST" and not any(c in path for c in "?%{")]
    assert taken == plain

    # the same user twice, and a key's replay: the second answers agree too
    for path, body, key in (("/v1/invites/ONCE/redeem", {"user_id": "twice"}, None),
                            ("/v1/offers/o1/purchase", {"user_id": "buyer", "quantity": 1}, "k1")):
        answers = {}
        for way, client in ways.items():
            headers = {**svc, **({"Idempotency-Key": f"{key}-{way}"} if key else {})}
            if key is None:
                body = {"user_id": f"twice-{way}"}
            for _ in range(2):
                async with client.request("POST", path, headers=headers, json=body) as response:
                    answers[way] = await _answer(response, None)
            answers[way] = json.loads(json.dumps(answers[way]).replace(f"twice-{way}", "twice"))
        assert answers["front"] == answers["router"], path
        assert answers["front"]["status"] == (409 if key is None else 201)


async def test_a_body_over_the_limit_once_decoded_is_413_either_way(
        isolated: str, make_settings: Callable[..., Settings]) -> None:
    """A gzip body small on the wire and whole in the buffer (so the front takes it from
    there, ``routing.arrived_body``) that decodes past the limit: aiohttp's ``read``
    answers 413 for it, and so must the front."""
    settings = make_settings(body_limit_bytes=4096)
    async with open_runtime(settings, run_persister=False) as rt:
        taken: list[int] = []
        original = routing.arrived_body

        def spy(request: web.Request, declared_length: int | None, limit: int) -> bytes | None:
            try:
                return original(request, declared_length, limit)
            finally:
                taken.append(limit)

        answers = []
        for server in (ApiServer(create_app(rt)), TestServer(create_app(rt))):
            async with TestClient(server) as client:
                api = Api(client=client, tenant_id="acme", service_key="")
                api.service_key = await api.new_tenant(f"t{len(answers)}")
                assert (await api.call("POST", "/v1/invites", json={"code": "SPRING", "max_uses": 10}))[0] == 201
                with pytest.MonkeyPatch.context() as patch:
                    patch.setattr(routing, "arrived_body", spy)
                    async with client.post("/v1/invites/SPRING/redeem", headers={
                            **api.service, "Content-Encoding": "gzip"}, data=gzip.compress(
                            b'{"user_id": "u", "pad": "' + b"x" * 8000 + b'"}')) as response:
                        answers.append((response.status, (await response.json())["code"]))
        assert answers == [(413, "PAYLOAD_TOO_LARGE")] * 2
        assert taken == [4096, 4096]  # both ways looked in the buffer first
