"""Schema-driven API tests: schemathesis against the live server's own ``/openapi.json``.

Every operation gets generated requests, valid and invalid, sent to a real
``dropgate serve`` on real Redis and PostgreSQL with the key its
``x-dropgate-auth`` names; each answer must be no 5xx, a status the document
lists for the operation, the declared content type and headers, and a body that
matches the declared schema; invalid requests must be refused. ``make test`` runs
``DROPGATE_FUZZ_EXAMPLES`` (default 100) cases per operation, derandomized;
``make fuzz`` runs 2,000 with fresh randomness. Why 100 here: at 200 this file was a fifth
of the whole suite (120 of 614 s on a fast host), and on a host several times slower the
suite ran past the 20 minutes CI allows it; 100 takes about 70 s.
"""

from __future__ import annotations

import os
import re
from typing import Any

import msgspec
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from yarl import URL

from dropgate.client import Dropgate
from dropgate.http.openapi import build_openapi
from dropgate.http.routes import ROUTE_TABLES
from dropgate.ids import ID_PATTERN
from dropgate.models.ledger import OrderItem
from dropgate.models.promos import FixedBonus
from tests.client.conftest import LiveServer

EXAMPLES = int(os.environ.get("DROPGATE_FUZZ_EXAMPLES", "100"))
RANDOM = os.environ.get("DROPGATE_FUZZ_RANDOM", "") not in ("", "0")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection]
# Short ids the generator tends to produce, created beforehand (as tenants, invite and
# promo codes, offers and their events, campaigns with codes, orders) so that generated
# requests also reach existing entities, not only 404s.
SEEDED_CODES = ("0", "00", "A", "a", "_", "-", "0-", "AA", "00000")
_ID = re.compile(ID_PATTERN)


class FuzzTenant:
    def __init__(self, tenant_id: str, service_key: str) -> None:
        self.tenant_id = tenant_id
        self.service_key = service_key


@pytest.fixture(scope="session")
def fuzz_tenant(live: LiveServer) -> FuzzTenant:
    with Dropgate(live.url, live.admin_key, retries=0) as admin:
        tenant_id = "fuzz" + os.urandom(4).hex()
        admin.tenants.create(tenant_id, name="fuzz")
        key = admin.keys.create("service", tenant_id=tenant_id, name="svc")
        tenant = admin.for_tenant(tenant_id)
        for code in SEEDED_CODES:
            tenant.invites.create(code, max_uses=1_000_000)
            admin.tenants.create(code, name="seeded")  # so tenant routes find some too
            tenant.promos.create(code, bonus=FixedBonus(amount="1"), currency="usd",
                                 per_customer_limit=2_000_000_000)
            tenant.offers.create(code, event_id=code, name="seeded", price="1", currency="usd",
                                 inventory_total=1_000_000_000, max_per_order=10_000)
            tenant.codes.upload(code, type="a", codes=SEEDED_CODES)
            tenant.orders.create(code, items=[OrderItem(sku=code, quantity=1)], total="1",
                                 currency="usd")
    return FuzzTenant(tenant_id, key.key)


# The document the server builds from its route table; a test below checks that the live
# server serves exactly this. (schemathesis' lazy ``from_fixture`` loader does not work
# with pytest 9, so the schema is loaded at import time rather than from the live URL.)
DOCUMENT = build_openapi([spec for table in ROUTE_TABLES for spec in table.specs])
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_the_live_server_serves_the_fuzzed_document(live: LiveServer) -> None:
    with Dropgate(live.url, live.admin_key, retries=0) as client:
        assert client.openapi() == msgspec.json.decode(msgspec.json.encode(DOCUMENT))


def _auth(case: Any, live: LiveServer, tenant: FuzzTenant) -> dict[str, str]:
    """The key the operation's ``x-dropgate-auth`` names."""
    auth = case.operation.definition.raw.get("x-dropgate-auth", "public")
    if auth == "admin":
        return {"Authorization": f"Bearer {live.admin_key}"}
    if auth == "tenant":
        # a generated, valid X-Tenant-Id names some other tenant (403 every time): make it
        # the key's own tenant so the operation itself runs; invalid ones stay as generated
        sent = (case.headers or {}).get("X-Tenant-Id")
        if isinstance(sent, str) and _ID.match(sent):
            case.headers["X-Tenant-Id"] = tenant.tenant_id
        return {"Authorization": f"Bearer {tenant.service_key}"}
    return {}


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
          suppress_health_check=list(HealthCheck), print_blob=True)
def test_every_operation_answers_as_documented(case: Any, live: LiveServer, fuzz_tenant: FuzzTenant) -> None:
    headers = _auth(case, live, fuzz_tenant)
    # a generated query parameter that no URL carries (e.g. an empty list) never reaches the
    # server: a "schema-violating" case made of it is not negative on the wire, so the
    # negative-data check does not apply to it (every other check still does)
    # likewise a text body (a CSV upload) generated as a number: it is sent as its text, a
    # valid upload on the wire (make fuzz: the code "818734077780272384", rightly taken)
    excluded = [negative_data_rejection] if _unsent_query(case, live, headers) or _text_sent_as_text(case) \
        else None
    case.call_and_validate(base_url=live.url, headers=headers, checks=CHECKS, excluded_checks=excluded,
                           timeout=10)


def _text_sent_as_text(case: Any) -> bool:
    """Whether the case's body is for a text/* media type but was generated as another JSON
    type (a number, a boolean): serialized, it is text like any valid body."""
    media_type = case.media_type or ""
    return media_type.startswith("text/") and not isinstance(case.body, (str, NotSet))


def _unsent_query(case: Any, live: LiveServer, headers: dict[str, str]) -> bool:
    """Whether a key of the case's query is missing from the URL actually requested."""
    if not case.query:
        return False
    kwargs = case.as_transport_kwargs(base_url=live.url, headers=headers)
    prepared = requests.Request(method=kwargs["method"], url=kwargs["url"], params=kwargs.get("params")).prepare()
    sent = set(URL(prepared.url or "").query.keys())
    return any(key not in sent for key in case.query)
