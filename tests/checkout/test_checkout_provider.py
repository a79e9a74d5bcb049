"""``serve`` needs an explicit payment provider: unset, or Stripe without its key or
webhook secret, is one line naming the variable and exit status 2, before any store is
contacted. Commands that take no payments run with a provider that refuses them."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from dropgate.checkout.payments.base import CheckoutRequest, PaymentProviderError
from dropgate.checkout.payments.factory import Unconfigured, build_provider
from dropgate.cli import main
from dropgate.settings import Settings
from tests.support.offers import create_offer, pg_offer, purchase

CLOSED_REDIS = "redis://127.0.0.1:1/0"  # should serve get as far as the stores, it fails otherwise


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> pytest.MonkeyPatch:
    for name in [k for k in os.environ if k.startswith("DROPGATE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DROPGATE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DROPGATE_REDIS_URL", CLOSED_REDIS)
    monkeypatch.setenv("DROPGATE_DATABASE_URL", "postgresql://u@127.0.0.1:1/db")
    return monkeypatch


@pytest.mark.parametrize(("env", "line"), [
    ({}, "dropgate: DROPGATE_PAYMENT_PROVIDER is not set: set it to 'stripe' (real payments, with "
         "DROPGATE_STRIPE_API_KEY and DROPGATE_STRIPE_WEBHOOK_SECRET) or 'sandbox' (nothing is charged)"),
    ({"DROPGATE_PAYMENT_PROVIDER": "stripe"},
     "dropgate: payment provider 'stripe' needs DROPGATE_STRIPE_API_KEY "
     "(or DROPGATE_PAYMENT_PROVIDER=sandbox, where nothing is charged)"),
    ({"DROPGATE_PAYMENT_PROVIDER": "stripe", "DROPGATE_STRIPE_API_KEY": "sk_test_x"},
     "dropgate: payment provider 'stripe' needs DROPGATE_STRIPE_WEBHOOK_SECRET "
     "(the signing secret of the webhook endpoint /v1/webhooks/stripe)"),
    ({"DROPGATE_PAYMENT_PROVIDER": "stripe", "DROPGATE_STRIPE_API_KEY": "sk_test_x",
      "DROPGATE_STRIPE_WEBHOOK_SECRET": "whsec_x", "DROPGATE_HOLD_TTL_S": "600"},
     "dropgate: DROPGATE_HOLD_TTL_S must be from 1860 to 86340 with payment provider 'stripe' "
     "(a Checkout session lasts 30 min to 24 h), got 600"),
    ({"DROPGATE_PAYMENT_PROVIDER": "paypal"},
     None),  # a value outside the two: the settings parser's own one line
])
def test_serve_refuses_to_start_without_a_usable_provider(
        clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        env: dict[str, str], line: str | None) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    assert main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    if line is None:
        assert err.startswith("dropgate: DROPGATE_PAYMENT_PROVIDER must be "), err
    else:
        assert err == line + "\n"  # not the closed Redis: the provider is checked first


def test_other_commands_run_without_a_provider_and_it_refuses_payments(
        make_settings: Callable[..., Settings]) -> None:
    provider = build_provider(make_settings(payment_provider=None))
    assert isinstance(provider, Unconfigured) and provider.name == "none"


async def test_a_runtime_without_a_provider_sells_nothing(
        make_settings: Callable[..., Settings], isolated: str) -> None:
    from aiohttp.test_utils import TestClient

    from dropgate.http.app import create_app
    from dropgate.runtime import open_runtime
    from tests.conftest import Api
    from tests.support.apiserver import ApiServer

    async with open_runtime(make_settings(payment_provider=None), run_persister=False) as rt:
        client = TestClient(ApiServer(create_app(rt)))
        await client.start_server()
        try:
            api = Api(client=client, tenant_id="acme", service_key="")
            api.service_key = await api.new_tenant("acme")
            await create_offer(api, "o1", 3)
            status, body = await purchase(api, "o1", "u1")
            assert (status, body["code"]) == (503, "PAYMENT_PROVIDER_UNAVAILABLE"), body
            state = await rt.offers.read("acme", "o1")
            assert (state.reserved, state.sold) == (0, 0)  # the hold was released
            await rt.new_persister(name="test-persister").drain()
            row = await pg_offer(rt, "acme", "o1")
            assert (row["reserved"], row["sold"], row["rows_reserved"], row["rows_sold"]) == (0, 0, 0, 0)
            assert row["purchases"] == 1  # the released purchase, recorded as such
        finally:
            await client.close()
    request = CheckoutRequest(purchase_id="pu_1", tenant_id="t", offer_id="o", user_id="u", quantity=1,
                              unit_amount_minor=100, currency="usd", name="x", expires_at_s=0,
                              success_url="https://x", cancel_url="https://x")
    with pytest.raises(PaymentProviderError, match="DROPGATE_PAYMENT_PROVIDER is not set"):
        await Unconfigured().create_checkout(request)
