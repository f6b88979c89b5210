"""The dashboard in headless Chromium, after a small demo day: the figures are the read models'.

A 300-order demo writes its log; the API with the finance routes and the dashboard page
serves it on a loopback port; Playwright drives the system's Chromium (its own browser
download cannot run here). The page's screenshot is kept in the test's folder and
copied to `out/screenshots/dashboard.png`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from reconciler.api import ApiSettings, BackgroundServer, TokenSpec, create_api
from reconciler.api.finance import use_refresher
from reconciler.api.freshness import ReadModelRefresher
from reconciler.domain.rules import Rules
from reconciler.projections import Projector, ReadModels
from reconciler.store import open_store

if TYPE_CHECKING:
    from collections.abc import Iterator

    from reconciler.projections.rows import Summary

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "dashboard-test-token-0123456789"  # noqa: S105 - a test token
TOKENS = [TokenSpec.model_validate({"name": "vera", "role": "viewer", "token": TOKEN})]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "out" / "screenshots"
TIMEOUT_MS = 20_000

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs /usr/bin/chromium")


def rupiah(amount: int) -> str:
    """Whole rupiah as the page shows them: `Rp 1.234.500`."""
    return ("-Rp " if amount < 0 else "Rp ") + f"{abs(amount):,}".replace(",", ".")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ReadModels]]:
    """The dashboard over a 300-order demo's log: its URL, and the log's read models."""
    out = tmp_path_factory.mktemp("dashboard") / "demo"
    subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "reconciler", "demo", "--orders", "300", "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    store = open_store(f"sqlite:///{out / 'log.sqlite'}")
    try:
        rules = Rules()
        projector = Projector(store, rules)
        projector.catch_up()
        app = create_api(ApiSettings(tokens=TOKENS), store, rules)
        use_refresher(app, ReadModelRefresher(store, rules, projector=projector))
        with BackgroundServer(app) as server:
            yield server.url, ReadModels(store)
    finally:
        store.close()


@pytest.fixture(scope="module")
def page(served: tuple[str, ReadModels]) -> Iterator[Page]:
    """The dashboard, signed in with a viewer token, once it has loaded."""
    url, _ = served
    with signed_in(url) as tab:
        yield tab


@contextmanager
def signed_in(url: str) -> Iterator[Page]:
    """Chromium on the dashboard at `url`, signed in with the viewer token, once loaded."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            tab.set_default_timeout(TIMEOUT_MS)
            tab.goto(url + "/")
            tab.fill("#token", TOKEN)
            tab.click("#login-form button[type=submit]")
            tab.wait_for_selector("body[data-loaded='true']")
            yield tab
        finally:
            browser.close()


@pytest.fixture(scope="module")
def summary(served: tuple[str, ReadModels]) -> Summary:
    """The read models' summary, as the page was loaded."""
    return served[1].summary()


def test_headline_figures_equal_the_read_models(page: Page, summary: Summary) -> None:
    """Each of the five money figures shows the summary's total in Indonesian rupiah."""
    assert summary.totals.debited > 0
    for name, amount in summary.totals.model_dump().items():
        figure = page.locator(f"[data-figure='{name}']")
        assert figure.get_attribute("data-value") == str(amount)
        text = figure.locator(".value").inner_text()
        assert text.replace("\xa0", " ") == rupiah(amount)


def test_orders_by_status_equal_the_read_models(page: Page, summary: Summary) -> None:
    """Every status row shows the summary's count, and the total is the orders' number."""
    for status, orders in summary.orders_by_status.items():
        row = page.locator(f"#statuses tr[data-status='{status}']")
        assert row.get_attribute("data-count") == str(orders)
    assert summary.orders >= 300
    total = page.locator("#orders-total").inner_text()
    assert total == f"{summary.orders:,}".replace(",", ".")


def test_charts_are_drawn_by_plotly(page: Page) -> None:
    """Both charts are plotly SVGs, and the money chart has its lines."""
    assert page.locator("#chart-money svg.main-svg").count() >= 1
    assert page.locator("#chart-cases svg.main-svg").count() >= 1
    assert page.locator("#chart-money .scatterlayer .trace").count() == 5


def test_the_case_queue_filters_by_kind(page: Page, served: tuple[str, ReadModels]) -> None:
    """Choosing a kind lists only open cases of that kind, as many as the read models hold."""
    views = served[1]
    counts = views.open_case_counts()
    assert counts, "the demo day leaves open cases"
    kind = min(counts, key=lambda c: c.count).kind
    expected = [row.escalation_id for row in views.open_cases(kind=kind, limit=25).items]
    page.select_option("#filter-kind", kind)
    rows = page.locator("#queue tbody tr")
    expect(rows).to_have_count(len(expected))
    expect(page.locator(f"#queue tbody tr[data-kind='{kind}']")).to_have_count(len(expected))
    page.select_option("#filter-kind", "")
    expect(page.locator("#queue tbody tr")).to_have_count(min(25, sum(c.count for c in counts)))


def test_clicking_an_order_shows_its_story(
    page: Page, served: tuple[str, ReadModels], tmp_path: Path
) -> None:
    """An order in the queue opens its row and its story, every record in log order."""
    button = page.locator("#queue tbody button[data-order]").first
    order_id = button.get_attribute("data-order")
    assert order_id
    button.click()
    expect(page.locator("#order-detail")).to_be_visible()
    story = served[1].order_story(order_id)
    rows = page.locator("#story tbody tr")
    expect(rows).to_have_count(len(story))
    assert page.locator("#order-title-id").inner_text() == order_id
    shown = [int(text) for text in page.locator("#story tbody tr td:first-child").all_inner_texts()]
    assert shown == [entry.position for entry in story]
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOTS / "dashboard.png")
    assert shot.stat().st_size > 10_000
