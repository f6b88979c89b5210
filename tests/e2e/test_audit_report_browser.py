"""The auditors' report in headless Chromium: the figures shown are the gathered report's.

The recorded CASN day, and beside it (a shard of its own) a refund that an operator
settled with hostile text in the note, the reference, the operator's name and the order
id, are reconciled into a store; the report is gathered and written, and its HTML is
opened from the file. Playwright drives the system's Chromium. A screenshot of the top
of the page is kept in `out/screenshots/audit-report.png`.
"""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from reconciler.audit import AuditReport, Period, Verification, build_audit, jakarta, write_audit
from reconciler.domain.events import EscalationResolved
from reconciler.domain.rules import Rules
from reconciler.engine import Engine
from reconciler.ingest.source import InputRecord
from reconciler.projections import Projector
from reconciler.reconcile import reconcile_file
from reconciler.store import open_store
from tests.builders import Log

if TYPE_CHECKING:
    from collections.abc import Iterator

CHROMIUM = Path("/usr/bin/chromium")
SCENARIO = Path(__file__).parents[2] / "replay" / "casn-peak-500" / "events.jsonl"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "out" / "screenshots"
TIMEOUT_MS = 20_000
RULES = Rules()
DESK = "operator-desk.jsonl"
ORDER = 'X1"><img src=x onerror="window.__pwned=1">'
NOTE = "<script>window.__pwned=2</script> transfer confirmed by phone"
REFERENCE = '<img src=x onerror="window.__pwned=3">TRF-778'
OPERATOR = "<b>ops-2</b>"
ESCALATION = "P-X1/REFUND_FAILED"


def rupiah(amount: int) -> str:
    """Whole rupiah as the report shows them, the Indonesian way: `Rp 12.500`."""
    return ("-Rp " if amount < 0 else "Rp ") + f"{abs(amount):,}".replace(",", ".")


def settled_by_hand() -> Log:
    """A refund that failed for good, settled outside by an operator who typed markup."""
    log = Log()
    log.tick()
    log.order(ORDER)
    log.debit("P-X1", ORDER)
    log.tick(300)
    log.issue_failed(ORDER, retryable=False, command_id=f"{ORDER}/issue/1")
    log.tick(60)
    log.refund_failed("P-X1/PAID_NOT_ISSUED", retryable=False)
    log.tick(60)
    log.add(
        EscalationResolved.model_validate(
            {
                "event_id": "desk-1",
                "version": 1,
                "occurred_at": log.now,
                "escalation_id": ESCALATION,
                "outcome": "REFUNDED_OUTSIDE",
                "operator": OPERATOR,
                "note": NOTE,
                "reference": REFERENCE,
            }
        )
    )
    log.tick(60)
    return log


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[AuditReport, Path]:
    """The report of the CASN days and the operator's desk, gathered and written: it, its HTML."""
    folder = tmp_path_factory.mktemp("audit")
    store = open_store(f"sqlite:///{folder / 'shadow.sqlite'}")
    try:
        reconcile_file(SCENARIO, RULES, store)
        engine = Engine(RULES, store)
        facts = settled_by_hand().facts
        engine.process([InputRecord.from_fact(DESK, n, fact) for n, fact in enumerate(facts, 1)])
        Projector(store, RULES).catch_up()
        verification = Verification(
            chain=store.verify(),
            log=f"sqlite:///{folder / 'log.sqlite'}",
            records_replayed=store.last_position(),
            as_of="end of log",
            decisions_recorded=0,
            decisions_rederived=0,
            differences=[],
            rules={"issue_sla": "300 s", "max_refund_attempts": 5},
            generated_at=datetime(2024, 9, 6, 2, 0, tzinfo=UTC),
        )
        period = Period(date(2024, 9, 4), date(2024, 9, 5), jakarta())
        report = build_audit(store, period, verification)
    finally:
        store.close()
    out = folder / "report"
    write_audit(report, out)
    return report, out / "report.html"


@pytest.fixture(scope="module")
def opened(written: tuple[AuditReport, Path]) -> Iterator[tuple[Page, list[str]]]:
    """The written report open in Chromium, and every URL the page requested."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            tab.set_default_timeout(TIMEOUT_MS)
            requests: list[str] = []
            tab.on("request", lambda request: requests.append(request.url))
            tab.goto(written[1].as_uri(), wait_until="load")
            yield tab, requests
        finally:
            browser.close()


@pytest.fixture(scope="module")
def page(opened: tuple[Page, list[str]]) -> Page:
    """The report's page."""
    return opened[0]


@pytest.fixture(scope="module")
def report(written: tuple[AuditReport, Path]) -> AuditReport:
    """The gathered report the page was written from."""
    return written[0]


def test_the_verdict_and_the_periods_money_are_the_reports(page: Page, report: AuditReport) -> None:
    """PASS at the top; the five closing figures, and opening and movement, as gathered."""
    assert report.passed
    assert page.locator("body").get_attribute("data-verdict") == "PASS"
    assert page.locator("#verdict .word").inner_text() == "PASS"
    closing = report.closing
    assert closing.debited > 0
    for name in ("debited", "kept", "refunded", "refund_pending", "at_risk"):
        figure = page.locator(f"#totals .figure[data-figure='{name}']")
        assert figure.get_attribute("data-value") == str(getattr(closing, name))
        assert figure.locator(".value").inner_text() == rupiah(getattr(closing, name))
        for row, money in (("opening", report.opening), ("movement", report.movement)):
            cell = page.locator(f"#totals-table tr[data-row='{row}'] td[data-figure='{name}']")
            assert cell.get_attribute("data-value") == str(getattr(money, name))
    assert page.locator("[data-count='refunds']").inner_text() == str(len(report.refunds))
    assert page.locator("[data-count='orders']").inner_text() == str(report.orders_placed)


def test_each_day_shows_its_close_and_that_it_balances(page: Page, report: AuditReport) -> None:
    """A row per day of the period; every figure is the gathered close, and each day balances."""
    rows = page.locator("#days tbody tr[data-day]")
    expect(rows).to_have_count(len(report.days))
    for day in report.days:
        row = page.locator(f"#days tr[data-day='{day.day}']")
        assert row.get_attribute("data-balanced") == "true"
        assert "balances" in row.inner_text()
        for name in ("debited", "kept", "refunded", "refund_pending", "at_risk"):
            cell = row.locator(f"td[data-figure='{name}']")
            assert cell.get_attribute("data-value") == str(getattr(day.closing, name))
            assert cell.inner_text().startswith(rupiah(getattr(day.closing, name)))


def test_every_refund_is_listed_with_its_state_and_amounts(page: Page, report: AuditReport) -> None:
    """One row per refund, in order, with the gathered state, amount and money returned."""
    shown: list[dict[str, Any]] = page.eval_on_selector_all(
        "#refund-list tr[data-refund]",
        "rows => rows.map(r => ({id: r.dataset.refund, state: r.dataset.state,"
        " amount: Number(r.dataset.amount), refunded: Number(r.dataset.refunded)}))",
    )
    assert shown == [
        {
            "id": refund.refund_id,
            "state": str(refund.state),
            "amount": refund.amount,
            "refunded": refund.refunded,
        }
        for refund in report.refunds
    ]
    assert sum(row["refunded"] for row in shown) == report.closing.refunded


def test_a_refunds_evidence_opens_to_its_chain(page: Page, report: AuditReport) -> None:
    """Opening the chain of the refund settled by hand shows its records, by log position."""
    (refund,) = [r for r in report.refunds if r.source == DESK]
    chain = page.locator("#refund-list tr.chain").filter(has_text="P-X1/PAID_NOT_ISSUED")
    chain.locator("summary").click()
    rows = chain.locator("table.evidence tbody tr")
    expect(rows).to_have_count(len(refund.evidence))
    shown = [int(text) for text in rows.locator("td:first-child").all_inner_texts()]
    assert shown == [item.position for item in refund.evidence]
    steps = rows.locator("td:nth-child(2)").all_inner_texts()
    assert steps[-3:] == ["escalated", "operator", "resolved"]


def test_text_from_the_log_is_shown_as_text(page: Page, report: AuditReport) -> None:
    """Markup in an order id, note, reference and operator shows literally; none of it runs."""
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("img").count() == 0
    assert page.locator("script").count() == 0
    assert page.locator("b").count() == 0
    case = page.locator(f"#escalation-list tr[data-escalation='{ESCALATION}']")
    assert case.get_attribute("data-open") == "false"
    assert case.locator(".resolution-note").inner_text() == NOTE
    assert case.locator(".reference").inner_text() == REFERENCE
    assert OPERATOR in case.locator(".action .operator").inner_text()
    refund = page.locator("#refund-list tr[data-refund='P-X1/PAID_NOT_ISSUED']")
    assert ORDER in refund.inner_text()
    assert refund.get_attribute("data-state") == "paid-outside"
    (gathered,) = [c for c in report.escalations if c.escalation_id == ESCALATION]
    assert gathered.resolution is not None
    assert gathered.resolution.note == NOTE


def test_the_page_loads_nothing_but_itself(
    opened: tuple[Page, list[str]], written: tuple[AuditReport, Path]
) -> None:
    """No script, stylesheet, font or image is fetched: the file is the whole report."""
    _, requests = opened
    assert requests == [written[1].as_uri()]


def test_printed_the_report_keeps_its_signature_block(page: Page, tmp_path: Path) -> None:
    """In print, the signature lines show and the long chains are left out; the PDF is written."""
    page.emulate_media(media="print")
    try:
        expect(page.locator("#signature")).to_be_visible()
        expect(page.locator("#signature .line")).to_have_count(6)
        expect(page.locator("#refund-list tr.chain").first).to_be_hidden()
        pdf = tmp_path / "audit-report.pdf"
        page.pdf(path=str(pdf), format="A4", landscape=True)
    finally:
        page.emulate_media(media="screen")
    assert pdf.read_bytes().startswith(b"%PDF")
    assert pdf.stat().st_size > 20_000


def test_a_screenshot_of_the_report_is_kept(page: Page, tmp_path: Path) -> None:
    """The top of the report (verdict, money, days, first refunds) is saved for the README."""
    page.evaluate("window.scrollTo(0, 0)")
    shot = tmp_path / "audit-report.png"
    page.screenshot(
        path=str(shot), full_page=True, clip={"x": 0, "y": 0, "width": 1400, "height": 1800}
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOTS / "audit-report.png")
    assert shot.stat().st_size > 50_000
