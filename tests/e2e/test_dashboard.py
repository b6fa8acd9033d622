"""The dashboard at /ui in a real headless Chromium (Debian's ``chromium``, driven by
Playwright): log in with the admin key, open every page over a server that has seen real
traffic, check that what the API knows is what the page shows, and that the browser logged
no error. A screenshot of each page is kept under ``test-artifacts/dashboard/``.

Needs ``/usr/bin/chromium`` (``apt-get install -y chromium``) and the ``playwright`` Python
package (the ``dev`` extra; it drives the system Chromium, no browser download). Without
them the test is skipped, except with ``CI=true``, where it fails.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backends import unavailable
from tests.e2e.server import ADMIN_KEY, PUBLISHABLE_KEY, SegueServer

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PUB = {"Authorization": f"Bearer {PUBLISHABLE_KEY}"}
KPIS = "/v1/reports/kpis"
EXPERIMENT = """
experiments:
  - name: hero-test
    placement: home_hero
    holdout: 0.5
"""


def _require_browser() -> Any:
    """Playwright's sync API, or skip (fail under CI=true) saying what to install."""
    missing = []
    try:
        from playwright import sync_api
    except ImportError:
        sync_api = None
        missing.append("the playwright package (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install -y chromium)")
    if missing:
        # fails in CI (it must never pass by skipping), skips with the fix elsewhere
        unavailable("the dashboard browser test needs " + " and ".join(missing))
    return sync_api


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = _require_browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        # Playwright gives every launch a fresh, empty profile (its own user-data-dir)
        launched = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield launched
        launched.close()


def _page(browser: Any, problems: list[str]) -> Any:
    """A new tab that records every console error or warning and uncaught exception."""
    context = browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on(
        "console",
        lambda m: (
            problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning")
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    return page


def _login(page: Any, url: str) -> None:
    page.goto(url + "/ui")
    page.fill("#admin-key", ADMIN_KEY)
    page.click("#login button[type=submit]")
    page.wait_for_selector("#nav", state="visible")


@pytest.fixture(scope="module")
def srv(tmp_path_factory) -> Iterator[SegueServer]:
    folder = tmp_path_factory.mktemp("dashboard")
    config = folder / "segue.yaml"
    config.write_text(EXPERIMENT)
    with SegueServer(folder / "data", args=["--config", str(config)]) as server:
        _traffic(server)
        yield server


def _traffic(srv: SegueServer) -> None:
    """A little of everything: catalog, a consenting shopper, decisions with feedback,
    consent from California, an access request."""
    items = [
        {"item_id": f"sku-{i}", "title": f"Shoe {i}", "category": "Shoes", "price": 20.0 + i}
        for i in range(12)
    ]
    with srv.admin() as a:
        assert a.post("/v1/catalog/items", json={"items": items}).status_code == 200
    consent = {"region": "DE", "categoryPreferences": {"personalization": True, "analytics": True}}
    shopper = [
        {
            "type": "page",
            "anonymousId": "anon-ada",
            "name": "Home",
            "context": {"consent": consent},
        },
        {
            "type": "identify",
            "anonymousId": "anon-ada",
            "userId": "ada",
            "traits": {"email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace"},
            "context": {"consent": consent},
        },
        *(
            {
                "type": "track",
                "userId": "ada",
                "event": "Product Viewed",
                "properties": {"product_id": f"sku-{i}", "category": "Shoes"},
                "context": {"consent": consent},
            }
            for i in range(3)
        ),
    ]
    with srv.writer() as w:
        assert w.post("/v1/batch", json={"batch": shopper}).status_code == 200
    srv.wait_processed()
    r = httpx.put(
        srv.url + "/v1/consent",
        json={"user": {"user_id": "cal"}, "region": "US-CA", "gpc": True},
        headers=PUB,
    )
    assert r.status_code == 200, r.text
    feedback = []
    for placement in ("home_hero", "product_detail"):
        r = httpx.post(
            srv.url + "/v1/decide",
            json={"placement": placement, "user": {"user_id": "ada"}, "k": 4},
            headers=PUB,
        )
        assert r.status_code == 200, r.text
        decision = r.json()
        shown = decision["items"][0]["item_id"]
        feedback += [
            {
                "type": "track",
                "userId": "ada",
                "event": "Decision Viewed",
                "properties": {"decision_id": decision["decision_id"]},
            },
            {
                "type": "track",
                "userId": "ada",
                "event": "Product Clicked",
                "properties": {"decision_id": decision["decision_id"], "product_id": shown},
            },
        ]
    with srv.writer() as w:
        assert w.post("/v1/batch", json={"batch": feedback}).status_code == 200
    with srv.admin() as a:
        r = a.post("/v1/privacy/requests", json={"type": "access", "user": {"user_id": "ada"}})
        assert r.status_code == 202, r.text
    srv.wait_processed()


def _reported(srv: SegueServer, placement: str, timeout: float = 20.0) -> dict[str, Any]:
    """The placement's total row once the reports consumer has attributed the feedback."""
    deadline = time.monotonic() + timeout
    rows: list[dict[str, Any]] = []
    with srv.admin() as a:
        while time.monotonic() < deadline:
            report = a.get(KPIS, params={"granularity": "total", "placement": placement})
            assert report.status_code == 200, report.text
            rows = report.json()["rows"]
            if rows and rows[0]["impressions"] and rows[0]["clicks"]:
                return dict(rows[0])
            time.sleep(0.1)
    raise TimeoutError(f"no exposure and click reported for {placement}: {rows}")


def test_every_page_shows_what_the_api_knows(srv: SegueServer, browser: Any) -> None:
    from playwright.sync_api import expect

    with srv.admin() as a:
        has_kpis = KPIS in a.get("/openapi.json").json()["paths"]
    hero = _reported(srv, "home_hero") if has_kpis else None
    problems: list[str] = []
    page = _page(browser, problems)
    # --- login: a wrong key is refused, the admin key opens the dashboard ---------
    page.goto(srv.url + "/ui")
    expect(page.locator("#nav")).to_be_hidden()  # nothing but the login form before it
    page.fill("#admin-key", "not-the-key")
    page.click("#login button[type=submit]")
    expect(page.locator("#login")).to_contain_text("not an admin key")
    problems.clear()  # the refused key's 401 is logged by the browser, on purpose
    page.fill("#admin-key", ADMIN_KEY)
    page.click("#login button[type=submit]")
    expect(page.locator("#nav")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('segue.adminKey')") == ADMIN_KEY

    # --- KPIs -------------------------------------------------------------------
    kpis = page.locator("#page-kpis")
    if hero is not None:
        row = page.locator("#kpi-rows tbody tr", has_text="home_hero")
        expect(row).to_contain_text(f"{hero['impressions']:,}")  # the report's own count
        expect(row).to_contain_text(f"{hero['clicks']:,}")
        expect(row).to_contain_text(f"hero-test{hero['variant']}")  # experiment, variant cells
        expect(page.locator("select[name=experiment]")).to_have_value("hero-test")
        expect(page.locator("#kpi-tiles")).to_contain_text("CTR")
        with page.expect_download() as download:
            page.click("#kpi-csv")
        csv_text = Path(download.value.path()).read_text()
        assert "placement" in csv_text.splitlines()[0]
        assert "home_hero" in csv_text
    else:
        expect(kpis).to_contain_text("No report yet")
        expect(kpis).to_contain_text(KPIS)
        expect(page.locator("#kpi-csv")).to_be_disabled()
    page.screenshot(path=str(ARTIFACTS / "kpis.png"), full_page=True)

    # --- Operations ---------------------------------------------------------------
    page.click("#nav a[data-page=ops]")
    stats = srv.stats()
    expect(page.locator("#events-received")).to_have_text(f"{stats['events_received']:,}")
    expect(page.locator("#ops-tiles")).to_contain_text(f"{stats['profiles']:,}")
    expect(page.locator("#latency-route")).to_have_value("/v1/decide")
    expect(page.locator("#latency")).to_contain_text("requests per latency bucket")
    expect(page.locator("#latency .tile-value").first).to_have_text("2")  # two decides
    consent = page.locator("#consent-rates")
    expect(consent).to_contain_text("DE")
    expect(consent).to_contain_text("US-CA")
    expect(consent).to_contain_text("opt-in")
    queue = page.locator("#privacy-queue")
    expect(queue).to_contain_text("access")
    expect(queue).to_contain_text("done")
    page.wait_for_timeout(2_500)  # a second stats poll draws the rate charts
    page.screenshot(path=str(ARTIFACTS / "operations.png"), full_page=True)

    # --- Profile lookup -----------------------------------------------------------
    page.click("#nav a[data-page=profile]")
    page.fill("#profile-ref", "email:ada@example.com")
    page.press("#profile-ref", "Enter")
    expect(page.locator("#identities")).to_contain_text("user_id:ada")
    expect(page.locator("#identities")).to_contain_text("anonymous_id:anon-ada")
    traits = page.locator("#traits")
    expect(traits).to_contain_text("firstName")
    expect(traits).to_contain_text("Ada")
    expect(traits).to_contain_text("Lovelace")
    first_name = traits.locator("tr", has_text="firstName")
    expect(first_name).to_contain_text("default")  # lineage: the source
    expect(first_name).to_contain_text("non_empty")  # lineage: the survivorship rule
    expect(page.locator("#timeline")).to_contain_text("Product Viewed")
    expect(page.locator("#timeline")).to_contain_text("Product Clicked")
    expect(page.locator("#consent")).to_contain_text("personalization_granted")
    expect(page.locator("#features")).to_contain_text("recently_viewed")
    decisions = page.locator("#decisions details.decision")
    expect(decisions).to_have_count(2)
    expect(decisions.first).to_contain_text("product_detail")
    decisions.first.locator("summary").click()
    expect(decisions.first.locator(".explain-table")).to_contain_text("sku-")
    assert "#/profile/email%3Aada%40example.com" in page.url
    page.screenshot(path=str(ARTIFACTS / "profile.png"), full_page=True)

    page.goto(srv.url + "/ui#/profile/user_id%3Anobody")
    expect(page.locator("#profile-out")).to_contain_text("No profile")
    problems[:] = [p for p in problems if "404" not in p]  # the lookup's own 404

    # --- log out: the key leaves the tab --------------------------------------------
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('segue.adminKey')") is None
    page.context.close()
    assert problems == []


def _report(granularity: str) -> dict[str, Any]:
    """A KPI report in the documented shape of GET /v1/reports/kpis (docs/api.md)."""
    days = ["2026-11-30", "2026-12-01", "2026-12-02"] if granularity == "day" else [None]
    rows = []
    for placement, experiment in (("home_hero", "hero-test"), ("cart", None)):
        for variant, ctr in (("personalized", 0.15), ("holdout", 0.11)):
            for n, day in enumerate(days):
                impressions = 1000 + 100 * n
                rows.append(
                    {
                        "placement": placement,
                        "experiment": experiment,
                        "variant": variant,
                        "day": day,
                        "visitors": 400,
                        "impressions": impressions,
                        "clicks": round(impressions * ctr),
                        "add_to_carts": 40,
                        "conversions": 20,
                        "revenue": 1234.5,
                        "sessions": 500,
                        "ctr": ctr + 0.01 * n,
                        "conversion_rate": 0.05,
                        "revenue_per_visitor": 3.09,
                        "average_order_value": 61.73,
                        "bounce_rate": 0.31,
                        "time_on_page_s": 42.0,
                    }
                )
    lift = [
        {
            "placement": "home_hero",
            "experiment": "hero-test",
            "variant": "personalized",
            "metric": metric,
            "estimate": estimate,
            "low": low,
            "high": high,
            "p_value": p_value,
            "sequential_p_value": min(1.0, p_value * 3),
            "cuped": metric == "revenue_per_visitor",
            "variance_reduction": 0.18 if metric == "revenue_per_visitor" else None,
        }
        for metric, estimate, low, high, p_value in (
            ("ctr", 0.364, 0.21, 0.53, 0.0001),
            ("conversion_rate", 0.02, -0.09, 0.14, 0.71),
            ("revenue_per_visitor", -0.01, None, 0.2, 0.93),  # a bound that is not estimable
        )
    ]
    return {
        "from": "2026-11-30",
        "to": "2026-12-02",
        "granularity": granularity,
        "rows": rows,
        "lift": lift,
        "srm": [
            {"placement": "home_hero", "experiment": "hero-test", "p_value": 0.42, "ok": True},
            {"placement": "cart", "experiment": None, "p_value": 0.0004, "ok": False},
        ],
        "privacy": {"mechanism": "laplace", "epsilon": 1.0},
    }


def test_kpi_page_draws_a_report_of_the_documented_shape(srv: SegueServer, browser: Any) -> None:
    """The KPI page over a fixed report of the documented shape, whatever the server has:
    tiles with lift, interval bars, the SRM warning, the daily series and the CSV."""
    from playwright.sync_api import expect

    asked: list[str] = []

    def openapi(route: Any) -> None:
        spec = route.fetch().json()
        spec["paths"].setdefault(KPIS, {"get": {"summary": "KPI report"}})
        route.fulfill(json=spec)

    def report(route: Any) -> None:
        query = httpx.URL(route.request.url).params
        asked.append(str(query))
        if query.get("format") == "csv":
            csv = (
                "placement,experiment,variant,day,impressions\nhome_hero,hero-test,holdout,,1000\n"
            )
            route.fulfill(body=csv, content_type="text/csv")
        else:
            route.fulfill(json=_report(query.get("granularity", "total")))

    problems: list[str] = []
    page = _page(browser, problems)
    page.route("**/openapi.json", openapi)
    page.route("**/v1/reports/kpis?*", report)
    _login(page, srv.url)
    tiles = page.locator("#kpi-tiles")
    ctr = tiles.locator(".tile", has_text="CTR")
    expect(ctr).to_contain_text("15.00%")  # the variant, first
    expect(ctr).to_contain_text("holdout: 11.00%")
    expect(ctr).to_contain_text("lift +36.4% [+21.0%, +53.0%]")
    expect(ctr.locator(".lift.win")).to_have_count(1)
    expect(tiles.locator(".tile", has_text="Revenue per visitor")).to_contain_text("3.09")
    expect(tiles.locator(".tile", has_text="Time on page")).to_contain_text("42.0 s")
    page_text = page.locator("#page-kpis")
    expect(page_text).to_contain_text("Sample ratio check passed for hero-test")
    expect(page_text).to_contain_text("differential privacy")
    expect(page.locator(".interval-chart .interval")).to_have_count(4)  # 3 bars + 1 open end
    expect(page.locator(".lift-table")).to_contain_text("yes")  # CUPED on revenue
    expect(page.locator(".line-chart .line")).to_have_count(8)  # 4 charts × 2 variants
    expect(page.locator("#kpi-rows tbody tr")).to_have_count(4)
    page.screenshot(path=str(ARTIFACTS / "kpis-documented-shape.png"), full_page=True)

    page.select_option("select[name=placement]", "cart")
    expect(page_text).to_contain_text("Sample ratio mismatch")
    expect(page.locator("select[name=experiment]")).to_have_value("")
    with page.expect_download() as download:
        page.click("#kpi-csv")
    assert download.value.suggested_filename.endswith(".csv")
    assert "home_hero,hero-test" in Path(download.value.path()).read_text()
    assert any("format=csv" in q and "placement=cart" in q for q in asked)
    assert any("granularity=day" in q for q in asked)
    page.context.close()
    assert problems == []


def test_dashboard_assets_are_small_and_local() -> None:
    static = Path(__file__).resolve().parents[2] / "src" / "segue" / "api" / "static"
    files = [p for p in static.iterdir() if p.suffix in (".html", ".css", ".js")]
    assert sum(p.stat().st_size for p in files) < 150_000
    for path in files:
        text = path.read_text()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", ""), path.name
        assert "https://" not in text, path.name
        assert "innerHTML" not in text, path.name  # data goes in as text, never as markup
