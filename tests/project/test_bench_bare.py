"""``benchmarks.bare`` does a hot request's whole domain work, as dropgate does (#19).

Its CPU per request is read as "dropgate less its request glue", which holds only while
its handlers answer the hot routes as dropgate does: the same status and fields for the
same request, the engine's effects made (an Idempotency-Key replayed byte for byte,
units held, a code reserved). Both servers run over one runtime, set up as the benchmark
sets them up (``benchmarks.revisions.prepare``), and are sent the requests wrk sends.
Not a measurement: nothing here is timed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientSession

from benchmarks.bare import bare_app
from benchmarks.revisions import OFFER, PATHS, TENANT, Server, prepare
from dropgate.http.app import create_app
from dropgate.runtime import Runtime
from tests.conftest import ADMIN_KEY
from tests.support.apiserver import ApiServer


@pytest.fixture
async def servers(runtime: Runtime) -> AsyncIterator[tuple[str, str, str]]:
    """dropgate's server and the bare one over one runtime, with the benchmark's data: their
    URLs and the service key."""
    real, bare = ApiServer(create_app(runtime)), ApiServer(bare_app(runtime))
    await real.start_server()
    await bare.start_server()
    try:
        url = str(real.make_url("")).rstrip("/")
        server = Server("dropgate", None, url)  # type: ignore[arg-type]  # no process: served here
        await prepare(server, ADMIN_KEY, list(PATHS), 20)
        yield url, str(bare.make_url("")).rstrip("/"), server.key
    finally:
        await bare.close()
        await real.close()


async def _send(http: ClientSession, url: str, path: str, key: str, user: str,
                idempotency_key: str | None = None) -> tuple[int, dict[str, Any], bytes]:
    route = PATHS[path]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    async with http.post(url + route.route, data=route.body.replace("@", user), headers=headers) as r:
        raw = await r.read()
        return r.status, json.loads(raw), raw


@pytest.mark.parametrize("path", list(PATHS))
async def test_bare_answers_a_hot_request_as_dropgate_does(servers: tuple[str, str, str], path: str) -> None:
    real_url, bare_url, key = servers
    async with ClientSession() as http:
        real = await _send(http, real_url, path, key, "u-real")
        bare = await _send(http, bare_url, path, key, "u-bare")
        assert real[0] == bare[0] and 200 <= bare[0] < 300, (real, bare)
        assert sorted(real[1]) == sorted(bare[1]), (real[1], bare[1])
        if path == "codes":  # a code each, and not the same one: the engine reserved it
            assert len(real[1]["codes"]) == len(bare[1]["codes"]) == 1
            assert real[1]["codes"] != bare[1]["codes"]
        # the same user again: the engine's own refusal (a second redemption) or answer, alike
        again_real = await _send(http, real_url, path, key, "u-real")
        again_bare = await _send(http, bare_url, path, key, "u-bare")
        assert again_real[0] == again_bare[0], (again_real, again_bare)
        assert again_real[1].get("code") == again_bare[1].get("code"), (again_real, again_bare)


async def test_bare_purchase_holds_units_and_replays_by_key(servers: tuple[str, str, str], runtime: Runtime) -> None:
    _, bare_url, key = servers
    before = await runtime.offers.read(TENANT, OFFER)
    async with ClientSession() as http:
        first = await _send(http, bare_url, "offers", key, "buyer", idempotency_key="k-1")
        repeat = await _send(http, bare_url, "offers", key, "buyer", idempotency_key="k-1")
    assert first[0] == 201 and first[1]["status"] == "pending", first
    assert repeat[0] == 201 and repeat[2] == first[2]  # replayed byte for byte, not bought twice
    after = await runtime.offers.read(TENANT, OFFER)
    assert after.reserved == before.reserved + 1
