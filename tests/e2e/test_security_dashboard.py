"""The dashboard in headless Chromium over a log whose free-text fields are hostile.

Order ids, a cancellation reason, an issuer's failure reason, a customer reference and
an operator's note hold markup and script. The page must show them as text: no element,
no handler and no script of theirs comes alive, and the page is sent with a
Content-Security-Policy that would stop inline script if one slipped through. The
browser, server and sign-in are those of tests/e2e/test_dashboard_browser.py.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import httpx
import pytest
from playwright.sync_api import Page, expect

from reconciler.api import ApiSettings, BackgroundServer, create_api
from reconciler.api.finance import use_refresher
from reconciler.api.freshness import ReadModelRefresher
from reconciler.domain.rules import Rules
from reconciler.projections import Projector
from reconciler.store import open_store
from tests.builders import Log
from tests.e2e.test_dashboard_browser import CHROMIUM, TOKENS, signed_in
from tests.integration.test_api_actions import write_log

if TYPE_CHECKING:
    from collections.abc import Iterator

    from reconciler.domain.events import Fact

ORDER = 'X1"><img src=x onerror="window.__pwned=1">'
CANCELLED = 'X2\'><svg onload="window.__pwned=2">'
REASON = "<script>window.__pwned=3</script>portal said no"
CUSTOMER = '"><iframe srcdoc="<script>parent.__pwned=4</script>">'
NOTE = '<b onmouseover="window.__pwned=5">checked</b> with the bank'

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs /usr/bin/chromium")


def hostile_log() -> list[Fact]:
    """A debited order whose refund of a duplicate fails, a cancelled one, hostile text."""
    log = Log()
    log.tick()
    placed = log.order(ORDER)
    log.facts[-1] = placed.model_copy(update={"customer_ref": CUSTOMER, "channel": REASON})
    log.debit("P1", ORDER)
    log.debit("P2", ORDER)  # a duplicate: refunded, and the refund fails for good
    log.refund_failed("P2/DUPLICATE_DEBIT", retryable=False)
    failed = log.issue_failed(ORDER, retryable=False)
    log.facts[-1] = failed.model_copy(update={"reason": REASON})
    log.order(CANCELLED)
    cancelled = log.cancel(CANCELLED)
    log.facts[-1] = cancelled.model_copy(update={"reason": REASON})
    log.tick(700)
    resolved = log.resolve("P2/REFUND_FAILED", "REFUNDED_OUTSIDE", reference=REASON)
    log.facts[-1] = resolved.model_copy(update={"note": NOTE, "operator": CUSTOMER})
    log.tick(60)
    return log.facts


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dashboard over the hostile log, on a loopback port: its URL."""
    url = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'log.sqlite'}"
    rules = Rules()
    write_log(url, {"hostile.jsonl": hostile_log()}, rules)
    store = open_store(url)
    try:
        projector = Projector(store, rules)
        projector.catch_up()
        app = create_api(ApiSettings(tokens=TOKENS), store, rules)
        use_refresher(app, ReadModelRefresher(store, rules, projector=projector))
        with BackgroundServer(app) as server:
            yield server.url
    finally:
        store.close()


@pytest.fixture(scope="module")
def page(served: str) -> Iterator[Page]:
    """The dashboard, signed in with a viewer token, once it has loaded."""
    with signed_in(served) as tab:
        yield tab


def test_hostile_order_ids_are_shown_as_text(page: Page) -> None:
    """The orders list shows both hostile ids verbatim, as button text; nothing runs."""
    buttons = page.locator("#orders tbody button[data-order]")
    expect(buttons).to_have_count(2)
    assert sorted(buttons.all_inner_texts()) == sorted([ORDER, CANCELLED])
    assert page.evaluate("window.__pwned") is None


def test_the_story_shows_reasons_notes_and_refs_as_text(page: Page) -> None:
    """Opening the hostile order shows its story with every hostile field as plain text."""
    page.locator("#orders tbody button[data-order]", has_text="onerror").first.click()
    expect(page.locator("#order-detail")).to_be_visible()
    assert page.locator("#order-title-id").inner_text() == ORDER
    story = page.locator("#story tbody").inner_text()
    for text in (REASON, NOTE, CUSTOMER):  # in the records' JSON, as JSON.stringify wrote it
        assert json.dumps(text) in story
    page.locator("#story").hover()
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#story iframe, #story img, #story b, #story script").count() == 0


def test_the_page_is_sent_with_a_strict_csp(served: str) -> None:
    """Only the server's own scripts may run: no inline script, nothing from elsewhere."""
    headers = httpx.get(served + "/dashboard").headers
    policy = headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy
    assert "default-src 'none'" in policy
    assert headers["X-Content-Type-Options"] == "nosniff"
