"""``dropgate keys list``, ``codes export``, ``purchases list``: the API's list queries on
the command line: a table, ``--json`` (JSON Lines), CSV when piped; bad arguments are
one line on stderr with exit status 2."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
from typing import Any

from dropgate.persistence.persister import Persister
from dropgate.settings import Settings, env_name
from tests.conftest import Api
from tests.engine.test_codes_csv import post_csv


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPGATE_")}
    for name in ("redis_url", "database_url", "key_prefix", "database_schema", "partitions",
                 "admin_key", "data_dir"):
        env[env_name(name)] = str(getattr(settings, name))
    return env


async def _cli(settings: Settings, *argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dropgate", *argv, env=_env(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


async def _seed(api: Api, persister: Persister) -> list[str]:
    status, body = await api.call("POST", "/v1/offers", json={
        "offer_id": "o1", "event_id": "e1", "name": "Seat", "price": "12.50", "currency": "usd",
        "inventory_total": 10})
    assert status == 201, body
    purchases = []
    for user in ("u1", "u2", "u3"):
        response = await api.client.post("/v1/offers/o1/purchase", json={"user_id": user},
                                         headers=api.service)
        assert response.status == 201, await response.text()
        purchases.append((await response.json())["purchase_id"])
        # a list is newest first by (created, purchase id); two purchases of one millisecond tie on the
        # first and take the id's random part's order (on a fast host, one run in a few dozen)
        await asyncio.sleep(0.002)
    status, body = await post_csv(api, "c1", b"code,type\nB2,tm\nA1,tm\nC3,ext\n")
    assert status == 200, body
    status, body = await api.call("POST", "/v1/campaigns/c1/reservations", json={"type": "tm", "count": 2})
    assert status == 200 and sorted(body["codes"]) == ["A1", "B2"], body
    status, body = await api.call("POST", "/v1/campaigns/c1/assign",
                                  json={"codes": ["A1"], "assigned_to": "alice"})
    assert status == 200, body
    await persister.drain()
    return purchases


async def test_keys_list(api: Api, persister: Persister, settings: Settings) -> None:
    await api.new_key("second")
    await persister.drain()
    rc, out, err = await _cli(settings, "keys", "list", "--tenant", "acme", "--json")
    assert (rc, err) == (0, "")
    keys = _lines(out)
    assert [k["name"] for k in keys] == ["second", "svc"]  # newest first
    assert all("key" not in k and k["tenant_id"] == "acme" for k in keys)
    rc, out, _ = await _cli(settings, "keys", "list", "--role", "service", "--limit", "1")
    lines = out.splitlines()
    assert rc == 0 and lines[0].split() == ["key_id", "role", "tenant_id", "name", "created_at", "revoked_at"]
    assert len(lines) == 2 and "second" in lines[1]


async def test_purchases_list_by_offer(api: Api, persister: Persister, settings: Settings) -> None:
    purchases = await _seed(api, persister)
    rc, out, err = await _cli(settings, "purchases", "list", "--tenant", "acme", "--offer", "o1",
                              "--json")
    assert (rc, err) == (0, "")
    rows = _lines(out)
    assert [p["purchase_id"] for p in rows] == list(reversed(purchases))
    assert {p["amount"] for p in rows} == {"12.50"} and {p["status"] for p in rows} == {"pending"}
    rc, out, _ = await _cli(settings, "purchases", "list", "--tenant", "acme", "--offer", "o2")
    assert rc == 0 and out.splitlines()[-1] == "(none)"
    rc, out, _ = await _cli(settings, "purchases", "list", "--tenant", "acme", "--user", "u2")
    assert rc == 0 and len(out.splitlines()) == 2 and purchases[1] in out


async def test_codes_export(api: Api, persister: Persister, settings: Settings) -> None:
    await _seed(api, persister)
    rc, out, err = await _cli(settings, "codes", "export", "--tenant", "acme", "--campaign", "c1")
    assert (rc, err) == (0, "")  # piped: the HTTP export's CSV, in code order
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["code", "type", "status", "reserve_id", "reserved_at", "assigned_at",
                       "assigned_to"]
    assert [(r[0], r[1], r[2]) for r in rows[1:]] == [
        ("A1", "tm", "assigned"), ("B2", "tm", "reserved"), ("C3", "ext", "available")]
    assert rows[1][6] == "alice"
    rc, out, _ = await _cli(settings, "codes", "export", "--tenant", "acme", "--campaign", "c1",
                            "--type", "tm", "--status", "reserved", "--json")
    assert rc == 0 and [c["code"] for c in _lines(out)] == ["B2"]


async def test_bad_arguments_are_one_line_exit_2(api: Api, settings: Settings) -> None:
    cases = [
        (("purchases", "list", "--tenant", "acme", "--offer", "bad id"), "--offer"),
        (("purchases", "list", "--tenant", "nobody"), "no tenant 'nobody'"),
        (("keys", "list", "--tenant", "nobody"), "no tenant 'nobody'"),
        (("keys", "list", "--limit", "0"), "--limit must be at least 1"),
        (("codes", "export", "--tenant", "acme", "--campaign", "nope"), "campaign"),
        (("codes", "export", "--tenant", "acme", "--campaign", "c1", "--type", "BAD TYPE"), "--type"),
    ]
    for argv, words in cases:
        rc, out, err = await _cli(settings, *argv)
        assert rc == 2 and out == "", (argv, out, err)
        assert err.startswith("dropgate: ") and err.count("\n") == 1 and words in err, (argv, err)
