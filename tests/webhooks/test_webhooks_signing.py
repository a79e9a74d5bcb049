"""The signature scheme: the server's signer and the client's verifier agree, and the
verifier refuses a changed body, another secret, a stale timestamp and bad headers."""

from __future__ import annotations

import time

import pytest

from dropgate.client.errors import InvalidSignature
from dropgate.client.webhooks import verify, verify_signature
from dropgate.webhooks.signing import new_secret, signature_header

BODY = b'{"id":"evt_1_1-0","type":"invite.redeemed","created":"2026-01-01T00:00:00Z","tenant_id":"t","data":{}}'


def test_round_trip() -> None:
    secret = new_secret()
    assert verify(BODY, signature_header(secret, BODY), secret)["id"] == "evt_1_1-0"


@pytest.mark.parametrize("case", ["body", "secret", "stale", "future", "no_v1", "no_t", "bad_t"])
def test_refusals(case: str) -> None:
    secret = new_secret()
    header = signature_header(secret, BODY)
    now = int(time.time())
    body = BODY
    if case == "body":
        body = BODY.replace(b'"t"', b'"u"')
    elif case == "secret":
        secret = new_secret()
    elif case == "stale":
        header = signature_header(secret, BODY, timestamp=now - 301)
    elif case == "future":
        header = signature_header(secret, BODY, timestamp=now + 301)
    elif case == "no_v1":
        header = f"t={now}"
    elif case == "no_t":
        header = header.split(",", 1)[1]
    elif case == "bad_t":
        header = "t=abc," + header.split(",", 1)[1]
    with pytest.raises(InvalidSignature):
        verify_signature(body, header, secret)


def test_tolerance_can_be_lifted_and_several_v1_accepted() -> None:
    secret = new_secret()
    old = signature_header(secret, BODY, timestamp=1_000_000)
    verify_signature(BODY, old, secret, tolerance_s=0)
    t, v1 = old.split(",")
    verify_signature(BODY, f"{t},v1=deadbeef,{v1}", secret, tolerance_s=0)
