"""Every dashboard page in headless Chromium (Debian's ``chromium``, driven by Playwright).

The app runs under uvicorn on loopback with the demo warehouse; the browser signs in with a
read-only key through the login form, opens each page, checks what it shows, and saves a
full-page screenshot under the test's temporary folder.  Requests to anything but the
server are counted: the pages must load nothing from elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .apicheck import CAMPAIGN

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"{CHROMIUM} is absent (apt-get install -y chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def page(live_server: str) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        pg = ctx.new_page()
        pg.set_default_timeout(30_000)
        outside: list[str] = []
        pg.on(
            "request",
            lambda req: outside.append(req.url) if not req.url.startswith(live_server) else None,
        )
        pg.outside = outside  # type: ignore[attr-defined]
        try:
            yield pg
        finally:
            ctx.close()
            browser.close()


def test_dashboard_pages(
    page: object,
    live_server: str,
    keys: dict[str, str],
    feedback: dict[str, int],
    tmp_path: Path,
) -> None:
    pg = page
    shots = tmp_path / "screenshots"
    shots.mkdir()

    # not signed in: redirected to the login form; a wrong key is refused
    pg.goto(f"{live_server}/dashboard")
    assert "/dashboard/login" in pg.url
    pg.fill("input[name=key]", "apk_00000000_wrong")
    pg.click("button[type=submit]")
    assert "insufficient key" in pg.content()
    pg.fill("input[name=key]", keys["read:profiles"])
    pg.click("button[type=submit]")
    pg.wait_for_url(f"{live_server}/dashboard")

    # fleet overview: counts, segment sizes and tag distributions as SVG bar charts
    assert pg.locator("h2", has_text="Fleet overview").count() == 1
    assert pg.locator(".card", has_text="vehicles").first.inner_text().startswith("8")
    assert pg.locator("h2", has_text="Tier L1").count() == 1
    assert pg.locator("svg.chart").count() >= 10
    assert pg.locator("h3", has_text="l1_vehicle_tier").count() >= 1
    assert pg.locator("h3", has_text="lifecycle_stage").count() >= 1
    pg.screenshot(path=str(shots / "fleet.png"), full_page=True)

    # a vehicle: current tags with reasons, tag history chart, decisions (or "no data yet")
    vin = pg.locator("main a[href^='/dashboard/entity/']").first.inner_text()
    pg.click(f"text={vin}")
    pg.wait_for_url(f"**/dashboard/entity/{vin}")
    assert pg.locator("td", has_text="l1_vehicle_tier").count() == 1
    assert pg.locator("td", has_text="msrp_cny").count() >= 1  # the reason's inputs
    assert pg.locator("h2:has-text('Tag history') + div svg rect").count() >= 3
    assert pg.locator("h2", has_text="Recent decisions").count() == 1
    pg.screenshot(path=str(shots / "vehicle.png"), full_page=True)

    # its person: VIN and accounts linked, their tags together
    person = pg.locator("main p a[href^='/dashboard/entity/PER-']").first
    if person.count():
        pid = person.inner_text()
        person.click()
        pg.wait_for_url(f"**/dashboard/entity/{pid}")
        assert pg.locator("h2", has_text=f"Person {pid}").count() == 1
        assert pg.locator("td", has_text=vin).count() >= 1
        pg.screenshot(path=str(shots / "person.png"), full_page=True)

    # search box
    pg.fill("header input[name=q]", vin)
    pg.press("header input[name=q]", "Enter")
    pg.wait_for_url(f"**/dashboard/entity/{vin}")

    # strategies: list (or a clear "no data yet") and the A/B campaign's funnel and intervals
    pg.click("header nav >> text=Strategies")
    pg.wait_for_url("**/dashboard/strategies")
    text = pg.inner_text("main")
    assert ("audience" in text) or ("no data yet" in text)
    pg.screenshot(path=str(shots / "strategies.png"), full_page=True)
    pg.goto(f"{live_server}/dashboard/strategies/{CAMPAIGN}")
    main = pg.inner_text("main")
    assert "Four-layer funnel" in main
    assert pg.locator("text=arm: treatment").count() == 1
    assert "conversion: 12" in pg.content() and "conversion: 5" in pg.content()
    assert "treatment − control" in main
    assert "60.0%" in pg.content() and "25.0%" in pg.content()
    pg.screenshot(path=str(shots / "strategy.png"), full_page=True)

    # delivery log: decisions with suppressions and reasons, or "no data yet"
    pg.click("header nav >> text=Delivery log")
    pg.wait_for_url("**/dashboard/delivery")
    main = pg.inner_text("main")
    if "No decisions logged yet" not in main:
        assert pg.locator("th", has_text="reason").count() == 1
        assert pg.locator("svg.chart").count() >= 1
    pg.screenshot(path=str(shots / "delivery.png"), full_page=True)

    # the API reference page is local too
    pg.goto(f"{live_server}/docs")
    assert "/v1/profiles/{kind}/{ident}" in pg.inner_text("main")

    assert pg.outside == [], pg.outside  # type: ignore[attr-defined]
    for name in ("fleet", "vehicle", "strategies", "strategy", "delivery"):
        assert (shots / f"{name}.png").stat().st_size > 10_000
    print(f"screenshots in {shots}")


def test_demo_mode_reads_without_a_key(demo_db: Path) -> None:
    from fastapi.testclient import TestClient

    from autopersona.api.app import create_app
    from autopersona.api.config import ApiSettings

    # its own TestClient: the page is rendered server-side, no browser needed
    with TestClient(create_app(ApiSettings(demo=True, warehouse=":memory:"))) as c:
        r = c.get("/dashboard", follow_redirects=False)
        assert r.status_code == 200 and "demo" not in r.url.path
        assert "no data yet" in r.text
        assert c.get("/v1/tags").status_code == 401  # the API still needs a key
