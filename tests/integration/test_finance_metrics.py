"""The finance metrics on a real log: promtool accepts them and they equal the read models.

A day is run through the engine into a store (SQLite, then PostgreSQL), projected, and
scraped through `finance_registry`. The exposition must pass `promtool check metrics`
with nothing printed, and every figure must be the one the read models (and the log's
own decider) give. promtool comes from Debian's `prometheus` package
(scripts/ensure-test-tools.sh installs it); without it the tests skip, which fails CI.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
from collections import Counter
from contextlib import closing
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql
from psycopg.rows import dict_row
from structlog.testing import capture_logs

from reconciler.domain.accounting import OrderStatus
from reconciler.domain.decisions import Case
from reconciler.domain.rules import Rules
from reconciler.engine import Engine
from reconciler.ingest.source import InputRecord
from reconciler.projections import Projector, ReadModels
from reconciler.projections.metrics import FAMILIES, QUANTILES, FinanceCollector, finance_registry
from reconciler.projections.rows import AGE_BUCKETS
from reconciler.service.metrics import ServiceMetrics
from tests.builders import Engine as Decided
from tests.builders import Log
from tests.integration.test_projections_contract import PostgresBackend, SQLiteBackend
from tests.unit.test_grafana_dashboard import targets

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from reconciler.store import LogStore

    OpenStore = Callable[[], LogStore]
    Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

RULES = Rules()
SOURCE = "events.jsonl"
HOUR = 3600
BAD_LINES = (b"{not json", b'{"type": "Nonsense"}')


def a_day() -> Log:
    """Orders remedied within ISSUE_SLA and after it, refunds paid and failed, open cases."""
    log = Log()
    log.tick()
    for order_id in ("M1", "A", "L1", "R1", "RF", "U1"):
        log.order(order_id)
    log.debit("PM1", "M1")
    log.debit("PA1", "A")
    log.debit("PA2", "A")  # a duplicate: refunded at once
    log.debit("PL1", "L1")  # never delivered by the portal: the engine steps in
    log.debit("PR1", "R1")
    log.cancel("R1")  # refunded in full, at once
    log.debit("PRF1", "RF")
    log.debit("PRF2", "RF")  # a duplicate whose refund fails for good
    log.stamps("RF", "S-RF")
    log.order("O1")
    log.debit("PO1", "O1")
    log.stamps("O1", "S-O1a", "S-O1b")  # OVER_ISSUED, escalated at once
    log.debit("PX", None)  # an orphan, refunded after ORPHAN_WINDOW
    log.tick(10)
    log.stamps("M1", "S-M1")
    log.stamps("A", "S-A")
    log.refund_ok("PA2/DUPLICATE_DEBIT")
    log.refund_ok("PR1/CANCELLED_ORDER_DEBIT")
    log.refund_failed("PRF2/DUPLICATE_DEBIT", retryable=False)
    log.tick(290)  # ISSUE_SLA for L1: attempt 1
    log.tick(10)
    log.issue_failed("L1", retryable=True, command_id="L1/issue/1")  # attempt 2 at once
    log.tick(90)
    log.stamps("L1", "S-L1", command_id="L1/issue/2")
    log.tick(1500)  # ORPHAN_WINDOW for PX
    log.refund_failed("PX/ORPHAN_DEBIT", retryable=True)
    log.tick(2 * HOUR - 1900)
    log.order("O2")
    log.debit("PO2", "O2")
    log.stamps("O2", "S-O2a", "S-O2b")  # a second OVER_ISSUED, younger
    log.order("PEND")
    log.debit("PPEND", "PEND")  # paid a minute before the end: not due yet, as O2
    log.tick(60)
    return log


def run(
    store: LogStore, log: Log, *, start: int = 0, project: bool = True, source: str = SOURCE
) -> None:
    """Run the log's facts from `start` into the store (the first run adds two bad lines)."""
    engine = Engine(RULES, store)
    engine.restore(source)
    facts = log.facts[start:]
    batch = [InputRecord.from_fact(source, start + n, fact) for n, fact in enumerate(facts, 1)]
    if start == 0:
        batch.extend(
            InputRecord.from_raw(source, len(batch) + n, raw) for n, raw in enumerate(BAD_LINES, 1)
        )
    for first in range(0, len(batch), 5):
        engine.process(batch[first : first + 5])
    if project:
        Projector(store, RULES).catch_up()


def promtool() -> str:
    """The promtool binary, or a skip saying how to get it (a skip fails the run in CI)."""
    found = shutil.which("promtool")
    if found is None:
        pytest.skip(
            "promtool is not on PATH: run scripts/ensure-test-tools.sh"
            " (Debian package `prometheus`)"
        )
    return found


def checked_exposition(registry: CollectorRegistry) -> str:
    """The registry's text exposition, after `promtool check metrics` accepted it silently."""
    text = generate_latest(registry)
    checked = subprocess.run(  # noqa: S603 - a fixed command on our own output
        [promtool(), "check", "metrics"], input=text, capture_output=True, check=False
    )
    problems = (checked.stdout + checked.stderr).decode()
    assert (checked.returncode, problems) == (0, ""), problems
    return text.decode()


def samples(text: str) -> Samples:
    """Every sample of an exposition by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    """One sample's value; KeyError when the exposition lacks it."""
    return found[name, frozenset(labels.items())]


def paid_orders_by_sla(views: ReadModels, issue_sla: timedelta = RULES.issue_sla) -> Counter[str]:
    """Paid orders met, missed or pending ISSUE_SLA, from the order rows and shard clocks."""
    clocks = {source.source: source.clock for source in views.summary().sources}
    tally: Counter[str] = Counter()
    for order in views.orders(limit=1000).items:
        if order.paid_at is None or order.first_debit_at is None:
            continue
        due = order.first_debit_at + issue_sla
        if order.remedied_at is not None:
            tally["met" if order.remedied_at <= due else "missed"] += 1
        else:
            clock = clocks[order.source]
            tally["missed" if clock is not None and clock >= due else "pending"] += 1
    return tally


class FinanceMetricsContract:
    """What a scrape answers, on every backend."""

    @pytest.fixture
    def store(self, open_store_on_database: OpenStore) -> LogStore:
        """Give a store with its tables created on the test's own database."""
        return open_store_on_database()

    def test_exposition_passes_promtool_and_equals_the_read_models(self, store: LogStore) -> None:
        """Money, orders, open cases, lag and dead letters are the read models' figures."""
        log = a_day()
        run(store, log)
        found = samples(checked_exposition(finance_registry(store, RULES)))
        views = ReadModels(store)
        summary = views.summary()
        decided = Decided(RULES)
        decided.feed(log)
        for state in ("debited", "kept", "refunded", "refund_pending", "at_risk"):
            expected = getattr(summary.totals, state)
            assert expected == getattr(decided.totals(), state)
            assert value(found, "reconciler_money_rupiah", state=state) == expected
        statuses = Counter(decided.status(order_id).value for order_id in decided.state.orders)
        for status in OrderStatus:
            assert summary.orders_by_status[status.value] == statuses[status.value]
            assert value(found, "reconciler_orders", status=status.value) == statuses[status.value]
        counts = {(row.kind, row.age_bucket): row for row in views.open_case_counts()}
        assert set(counts) == {
            ("OVER_ISSUED", "<1h"),
            ("OVER_ISSUED", "1-6h"),
            ("REFUND_FAILED", "1-6h"),
        }
        for kind in Case:
            for bucket in AGE_BUCKETS:
                row = counts.get((kind.value, bucket))
                labels = {"kind": kind.value, "age_bucket": bucket}
                assert value(found, "reconciler_open_cases", **labels) == (row.count if row else 0)
                amount = value(found, "reconciler_open_cases_rupiah", **labels)
                assert amount == (row.amount if row else 0)
        assert sum(v for (name, _), v in found.items() if name == "reconciler_open_cases") == (
            summary.open_cases
        )
        assert value(found, "reconciler_dead_letters_stored") == summary.dead_letters == 2
        assert value(found, "reconciler_projection_lag_records") == 0
        assert value(found, "reconciler_finance_scrape_error") == 0
        assert summary.clock is not None
        clock = value(found, "reconciler_engine_clock_timestamp_seconds", source=SOURCE)
        assert clock == summary.clock.timestamp() == log.now.timestamp()

    def test_remedy_times_outcomes_and_sla_equal_the_read_models(self, store: LogStore) -> None:
        """Remedy quantiles, outcome counters, oldest case ages and SLA shares agree."""
        run(store, a_day())
        found = samples(checked_exposition(finance_registry(store, RULES)))
        views = ReadModels(store)
        remedies = views.remedy_percentiles()
        assert value(found, "reconciler_remedy_seconds_count") == remedies.count > 0
        for quantile, field in QUANTILES:
            expected = getattr(remedies, field)
            assert value(found, "reconciler_remedy_seconds", quantile=quantile) == expected
        fulfilled = views.remedy_percentiles(remedy="FULFILLED")
        by_status = "reconciler_remedy_by_status_seconds"
        assert value(found, by_status, status="FULFILLED", quantile="1") == fulfilled.max
        assert value(found, f"{by_status}_count", status="FULFILLED") == fulfilled.count
        outcomes = views.outcomes()
        assert {row.outcome for row in outcomes} >= {"commanded", "retried", "failed", "succeeded"}
        for row in outcomes:
            labels = {
                "kind": row.kind,
                "outcome": row.outcome,
                "reason": row.reason,
                "retryable": str(row.retryable).lower(),
            }
            assert value(found, "reconciler_outcomes_total", **labels) == row.count
            assert value(found, "reconciler_outcome_stamps_total", **labels) == row.stamps
            assert value(found, "reconciler_outcome_rupiah_total", **labels) == row.amount
        oldest = max(row.age_seconds for row in views.open_cases(kind="OVER_ISSUED").items)
        assert value(found, "reconciler_oldest_open_case_age_seconds", kind="OVER_ISSUED") == oldest
        assert value(found, "reconciler_oldest_open_case_age_seconds", kind="DOUBLE_REMEDY") == 0
        tally = paid_orders_by_sla(views)
        assert tally == Counter(met=3, missed=3, pending=2)  # M1, A, R1; L1, RF, O1; O2, PEND
        for state in ("met", "missed", "pending"):
            assert value(found, "reconciler_paid_orders", sla=state) == tally[state]
        ratio = value(found, "reconciler_paid_orders_within_sla_ratio")
        assert ratio == tally["met"] / (tally["met"] + tally["missed"])
        assert value(found, "reconciler_issue_sla_seconds") == RULES.issue_sla.total_seconds()

    def test_every_family_is_catalogued_with_its_type_and_labels(self, store: LogStore) -> None:
        """The exposition holds exactly the families FAMILIES lists, as typed and labelled."""
        run(store, a_day())
        text = checked_exposition(finance_registry(store, RULES))
        families = {family.name: family for family in text_string_to_metric_families(text)}
        assert set(families) == set(FAMILIES)
        for name, family in families.items():
            catalogued = FAMILIES[name]
            assert family.type == catalogued.kind
            assert family.samples, name
            for sample in family.samples:
                assert sample.name in catalogued.sample_names()
                assert set(sample.labels) <= set(catalogued.labels)
        # prometheus_client's OpenMetrics functions carry no annotations.
        text = generate_openmetrics(finance_registry(store, RULES)).decode()  # type: ignore[no-untyped-call]
        assert {family.name for family in openmetrics(text)} == set(FAMILIES)  # type: ignore[no-untyped-call]

    def test_lag_counts_the_records_not_yet_projected(self, store: LogStore) -> None:
        """Records logged after the projector's last page show as lag until it catches up."""
        log = a_day()
        run(store, log)
        projected = store.last_position()
        done = len(log.facts)
        log.tick(60)
        log.order("LATE")
        run(store, log, start=done, project=False)
        registry = finance_registry(store, RULES)
        lag = "reconciler_projection_lag_records"
        assert store.last_position() > projected
        assert value(samples(checked_exposition(registry)), lag) == (
            store.last_position() - projected
        )
        Projector(store, RULES).catch_up()
        assert value(samples(checked_exposition(registry)), lag) == 0

    def test_a_failing_read_answers_scrape_error_and_valid_text(
        self, store: LogStore, break_store: Callable[[], None]
    ) -> None:
        """A read model that cannot be read gives scrape_error 1, logged, and still valid text."""
        run(store, a_day())
        registry = finance_registry(store, RULES)
        assert value(samples(checked_exposition(registry)), "reconciler_finance_scrape_error") == 0
        break_store()
        with capture_logs() as logs:
            found = samples(checked_exposition(registry))
        assert value(found, "reconciler_finance_scrape_error") == 1
        assert {name for name, _ in found} == {
            "reconciler_finance_scrape_error",
            "reconciler_finance_scrape_duration_seconds",
        }
        assert [entry["event"] for entry in logs] == ["finance_scrape_failed"]
        assert logs[0]["log_level"] == "error"


class TestOnSQLite(SQLiteBackend, FinanceMetricsContract):
    """The finance metrics over the embedded SQLite log."""

    @pytest.fixture
    def break_store(self, database: Path) -> Callable[[], None]:
        """Give a way to drop the shards' table behind the store's back."""

        def drop() -> None:
            with closing(sqlite3.connect(database)) as connection:
                connection.execute("DROP TABLE rm_sources")

        return drop

    def test_the_finance_families_can_share_a_registry_with_the_service(
        self, store: LogStore
    ) -> None:
        """No finance family takes a name the service's metrics use."""
        registry = CollectorRegistry()
        ServiceMetrics(registry)
        registry.register(FinanceCollector(store, RULES))
        names = {family.name for family in registry.collect()}
        assert set(FAMILIES) < names

    def test_sla_figures_follow_the_configured_issue_sla(self, store: LogStore) -> None:
        """Under a two-hour ISSUE_SLA, the order remedied after 400 s is on time."""
        rules = Rules(issue_sla=timedelta(hours=2))
        run(store, a_day())
        found = samples(checked_exposition(finance_registry(store, rules)))
        assert value(found, "reconciler_issue_sla_seconds") == 2 * HOUR
        tally = paid_orders_by_sla(ReadModels(store), rules.issue_sla)
        assert tally == Counter(met=4, missed=2, pending=2)  # L1 on time; O1, RF still open
        for state in ("met", "missed", "pending"):
            assert value(found, "reconciler_paid_orders", sla=state) == tally[state]


class TestOnPostgres(PostgresBackend, FinanceMetricsContract):
    """The finance metrics over the log's PostgreSQL schema."""

    @pytest.fixture
    def break_store(self, pg_dsn: str, pg_schema: str) -> Callable[[], None]:
        """Give a way to drop the shards' table behind the store's back."""

        def drop() -> None:
            with psycopg.connect(pg_dsn, autocommit=True) as connection:
                connection.execute(
                    sql.SQL("DROP TABLE {}.rm_sources CASCADE").format(sql.Identifier(pg_schema))
                )

        return drop

    def test_the_dashboards_sql_panels_read_what_the_read_models_answer(
        self, store: LogStore, pg_dsn: str, pg_schema: str
    ) -> None:
        """Open cases oldest first and money by hour, as Grafana's SQL reads them, agree."""
        run(store, a_day())
        other = Log()  # a second shard whose clock stops in the first hour
        other.tick()
        other.order("B1")
        other.debit("PB1", "B1")
        other.tick(60)
        run(store, other, source="other.jsonl")
        views = ReadModels(store)
        panels = dict(targets("sql"))
        cases = grafana_query(pg_dsn, pg_schema, panels["Open cases, oldest first (read models)"])
        columns = ("escalation_id", "order_id", "amount", "age_bucket")
        assert [tuple(row[column] for column in columns) for row in cases] == [
            (case.escalation_id, case.order_id, case.amount, case.age_bucket)
            for case in views.open_cases(limit=500).items
        ]
        hours = grafana_query(
            pg_dsn, pg_schema, panels["Money by hour, engine clock (read models)"]
        )
        expected = views.money_by_hour()
        assert len(expected) == 2  # 09:00 and 11:00 WIB: the day's clock skipped 10:00
        assert expected[-1].debited == views.summary().totals.debited  # the other shard's too
        assert hours == [{"time": row.hour, **row.model_dump(exclude={"hour"})} for row in expected]


def grafana_query(dsn: str, schema: str, text: str) -> list[dict[str, Any]]:
    """Run a panel's SQL as Grafana would: its schema variable and time filter filled in."""
    start, end = "2024-09-01T00:00:00Z", "2024-09-30T00:00:00Z"
    text = text.replace("$schema.", f'"{schema}".')
    text = re.sub(r"\$__timeFilter\(([\w.]+)\)", rf"\1 BETWEEN '{start}' AND '{end}'", text)
    with psycopg.connect(dsn, row_factory=dict_row) as connection:
        return connection.execute(text.encode()).fetchall()
