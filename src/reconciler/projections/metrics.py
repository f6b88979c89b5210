"""Finance figures for Prometheus: the read models, read afresh on every scrape.

    registry = finance_registry(store, rules)       # serve it: make_asgi_app(registry)
    generate_latest(registry)                       # the text Prometheus scrapes

`FinanceCollector` is a prometheus_client custom collector. On each scrape it reads the
read models (`ReadModels`: the summary, open cases by kind and age, outcomes, remedy
percentiles) and two counts of its own over the same tables: paid orders against
`ISSUE_SLA`, and the oldest open case of each kind (which is why it is given the store,
not a `ReadModels`; its statements follow `database`'s conventions). It yields the
families `FAMILIES` lists, with their names, types and labels; projections/README.md
("Metrics") says what each figure means. The figures are as the projector last wrote
them, on the engine's clock; `reconciler_projection_lag_records` says how far behind the
log that is.

Series whose label values SPEC names (money states, order statuses, case kinds and age
buckets) are always exported, at 0 when there is nothing, so that a dashboard shows 0
rather than no data. A scrape that cannot read the read models never fails the
endpoint: the error is logged and the scrape answers `reconciler_finance_scrape_error 1`
and its duration alone, so Prometheus marks the figures stale instead of showing old ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import structlog
from prometheus_client import CollectorRegistry, Metric
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from reconciler.domain.accounting import OrderStatus
from reconciler.domain.decisions import Case
from reconciler.projections.database import view_database
from reconciler.projections.queries import ReadModels
from reconciler.projections.rows import AGE_BUCKETS, Figures
from reconciler.projections.shard import REMEDIES

if TYPE_CHECKING:
    from collections.abc import Iterator
    from datetime import timedelta

    from reconciler.domain.rules import Rules
    from reconciler.projections.database import ViewDatabase
    from reconciler.projections.rows import CaseCount, OutcomeRow, RemedyPercentiles, Summary
    from reconciler.store import LogStore

log = structlog.get_logger("reconciler.projections")

Kind = Literal["gauge", "counter", "summary"]


@dataclass(frozen=True, slots=True)
class Family:
    """One exported metric family: its name, Prometheus type, labels and help text."""

    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str

    def sample_names(self) -> tuple[str, ...]:
        """The names its samples carry in the text format (a counter's end in `_total`)."""
        if self.kind == "counter":
            return (f"{self.name}_total",)
        if self.kind == "summary":
            return (self.name, f"{self.name}_count")
        return (self.name,)


_OUTCOME = ("kind", "outcome", "reason", "retryable")
FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family(
            "reconciler_money_rupiah",
            "gauge",
            ("state",),
            "Money by SPEC state, in rupiah; debited = kept + refunded + refund_pending + at_risk.",
        ),
        Family("reconciler_orders", "gauge", ("status",), "Orders by SPEC status."),
        Family(
            "reconciler_open_cases",
            "gauge",
            ("kind", "age_bucket"),
            "Open escalations by kind and age on the engine clock.",
        ),
        Family(
            "reconciler_open_cases_rupiah",
            "gauge",
            ("kind", "age_bucket"),
            "Money at stake in open escalations, in rupiah.",
        ),
        Family(
            "reconciler_oldest_open_case_age_seconds",
            "gauge",
            ("kind",),
            "Age of the oldest open escalation of a kind, engine clock (0: none).",
        ),
        Family(
            "reconciler_remedy_seconds",
            "summary",
            ("quantile",),
            "Seconds from first debit to remedy, all orders (nearest rank; 1 = longest).",
        ),
        Family(
            "reconciler_remedy_by_status_seconds",
            "summary",
            ("status", "quantile"),
            "Seconds from first debit to remedy, by the status the order reached.",
        ),
        Family(
            "reconciler_paid_orders",
            "gauge",
            ("sla",),
            "Paid orders remedied within ISSUE_SLA of the first debit: met, missed, pending.",
        ),
        Family(
            "reconciler_paid_orders_within_sla_ratio",
            "gauge",
            (),
            "Share of paid orders remedied within ISSUE_SLA: met / (met + missed).",
        ),
        Family(
            "reconciler_issue_sla_seconds",
            "gauge",
            (),
            "ISSUE_SLA, the rule the SLA figures measure against.",
        ),
        Family(
            "reconciler_outcomes",
            "counter",
            _OUTCOME,
            "Issuance and refund commands and results, by kind, outcome and reason.",
        ),
        Family(
            "reconciler_outcome_stamps",
            "counter",
            _OUTCOME,
            "Stamps asked for (commands) or delivered (results).",
        ),
        Family(
            "reconciler_outcome_rupiah",
            "counter",
            _OUTCOME,
            "Rupiah in refund commands and results.",
        ),
        Family(
            "reconciler_dead_letters_stored",
            "gauge",
            (),
            "Input records kept in the dead-letter store.",
        ),
        Family(
            "reconciler_projection_lag_records",
            "gauge",
            (),
            "Log records not yet projected into the read models (log end - projected position).",
        ),
        Family(
            "reconciler_engine_clock_timestamp_seconds",
            "gauge",
            ("source",),
            "A shard's engine clock (its last ClockTicked), as a Unix time.",
        ),
        Family(
            "reconciler_finance_scrape_error",
            "gauge",
            (),
            "1 if this scrape could not read the read models (the other figures are then absent).",
        ),
        Family(
            "reconciler_finance_scrape_duration_seconds",
            "gauge",
            (),
            "Time this scrape took to read the read models.",
        ),
    )
}
"""Every family the collector exports, by name."""

QUANTILES = (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99"), ("1", "max"))
"""The remedy summaries' quantile labels and the `RemedyPercentiles` field each reads."""
SLA_STATES = ("met", "missed", "pending")
_REMEDIES = tuple(sorted(status.value for status in REMEDIES))

_PAID_ORDERS = (
    "SELECT count(*), count(t.order_id),"
    " coalesce(sum(CASE WHEN t.seconds <= ? THEN 1 ELSE 0 END), 0)"
    " FROM {schema}.rm_orders AS o LEFT JOIN {schema}.rm_remedy_times AS t"
    " ON t.source = o.source AND t.order_id = o.order_id WHERE o.paid_at IS NOT NULL"
)
_OVERDUE = (
    "SELECT count(*)"
    " FROM {schema}.rm_orders AS o LEFT JOIN {schema}.rm_remedy_times AS t"
    " ON t.source = o.source AND t.order_id = o.order_id"
    " WHERE o.source = ? AND o.paid_at IS NOT NULL AND t.order_id IS NULL"
    " AND o.first_debit_at <= ?"
)
_OLDEST_BY_KIND = "SELECT reason, max(age_seconds) FROM {schema}.rm_open_cases GROUP BY reason"


@dataclass(frozen=True, slots=True)
class PaidOrders:
    """Paid orders against ISSUE_SLA: remedied within it, not, or not yet due."""

    met: int
    missed: int
    pending: int

    @property
    def within_sla_ratio(self) -> float | None:
        """The share met / (met + missed); None while no paid order has reached its SLA."""
        due = self.met + self.missed
        return self.met / due if due else None


@dataclass(frozen=True, slots=True)
class Reading:
    """Everything one scrape read, before it is shaped into families."""

    summary: Summary
    case_counts: list[CaseCount]
    oldest_case_age: dict[str, float]
    outcomes: list[OutcomeRow]
    remedies: RemedyPercentiles
    remedies_by_status: dict[str | None, RemedyPercentiles]
    paid_orders: PaidOrders


class FinanceCollector:
    """A custom collector: the finance read models as Prometheus families, per scrape."""

    def __init__(self, store: LogStore, rules: Rules) -> None:
        """Read the read models beside `store`'s log; SLA figures measure `rules.issue_sla`."""
        self._read_models = ReadModels(store)
        self._views: ViewDatabase = view_database(store)
        self._issue_sla = rules.issue_sla

    def describe(self) -> list[Metric]:
        """The families, without samples, so a registry can check names without reading."""
        return [Metric(family.name, family.help, family.kind) for family in FAMILIES.values()]

    def collect(self) -> Iterator[Metric]:
        """Read the read models and yield every family; on failure, the error gauge only."""
        started = time.perf_counter()
        try:
            reading = self.read()
        except Exception:  # whatever failed, the scrape must still answer
            log.exception("finance_scrape_failed")
            yield _gauge("reconciler_finance_scrape_error", 1)
            yield _gauge("reconciler_finance_scrape_duration_seconds", _since(started))
            return
        yield from _families(reading, self._issue_sla)
        yield _gauge("reconciler_finance_scrape_error", 0)
        yield _gauge("reconciler_finance_scrape_duration_seconds", _since(started))

    def read(self) -> Reading:
        """Read the figures of one scrape (the summary first: it creates missing tables)."""
        views = self._read_models
        summary = views.summary()
        with self._views.read() as session:
            (paid, remedied, met), *_ = session.rows(
                _PAID_ORDERS, (self._issue_sla.total_seconds(),)
            )
            overdue = sum(
                session.rows(_OVERDUE, (source.source, source.clock - self._issue_sla))[0][0]
                for source in summary.sources
                if source.clock is not None
            )
            oldest = {str(kind): float(age) for kind, age in session.rows(_OLDEST_BY_KIND)}
        return Reading(
            summary=summary,
            case_counts=views.open_case_counts(),
            oldest_case_age=oldest,
            outcomes=views.outcomes(),
            remedies=views.remedy_percentiles(),
            remedies_by_status={
                status: views.remedy_percentiles(remedy=status) for status in _REMEDIES
            },
            paid_orders=PaidOrders(
                met=int(met),
                missed=int(remedied) - int(met) + overdue,
                pending=int(paid) - int(remedied) - overdue,
            ),
        )


def finance_registry(store: LogStore, rules: Rules) -> CollectorRegistry:
    """A fresh registry holding only a `FinanceCollector` over `store`, ready to serve."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FinanceCollector(store, rules))
    return registry


def _families(reading: Reading, issue_sla: timedelta) -> Iterator[Metric]:
    summary = reading.summary
    money = _labelled("reconciler_money_rupiah")
    for state in Figures.model_fields:
        money.add_metric([state], getattr(summary.totals, state))
    yield money
    orders = _labelled("reconciler_orders")
    for status in OrderStatus:
        orders.add_metric([status.value], summary.orders_by_status.get(status.value, 0))
    yield orders
    yield from _open_cases(reading)
    yield _remedy_summary("reconciler_remedy_seconds", {None: reading.remedies})
    yield _remedy_summary("reconciler_remedy_by_status_seconds", reading.remedies_by_status)
    yield from _sla(reading.paid_orders, issue_sla)
    yield from _outcomes(reading.outcomes)
    yield _gauge("reconciler_dead_letters_stored", summary.dead_letters)
    yield _gauge("reconciler_projection_lag_records", summary.log_position - summary.position)
    clocks = _labelled("reconciler_engine_clock_timestamp_seconds")
    for source in summary.sources:
        if source.clock is not None:
            clocks.add_metric([source.source], source.clock.timestamp())
    yield clocks


def _open_cases(reading: Reading) -> Iterator[Metric]:
    kinds = sorted({case.value for case in Case} | {row.kind for row in reading.case_counts})
    found = {(row.kind, row.age_bucket): row for row in reading.case_counts}
    counts = _labelled("reconciler_open_cases")
    amounts = _labelled("reconciler_open_cases_rupiah")
    oldest = _labelled("reconciler_oldest_open_case_age_seconds")
    for kind in kinds:
        for bucket in AGE_BUCKETS:
            row = found.get((kind, bucket))
            counts.add_metric([kind, bucket], row.count if row else 0)
            amounts.add_metric([kind, bucket], row.amount if row else 0)
        oldest.add_metric([kind], reading.oldest_case_age.get(kind, 0.0))
    yield from (counts, amounts, oldest)


def _remedy_summary(name: str, by_status: dict[str | None, RemedyPercentiles]) -> Metric:
    family = FAMILIES[name]
    metric = Metric(name, family.help, "summary")
    for status, percentiles in by_status.items():
        labels = {"status": status} if status is not None else {}
        for quantile, field in QUANTILES:
            value = getattr(percentiles, field)
            if value is not None:
                metric.add_sample(name, {**labels, "quantile": quantile}, float(value))
        metric.add_sample(f"{name}_count", labels, percentiles.count)
    return metric


def _sla(paid: PaidOrders, issue_sla: timedelta) -> Iterator[Metric]:
    orders = _labelled("reconciler_paid_orders")
    for state in SLA_STATES:
        orders.add_metric([state], getattr(paid, state))
    yield orders
    ratio = _labelled("reconciler_paid_orders_within_sla_ratio")
    if paid.within_sla_ratio is not None:
        ratio.add_metric([], paid.within_sla_ratio)
    yield ratio
    yield _gauge("reconciler_issue_sla_seconds", issue_sla.total_seconds())


def _outcomes(rows: list[OutcomeRow]) -> Iterator[Metric]:
    names = ("reconciler_outcomes", "reconciler_outcome_stamps", "reconciler_outcome_rupiah")
    counters = [CounterMetricFamily(name, FAMILIES[name].help, labels=_OUTCOME) for name in names]
    for row in rows:
        labels = [row.kind, row.outcome, row.reason, "true" if row.retryable else "false"]
        for counter, value in zip(counters, (row.count, row.stamps, row.amount), strict=True):
            counter.add_metric(labels, value)
    yield from counters


def _labelled(name: str) -> GaugeMetricFamily:
    family = FAMILIES[name]
    return GaugeMetricFamily(name, family.help, labels=family.labels)


def _gauge(name: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, FAMILIES[name].help, value=value)


def _since(started: float) -> float:
    return time.perf_counter() - started
