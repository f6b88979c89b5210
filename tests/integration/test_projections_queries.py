"""The read models' queries on hand-built logs with known numbers, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from reconciler.domain.rules import Rules
from reconciler.engine import Engine
from reconciler.ingest.source import InputRecord
from reconciler.projections import (
    AmbiguousOrderError,
    InvalidQueryError,
    Projector,
    ReadModels,
)
from reconciler.projections.rows import CaseCount, MoneyAt, OutcomeRow
from tests.builders import WIB, Log
from tests.integration.test_projections_contract import PostgresBackend, SQLiteBackend

if TYPE_CHECKING:
    from collections.abc import Callable

    from reconciler.store import LogStore

    OpenStore = Callable[[], LogStore]

RULES = Rules()
SOURCE = "events.jsonl"
HOUR = 3600


def project(store: LogStore, log: Log, rules: Rules = RULES, source: str = SOURCE) -> ReadModels:
    """Run a log through the engine into the store, project it, and give the read models."""
    engine = Engine(rules, store)
    engine.restore(source)
    facts = [InputRecord.from_fact(source, n, fact) for n, fact in enumerate(log.facts, 1)]
    for start in range(0, len(facts), 4):
        engine.process(facts[start : start + 4])
    Projector(store, rules).catch_up()
    return ReadModels(store)


def over_issued(log: Log, order_id: str) -> None:
    """A paid one-stamp order delivered two stamps: OVER_ISSUED, escalated at once."""
    log.order(order_id)
    log.debit("P-" + order_id, order_id)
    log.stamps(order_id, f"{order_id}-S1", f"{order_id}-S2")


class QueriesContract:
    """What the queries answer, on every backend."""

    @pytest.fixture
    def store(self, open_store_on_database: OpenStore) -> LogStore:
        """Give a store with its tables created on the test's own database."""
        return open_store_on_database()

    def test_order_story_lists_every_fact_and_decision_in_log_order(self, store: LogStore) -> None:
        """The story of an order is every record naming it or one of its payments, in order."""
        log = Log()
        log.tick()
        log.order("A")
        log.order("B")
        log.debit("P1", "A")
        log.debit("P2", "A")  # a duplicate: refunded at once
        log.debit("P3", "B")
        log.tick(10)
        log.refund_ok("P2/DUPLICATE_DEBIT")
        log.stamps("A", "S1")
        log.tick(300)  # ISSUE_SLA for B, not for A
        log.stamps("B", "S2", command_id="B/issue/1")
        views = project(store, log)
        expected = [
            record.position
            for record in store.read()
            if (payload := json.loads(record.payload)).get("order_id") == "A"
            or payload.get("payment_id") in {"P1", "P2"}
        ]
        story = views.order_story("A")
        assert [entry.position for entry in story] == expected
        assert {entry.kind for entry in story} == {"fact", "decision"}
        assert [entry.type for entry in story if entry.kind == "fact"] == [
            "OrderPlaced",
            "PaymentDebited",
            "PaymentDebited",
            "RefundSucceeded",
            "StampIssued",
        ]
        assert views.order_story("nobody") == []

    def test_remedy_percentiles_on_known_times(self, store: LogStore) -> None:
        """Ten deliveries 1..10 minutes after the debit, two refunds after 1 and 3 minutes."""
        rules = Rules(issue_sla=timedelta(hours=2))
        log = Log()
        log.tick()
        for number in range(1, 11):
            log.order(f"F{number}")
            log.debit(f"PF{number}", f"F{number}")
        for order_id in ("R1", "R2"):
            log.order(order_id)
            log.debit("P" + order_id, order_id)
            log.cancel(order_id)  # refunded in full, at once
        for number in range(1, 11):
            log.tick(60)
            log.stamps(f"F{number}", f"S{number}")
            if number in {1, 3}:
                log.refund_ok(f"PR{1 if number == 1 else 2}/CANCELLED_ORDER_DEBIT")
        views = project(store, log, rules)
        fulfilled = views.remedy_percentiles(remedy="FULFILLED")
        assert (fulfilled.count, fulfilled.p50, fulfilled.p90, fulfilled.p99, fulfilled.max) == (
            10,
            300.0,
            540.0,
            600.0,
            600.0,
        )
        refunded = views.remedy_percentiles(remedy="REFUNDED")
        assert (refunded.count, refunded.p50, refunded.p90) == (2, 60.0, 180.0)
        every = views.remedy_percentiles()
        assert (every.count, every.p50, every.p90, every.p99) == (12, 240.0, 540.0, 600.0)
        with pytest.raises(InvalidQueryError, match="remedy"):
            views.remedy_percentiles(remedy="PAID")

    def test_open_cases_are_aged_on_the_engine_clock(self, store: LogStore) -> None:
        """Escalations 30h, 6h, 5h, 1h and 30min old fall in their buckets; resolved ones leave."""
        log = Log()
        log.tick()
        over_issued(log, "O1")
        log.tick(24 * HOUR)
        over_issued(log, "O2")
        log.tick(HOUR)
        over_issued(log, "O3")
        log.tick(4 * HOUR)
        over_issued(log, "O4")
        log.tick(HOUR // 2)
        over_issued(log, "O5")
        over_issued(log, "O6")
        log.tick(1)
        log.resolve("O6/OVER_ISSUED", "NO_MONEY_AT_STAKE")
        log.tick(HOUR // 2 - 1)
        views = project(store, log)
        assert views.open_case_counts() == [
            CaseCount(kind="OVER_ISSUED", age_bucket=bucket, count=count, amount=count * 12_500)
            for bucket, count in (("<1h", 1), ("1-6h", 2), ("6-24h", 1), (">24h", 1))
        ]
        middle = views.open_cases(age_bucket="1-6h").items
        assert [(c.order_id, c.age_seconds) for c in middle] == [("O3", 5 * HOUR), ("O4", HOUR)]
        resolved = views.escalations(resolved=True).items
        assert [(c.escalation_id, c.outcome, c.operator) for c in resolved] == [
            ("O6/OVER_ISSUED", "NO_MONEY_AT_STAKE", "ops-1")
        ]
        assert resolved[0].resolved_at == (log.now - timedelta(seconds=HOUR // 2 - 1)).astimezone(
            UTC
        )
        assert len(views.escalations(resolved=False).items) == 5
        summary = views.summary()
        assert (summary.open_cases, summary.open_cases_amount) == (5, 5 * 12_500)
        with pytest.raises(InvalidQueryError, match="age_bucket"):
            views.open_cases(age_bucket="2h")

    def test_open_cases_page_oldest_first(self, store: LogStore) -> None:
        """Open escalations come oldest first, a page at a time, each once."""
        log = Log()
        log.tick()
        for number in range(5):
            over_issued(log, f"O{number}")
            log.tick(60)
        views = project(store, log)
        first = views.open_cases(limit=2, kind="OVER_ISSUED")
        second = views.open_cases(limit=2, kind="OVER_ISSUED", cursor=first.next_cursor)
        third = views.open_cases(limit=2, kind="OVER_ISSUED", cursor=second.next_cursor)
        seen = [case.order_id for page in (first, second, third) for case in page.items]
        assert (seen, third.next_cursor) == (["O0", "O1", "O2", "O3", "O4"], None)
        assert views.open_cases(kind="REFUND_FAILED").items == []

    def test_money_by_hour_holds_each_hours_closing_figures(self, store: LogStore) -> None:
        """Each UTC hour's row is the money as that hour closed; days are their last hour."""
        log = Log(datetime(2024, 9, 4, 9, 10, tzinfo=WIB))
        log.tick()
        log.order("A")
        log.debit("P1", "A")
        log.stamps("A", "S1")
        log.tick(40 * 60)  # 09:50
        log.debit("P2", "A")  # a duplicate: refund pending
        log.tick(15 * 60)  # 10:05, the next hour
        log.refund_ok("P2/DUPLICATE_DEBIT")
        log.tick(145 * 60)  # 12:30: 11:00 passes with no change
        log.debit("P3", "X")  # an orphan: at risk until ORPHAN_WINDOW
        views = project(store, log)

        def at(utc_hour: int, *figures: int) -> MoneyAt:
            hour = datetime(2024, 9, 4, utc_hour, tzinfo=UTC)
            debited, kept, refunded, pending, at_risk = figures
            return MoneyAt(
                hour=hour,
                debited=debited,
                kept=kept,
                refunded=refunded,
                refund_pending=pending,
                at_risk=at_risk,
            )

        hours = [
            at(2, 25_000, 12_500, 0, 12_500, 0),
            at(3, 25_000, 12_500, 12_500, 0, 0),
            at(5, 37_500, 12_500, 12_500, 0, 12_500),
        ]
        assert views.money_by_hour() == hours
        assert views.money_by_hour(since=hours[1].hour) == hours[1:]
        assert views.money_by_hour(until=hours[1].hour) == hours[:2]
        days = views.money_by_day(zone=WIB)
        assert [(d.day, d.hour, d.at_risk) for d in days] == [
            (date(2024, 9, 4), hours[2].hour, 12_500)
        ]
        with pytest.raises(InvalidQueryError, match="offset"):
            views.money_by_hour(since=datetime(2024, 9, 4))  # noqa: DTZ001 - naive on purpose

    def test_outcomes_count_commands_and_results(self, store: LogStore) -> None:
        """Issuance and refunds by outcome and reason, with stamps and rupiah."""
        log = Log()
        log.tick()
        log.order("A")
        log.debit("PA", "A")
        log.tick(300)  # ISSUE_SLA: attempt 1
        log.issue_failed("A", retryable=True, command_id="A/issue/1")  # attempt 2 at once
        log.stamps("A", "S1", command_id="A/issue/2")
        log.order("B")
        log.debit("PB1", "B")
        log.stamps("B", "S2")
        log.debit("PB2", "B")  # a duplicate: refunded at once
        log.refund_failed("PB2/DUPLICATE_DEBIT", retryable=True)
        log.tick(600)  # REFUND_RETRY_INTERVAL: attempt 2
        log.refund_ok("PB2/DUPLICATE_DEBIT")
        log.refund_ok("PZ/ORPHAN_DEBIT")  # no such refund was commanded
        views = project(store, log)

        def row(kind: str, outcome: str, reason: str = "", **values: int) -> OutcomeRow:
            retryable = bool(values.pop("retryable", 0))
            counts = {"count": 1, "stamps": 0, "amount": 0} | values
            return OutcomeRow(
                kind=kind, outcome=outcome, reason=reason, retryable=retryable, **counts
            )

        assert views.outcomes() == [
            row("issuance", "commanded", stamps=1),
            row("issuance", "delivered", count=2, stamps=2),
            row("issuance", "failed", "ISSUER_DOWN", retryable=1),
            row("issuance", "retried", stamps=1),
            row("refund", "commanded", "DUPLICATE_DEBIT", amount=12_500),
            row("refund", "failed", "BANK_TIMEOUT", retryable=1, amount=12_500),
            row("refund", "retried", "DUPLICATE_DEBIT", amount=12_500),
            row("refund", "succeeded", "DUPLICATE_DEBIT", amount=12_500),
            row("refund", "succeeded", "unmatched", amount=12_500),
        ]
        assert views.outcomes(source="elsewhere") == []

    def test_orders_filter_and_page(self, store: LogStore) -> None:
        """Orders by status or case, a page at a time by id; bad filters and cursors are refused."""
        log = Log()
        log.tick()
        for number in range(7):
            order_id = f"A{number}"
            log.order(order_id)
            log.debit(f"P{number}", order_id)
            if number % 2:
                log.stamps(order_id, f"S{number}")
        log.debit("P9", "A1")  # a duplicate on A1
        views = project(store, log)
        pages = [views.orders(status="PAID", limit=2)]
        while (cursor := pages[-1].next_cursor) is not None:
            pages.append(views.orders(status="PAID", limit=2, cursor=cursor))
        assert [[o.order_id for o in page.items] for page in pages] == [
            ["A0", "A2"],
            ["A4", "A6"],
        ]
        duplicated = views.orders(case="DUPLICATE_DEBIT").items
        assert [(o.order_id, o.status, o.refund_pending) for o in duplicated] == [
            ("A1", "REFUND_PENDING", 12_500)
        ]
        row = views.order("A3")
        assert row is not None
        assert (row.status, row.delivered, row.kept, row.source) == ("FULFILLED", 1, 12_500, SOURCE)
        assert views.order("nobody") is None
        with pytest.raises(InvalidQueryError, match="status"):
            views.orders(status="paid")
        with pytest.raises(InvalidQueryError, match="case"):
            views.orders(case="LOST")
        with pytest.raises(InvalidQueryError, match="cursor"):
            views.orders(cursor=views.escalations(limit=1).next_cursor or "bogus")

    def test_an_order_id_on_two_shards_needs_its_source(self, store: LogStore) -> None:
        """The same order id in two sources is two rows; asking for it alone is ambiguous."""
        for source in ("a.jsonl", "b.jsonl"):
            log = Log()
            log.tick()
            log.order("A")
            # Event ids are unique in the whole log, across sources.
            log.facts = [
                f.model_copy(update={"event_id": f"{source}/{f.event_id}"}) for f in log.facts
            ]
            project(store, log, source=source)
        views = ReadModels(store)
        with pytest.raises(AmbiguousOrderError, match=r"a\.jsonl, b\.jsonl"):
            views.order("A")
        row = views.order("A", source="b.jsonl")
        assert row is not None
        assert row.source == "b.jsonl"
        assert [s.source for s in views.summary().sources] == ["a.jsonl", "b.jsonl"]

    def test_dead_letters_come_in_pages_with_their_reason(self, store: LogStore) -> None:
        """Bad input is listed in the order it was kept, a page at a time, with a preview."""
        engine = Engine(RULES, store)
        bad = [b"not json", b'{"type": "Nope"}', b"\xff\xfe"]
        engine.process([InputRecord.from_raw(SOURCE, n, raw) for n, raw in enumerate(bad, 1)])
        views = ReadModels(store)
        first = views.dead_letters(limit=2)
        second = views.dead_letters(limit=2, cursor=first.next_cursor)
        letters = [*first.items, *second.items]
        assert [(d.locator, d.size) for d in letters] == [
            (f"{SOURCE}:1", 8),
            (f"{SOURCE}:2", 16),
            (f"{SOURCE}:3", 2),
        ]
        assert letters[0].preview == "not json"
        assert "JSON" in letters[0].reason
        assert second.next_cursor is None
        assert views.summary().dead_letters == 3

    def test_an_empty_log_reads_as_empty(self, store: LogStore) -> None:
        """Before anything is projected, every query answers, with nothing in it."""
        views = ReadModels(store)
        summary = views.summary()
        assert (summary.clock, summary.orders, summary.position, summary.log_position) == (
            None,
            0,
            0,
            0,
        )
        assert views.orders().items == []
        assert views.money_by_day() == []
        assert views.remedy_percentiles().count == 0

    def test_the_summary_shows_how_far_the_read_models_lag(self, store: LogStore) -> None:
        """Records appended after the last projection show as the gap to the log's end."""
        log = Log()
        log.tick()
        log.order("A")
        views = project(store, log)
        engine = Engine(RULES, store)
        engine.restore(SOURCE)
        late = log.tick(5)
        engine.process([InputRecord.from_fact(SOURCE, len(log.facts), late)])
        summary = views.summary()
        assert summary.log_position == summary.position + 1


class TestQueriesOnSQLite(QueriesContract, SQLiteBackend):
    """The queries on a SQLite file beside the log."""


class TestQueriesOnPostgres(QueriesContract, PostgresBackend):
    """The queries in the log's PostgreSQL schema."""
