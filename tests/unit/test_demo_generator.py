from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta
from random import Random

import pytest

from reconciler.demo import DemoConfig, GeneratedDay, generate_day
from reconciler.demo.traffic import order_times
from reconciler.domain.events import (
    OrderCancelled,
    OrderPlaced,
    PaymentDebited,
    StampIssuanceFailed,
    StampIssued,
)

# Every failure mode turned up, so a few hundred orders show each of them.
LOUD = DemoConfig(
    orders=400,
    seed=7,
    abandon_rate=0.1,
    cancel_unpaid_rate=0.05,
    cancel_after_payment_rate=0.3,
    double_debit_rate=0.05,
    late_payment_rate=0.05,
    amount_mismatch_rate=0.03,
    orphan_debit_rate=0.03,
    order_event_late_rate=0.03,
    webhook_loss_rate=0.1,
    portal_partial_delivery_rate=0.3,
    duplicate_serial_rate=0.02,
    delivered_unpaid_rate=0.02,
)


@pytest.fixture(scope="module")
def day() -> GeneratedDay:
    """The loud day, generated once."""
    return generate_day(LOUD)


def test_same_seed_same_day() -> None:
    """Generating twice from one seed gives the same facts, byte for byte."""
    config = DemoConfig(orders=200, seed=11)
    first = [fact.model_dump_json() for _, fact in generate_day(config).arrivals]
    second = [fact.model_dump_json() for _, fact in generate_day(config).arrivals]
    other = [fact.model_dump_json() for _, fact in generate_day(DemoConfig(orders=200)).arrivals]
    assert first == second
    assert first != other


def test_arrivals_are_in_time_order_with_unique_ids(day: GeneratedDay) -> None:
    """The day's facts come sorted by arrival, each with its own readable event id."""
    times = [arrives_at for arrives_at, _ in day.arrivals]
    assert times == sorted(times)
    ids = [fact.event_id for _, fact in day.arrivals]
    assert len(set(ids)) == len(ids)
    assert ids[:2] == ["evt-000001", "evt-000002"]


def test_orders_are_priced_as_e_meterai(day: GeneratedDay) -> None:
    """Orders cost Rp 12,500 a stamp, mostly one stamp, and expire 15 to 60 minutes out."""
    orders = [fact for _, fact in day.arrivals if isinstance(fact, OrderPlaced)]
    assert len(orders) == LOUD.orders
    assert all(order.unit_price == 10_000 and order.unit_fee == 2_500 for order in orders)
    assert all(order.total == order.quantity * 12_500 for order in orders)
    assert all(order.occurred_at.utcoffset() == timedelta(hours=7) for order in orders)
    quantities = Counter(order.quantity for order in orders)
    assert quantities[1] > len(orders) * 0.7
    assert max(quantities) <= 5
    windows = {order.expires_at - order.occurred_at for order in orders}
    assert min(windows) == timedelta(minutes=15)
    assert max(windows) == timedelta(minutes=60)


def test_callback_and_settlement_share_payment_id_not_event_id(day: GeneratedDay) -> None:
    """One debit reported by webhook and settlement file keeps its payment id, not its event id."""
    reports: dict[str, list[PaymentDebited]] = defaultdict(list)
    for _, fact in day.arrivals:
        if isinstance(fact, PaymentDebited):
            reports[fact.payment_id].append(fact)
    assert set(reports) == set(day.payments)
    for payment_id, facts in reports.items():
        sources = [fact.source for fact in facts]
        assert sources.count("settlement") == 1, payment_id
        assert len({fact.event_id for fact in facts}) == len(facts)
        assert len({(fact.amount, fact.order_id, fact.occurred_at) for fact in facts}) == 1


def test_settlement_arrives_hours_after_the_debit(day: GeneratedDay) -> None:
    """A settlement report reaches the engine at least the settlement lag after the debit."""
    for arrives_at, fact in day.arrivals:
        if isinstance(fact, PaymentDebited) and fact.source == "settlement":
            assert arrives_at - fact.occurred_at >= LOUD.settlement_lag


def test_every_failure_mode_occurs(day: GeneratedDay) -> None:  # noqa: C901 - one count per mode
    """Each failure mode the demo promises is visible in the facts themselves."""
    orders: dict[str, OrderPlaced] = {}
    debits: dict[str, list[PaymentDebited]] = defaultdict(list)
    seen_before_order: set[str] = set()
    serial_uses: Counter[str] = Counter()
    found: Counter[str] = Counter()
    for _, fact in day.arrivals:
        if isinstance(fact, OrderPlaced):
            orders[fact.order_id] = fact
        elif isinstance(fact, PaymentDebited):
            if fact.order_id is None:
                found["orphan_debit"] += 1
            else:
                debits[fact.order_id].append(fact)
                if fact.order_id not in orders:
                    seen_before_order.add(fact.order_id)
        elif isinstance(fact, StampIssued):
            serial_uses.update(fact.serial_numbers)
            order = orders[fact.order_id]
            if len(fact.serial_numbers) < order.quantity:
                found["partial_delivery"] += 1
            if not debits[fact.order_id]:
                found["delivered_unpaid"] += 1
        elif isinstance(fact, OrderCancelled):
            found["cancelled_after_payment" if debits[fact.order_id] else "cancelled_unpaid"] += 1
    for order_id, reports in debits.items():
        order = orders[order_id]
        by_payment = {report.payment_id: report for report in reports}
        sources: dict[str, set[str]] = {payment_id: set() for payment_id in by_payment}
        for report in reports:
            sources[report.payment_id].add(report.source)
        found["webhook_lost"] += sum("callback" not in seen for seen in sources.values())
        found["inquiry"] += sum("inquiry" in seen for seen in sources.values())
        full = [p for p in by_payment.values() if p.amount == order.total]
        found["double_debit"] += len(full) > 1
        found["amount_mismatch"] += any(p.amount != order.total for p in by_payment.values())
        found["late_payment"] += any(p.occurred_at > order.expires_at for p in full)
    found["order_event_late"] = len(seen_before_order)
    found["duplicate_serial"] = sum(uses > 1 for uses in serial_uses.values())
    expected = {
        "orphan_debit",
        "partial_delivery",
        "delivered_unpaid",
        "cancelled_after_payment",
        "cancelled_unpaid",
        "webhook_lost",
        "inquiry",
        "double_debit",
        "amount_mismatch",
        "late_payment",
        "order_event_late",
        "duplicate_serial",
    }
    assert {mode for mode in expected if found[mode] > 0} == expected
    assert {mode for mode in expected if day.modes[mode] > 0} == expected


def test_portal_issues_nothing_during_the_outage() -> None:
    """In the outage window the portal delivers no stamps and reports failures instead."""
    config = DemoConfig(orders=1500, seed=3)
    start, end = config.outage
    portal_facts = [
        fact
        for _, fact in generate_day(config).arrivals
        if isinstance(fact, StampIssued | StampIssuanceFailed) and start <= fact.occurred_at < end
    ]
    assert portal_facts
    assert all(isinstance(fact, StampIssuanceFailed) for fact in portal_facts)
    assert all(fact.command_id is None for fact in portal_facts)


def test_orders_peak_in_the_registration_rush() -> None:
    """Traffic ramps up in the morning, peaks mid-morning and tails off in the evening."""
    config = DemoConfig(orders=5000)
    rng = Random(1)  # noqa: S311 - a seeded simulation
    hours = Counter(moment.hour for moment in order_times(config, rng))
    assert hours[10] > 2 * hours[14]
    assert hours[10] > 3 * hours[7]
    assert hours[14] > hours[22]
    assert hours.most_common(1)[0][0] in {10, 11}


def test_config_refuses_a_rate_outside_zero_one() -> None:
    """A failure rate must be a probability."""
    with pytest.raises(ValueError, match="webhook_loss_rate"):
        DemoConfig(webhook_loss_rate=1.5)
