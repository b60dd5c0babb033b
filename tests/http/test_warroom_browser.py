"""The war room in a real browser: Debian's headless Chromium loads `/` from a real server
while orders come in, and the stock and charts move with no console error."""

from __future__ import annotations

import json
import os
import random
import shutil
import threading
import time

import httpx
import pytest

from saleday.http import HttpSettings
from saleday.http.auth import issue_token
from saleday.http.webhook import sign
from tests.http.browser import Browser, find_chromium
from tests.http.conftest import SECRETS, now_ms
from tests.http.live_server import running_app

pytestmark = pytest.mark.browser

SKUS = {"sku-phone": 400, "sku-tv": 250, "sku-shoes": 150}
AVAILABLE = "(sku) => document.querySelector(`#skus tr[data-sku='${sku}'] .available`)?.textContent"


@pytest.fixture
def chromium() -> str:
    path = find_chromium()
    if path is None:
        reason = "chromium is not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("SALEDAY_REQUIRE_BROWSER", "") == "1":
            pytest.fail(f"{reason}, and SALEDAY_REQUIRE_BROWSER=1 forbids skipping", pytrace=False)
        pytest.skip(reason)
    return path


class Shoppers(threading.Thread):
    """Places one-unit orders over HTTP until stopped, paying most of them by callback."""

    def __init__(self, url: str, settings: HttpSettings) -> None:
        super().__init__(daemon=True)
        self.http = httpx.Client(base_url=url, timeout=10)
        self.tokens = [issue_token(f"shopper-{i}", settings) for i in range(40)]
        self.stop = threading.Event()
        self.placed = 0
        self.failures: list[str] = []
        self.rng = random.Random(11)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            sku = self.rng.choice(list(SKUS))
            r = self.http.post("/v1/orders", json={"lines": [{"sku": sku, "qty": 1}]},
                               headers={"Authorization": f"Bearer {self.tokens[n % 40]}"})
            if r.status_code != 201:
                self.failures.append(f"{r.status_code} {r.text[:200]}")
            else:
                self.placed += 1
                if n % 5:
                    self.pay(r.json(), n)
            self.stop.wait(0.03)

    def pay(self, order: dict, n: int) -> None:
        raw = json.dumps({"id": f"evt-{n}", "type": "payment.succeeded",
                          "order_id": order["order_id"], "payment_id": f"pay-{n}",
                          "amount_cents": order["total_cents"]}).encode()
        r = self.http.post("/v1/payments/callback", content=raw, headers={
            "Content-Type": "application/json",
            "Saleday-Signature": sign(SECRETS["webhook_secret"], int(time.time()), raw)})
        if r.status_code != 200:
            self.failures.append(f"callback {r.status_code} {r.text[:200]}")


def open_sale(url: str) -> None:
    op = {"Authorization": f"Bearer {SECRETS['operator_token']}"}
    with httpx.Client(base_url=url, timeout=10) as http:
        for sku, units in SKUS.items():
            assert http.post(f"/v1/admin/skus/{sku}/stock", json={"qty": units},
                             headers=op).status_code == 200
            r = http.put(f"/v1/admin/skus/{sku}/sale", headers=op, json={
                "tiers": [{"units": 50, "price_cents": 9900}, {"units": 0, "price_cents": 12900}],
                "per_user_limit": 0, "start_ms": now_ms() - 1000, "end_ms": now_ms() + 3_600_000})
            assert r.status_code == 200, r.text


def test_the_war_room_moves_live_in_chromium(chromium, tmp_path):
    """With orders coming in, the page shows each hot SKU's stock counting down as it is
    pushed, its charts grow, every target tile is judged, and the console stays clean."""
    settings = HttpSettings(**SECRETS, rate_per_s=1000, rate_burst=1000)
    data = tmp_path / "data"
    data.mkdir()
    with running_app(data, settings) as url, Browser.start(tmp_path) as browser:
        open_sale(url)
        shoppers = Shoppers(url, settings)
        shoppers.start()
        try:
            page = browser.page()
            page.viewport(1920, 1080)                            # a wall screen
            page.navigate(f"{url}/#token={SECRETS['operator_token']}")
            page.wait_for("document.querySelectorAll('#skus tr[data-sku]').length === 3")
            assert page.evaluate("location.hash") == ""           # the token left the address
            before = {sku: page.evaluate(f"({AVAILABLE})('{sku}')") for sku in SKUS}
            rates_before = page.evaluate(
                "document.querySelector('#chart-rates path.orders')?.getAttribute('d') || ''")
            page.wait_for(f"Object.entries({json.dumps(before)}).every("
                          f"([sku, n]) => ({AVAILABLE})(sku) !== n)", timeout_s=20)
            page.wait_for("document.getElementById('push-p99').textContent.endsWith('ms')")
            # Latency, payments and oversell are judged; no coupon is in a wallet yet.
            page.wait_for("document.querySelectorAll('#targets li.ok, #targets li.bad')"
                          ".length === 3", timeout_s=20)
            assert page.evaluate("document.querySelector('[data-target=coupon_redemption]')"
                                 ".textContent").endswith("NO DATA")
            page.wait_for("(document.querySelector('#chart-rates path.orders')?.getAttribute('d')"
                          f" || '') !== {json.dumps(rates_before)}")
            page.wait_for("document.querySelector('#chart-latency path.p99')"
                          "?.getAttribute('d').split(' ').length > 2", timeout_s=20)
            page.wait_for("document.getElementById('link').textContent === 'live'")
            page.wait_for("Number(document.getElementById('orders-placed').textContent"
                          ".replace(/,/g, '')) > 0")
            after = {sku: int(page.evaluate(f"({AVAILABLE})('{sku}')").replace(",", ""))
                     for sku in SKUS}
            assert page.evaluate("document.documentElement.scrollHeight") <= 1080   # fits
            png = page.screenshot(tmp_path / "warroom.png")
            shutil.copyfile(tmp_path / "warroom.png", "/tmp/warroom.png")
            errors = list(page.errors)
            page.close()
        finally:
            shoppers.stop.set()
            shoppers.join(10)
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert all(after[sku] < SKUS[sku] for sku in SKUS)
    assert shoppers.placed > 0 and shoppers.failures == []
    assert errors == []
