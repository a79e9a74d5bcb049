"""The buyer's walk in a real browser (Debian's headless chromium, driven by selenium
through chromium-driver) against a real ``dropgate serve --port``: buy, open the
sandbox's checkout page, click Pay, land on dropgate's done page, see ``paid``.
The server's startup line names the provider and warns that nothing is charged."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from dropgate.persistence.persister import Persister
from dropgate.runtime import Runtime
from dropgate.settings import Settings
from tests.conftest import ADMIN_KEY
from tests.engine.test_actors_processes import _env, _free_port, _wait_ready
from tests.support.offers import pg_offer
from tests.support.processes import stop_processes

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def port() -> int:
    return _free_port()


@pytest.fixture
def settings(make_settings: Callable[..., Settings], port: int) -> Settings:
    # the pages and checkout links must name the address the browser reaches
    return make_settings(host="127.0.0.1", port=port, public_url=f"http://127.0.0.1:{port}")


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER} are needed: `make browser` installs them "
                    "(apt-get install chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="dropgate-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        subprocess.run(["rm", "-rf", profile], check=False)


def _status_is(expected: str) -> Callable[[WebDriver], bool]:
    def check(driver: WebDriver) -> bool:
        found = driver.find_elements(By.ID, "status")
        return bool(found) and found[0].text == expected
    return check


@pytest.mark.slow
async def test_buy_pay_and_see_paid_in_a_real_browser(
        runtime: Runtime, persister: Persister, settings: Settings, port: int, browser: WebDriver,
        tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    env = _env(settings) | {"DROPGATE_PORT": str(port), "DROPGATE_HOST": "127.0.0.1",
                            "DROPGATE_PUBLIC_URL": f"http://127.0.0.1:{port}",
                            "DROPGATE_LOG_LEVEL": "WARNING"}
    assert env["DROPGATE_PAYMENT_PROVIDER"] == "sandbox"
    with log.open("wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "dropgate", "serve", "--no-persister"],
                                  env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    try:
        async with aiohttp.ClientSession() as http:
            await _wait_ready(http, url, server, log)

            async def call(method: str, path: str, headers: dict[str, str], body: Any) -> Any:
                async with http.request(method, url + path, json=body, headers=headers) as r:
                    assert r.status in (200, 201), await r.text()
                    return await r.json()

            await call("POST", "/v1/tenants", admin, {"tenant_id": "acme", "name": "Acme"})
            key = (await call("POST", "/v1/keys", admin, {"role": "service", "tenant_id": "acme",
                                                                 "name": "svc"}))["key"]
            service = {"Authorization": f"Bearer {key}"}
            await call("POST", "/v1/offers", service, {
                "offer_id": "o1", "event_id": "ev1", "name": "Front row", "price": "25.00",
                "currency": "usd", "inventory_total": 3, "max_per_order": 3})
            held = await call("POST", "/v1/offers/o1/purchase", service, {"user_id": "u1", "quantity": 2})
        assert held["checkout_url"].startswith(url + "/v1/sandbox/checkout/")

        def walk() -> str:
            browser.get(held["checkout_url"])
            assert "Sandbox checkout" in browser.page_source
            browser.find_element(By.XPATH, "//button[normalize-space()='Pay']").click()
            WebDriverWait(browser, 60, poll_frequency=0.2).until(_status_is("paid"))
            return browser.current_url

        landed = await asyncio.to_thread(walk)
        assert landed.startswith(f"{url}/checkout/done?tenant_id=acme&purchase_id={held['purchase_id']}")
        assert f"session_id={held['checkout_session_id']}" in landed
        assert browser.find_element(By.ID, "purchase").text == held["purchase_id"]
        assert browser.find_element(By.ID, "offer").text == "Front row"
    finally:
        stop_processes([server], timeout_s=30)
    output = log.read_text()
    serving = next(line for line in output.splitlines() if line.startswith("dropgate: serving on"))
    assert "(payments sandbox," in serving, serving
    assert "WARNING: payment provider 'sandbox': nothing is charged" in output, output
    assert server.returncode == 0, output

    # Redis says sold, and PostgreSQL agrees once the persister drained
    state = await runtime.offers.read("acme", "o1")
    assert (state.total, state.reserved, state.sold) == (3, 0, 2)
    assert (await runtime.offers.purchase("acme", held["purchase_id"])).status == "paid"
    await persister.drain()
    row = await pg_offer(runtime, "acme", "o1")
    assert (row["reserved"], row["sold"], row["rows_reserved"], row["rows_sold"]) == (0, 2, 0, 2), row
