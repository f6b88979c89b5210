"""The finance model in memory: rows and totals follow the decider's state after every record."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.domain.accounting import (
    order_money,
    order_status,
    reported_orders,
    total_money,
)
from reconciler.domain.decider import Decider
from reconciler.domain.rules import Rules
from reconciler.domain.state import State
from reconciler.projections import DivergedError, ProjectionError
from reconciler.projections.changes import Changes
from reconciler.projections.model import FinanceModel
from reconciler.projections.shard import hour_of
from reconciler.store import StoredRecord
from tests.builders import Log
from tests.strategies import logs

RULES = Rules()
FLOOD_RULES = Rules(refund_flood_limit=1)
BOTH = pytest.mark.parametrize("rules", [RULES, FLOOD_RULES], ids=["spec", "flood-guard"])
SOURCE = "events.jsonl"


def stored(log: Log, rules: Rules, batch: int = 1, source: str = SOURCE) -> list[StoredRecord]:
    """The records an engine stores for a log: each batch's facts, then their decisions."""
    decider = Decider(rules, State())
    records: list[StoredRecord] = []

    def add(kind: str, record_id: str, type_: str, payload: bytes) -> None:
        position = len(records) + 1
        records.append(
            StoredRecord(position, kind, record_id, type_, payload, source, b"")  # type: ignore[arg-type]
        )

    for start in range(0, len(log.facts), batch):
        decisions = []
        for fact in log.facts[start : start + batch]:
            add("fact", fact.event_id, fact.type, fact.model_dump_json().encode())
            decisions.extend(decider.decide(fact))
        for decision in decisions:
            add(
                "decision", decision.decision_id, decision.type, decision.model_dump_json().encode()
            )
    return records


def expected_rows(state: State) -> dict[str, tuple[object, ...]]:
    """Every reported order's row as `reconcile`'s report computes it from the state now."""
    rows: dict[str, tuple[object, ...]] = {}
    for order in reported_orders(state):
        money = order_money(order)
        status = order_status(order, money, state.clock).value
        cases = json.dumps([case.value for case in order.cases])
        rows[order.order_id] = (status, order.quantity, order.delivered, money, cases)
    return rows


@BOTH
@given(log=logs(), batch=st.integers(1, 4))
def test_rows_and_totals_follow_the_state_after_every_record(
    rules: Rules, log: Log, batch: int
) -> None:
    """After any record, every reported order's latest row and the totals equal a full recount."""
    model = FinanceModel(rules)
    changes = Changes()
    for record in stored(log, rules, batch):
        model.apply(record, changes)
        shard = model.shard(SOURCE)
        assert shard.totals == total_money(shard.state)
        if shard.state.clock is None:
            continue
        written = {
            order_id: (row.status, row.quantity, row.delivered, row.money, row.cases)
            for (_, order_id), row in changes.orders.items()
        }
        assert written == expected_rows(shard.state)


@BOTH
@given(log=logs())
def test_the_story_index_names_every_decision_about_an_order(rules: Rules, log: Log) -> None:
    """Every decision record that names an order is indexed under that order."""
    model = FinanceModel(rules)
    changes = Changes()
    records = stored(log, rules)
    for record in records:
        model.apply(record, changes)
    for record in records:
        order_id = json.loads(record.payload).get("order_id")
        if record.kind == "decision" and order_id is not None:
            assert (order_id, record.position) in changes.story


def test_an_order_expiring_unpaid_is_rewritten_at_the_tick_that_expires_it() -> None:
    """A tick past `expires_at`, naming no order, still moves the unpaid order to EXPIRED_UNPAID."""
    log = Log()
    log.tick()
    log.order("A", expires_in=600)
    log.tick(600)
    model = FinanceModel(RULES)
    changes = Changes()
    for record in stored(log, RULES):
        model.apply(record, changes)
    row = changes.orders[SOURCE, "A"]
    assert (row.status, row.updated_at) == ("EXPIRED_UNPAID", log.now)


def test_facts_before_the_first_tick_are_written_at_it() -> None:
    """Orders placed before any tick get their rows, stamped with the first tick's time."""
    log = Log()
    log.order("A")
    log.debit("P1", "A")
    first = log.tick(5)
    model = FinanceModel(RULES)
    changes = Changes()
    for record in stored(log, RULES):
        model.apply(record, changes)
    row = changes.orders[SOURCE, "A"]
    assert (row.status, row.money.debited, row.placed_at, row.paid_at) == (
        "PAID",
        12_500,
        first.at,
        first.at,
    )


def test_hour_rows_hold_the_totals_as_the_hour_closed() -> None:
    """The hour a tick leaves keeps the totals from before that tick's own effects."""
    log = Log(datetime(2024, 9, 4, 9, 50, tzinfo=timezone(timedelta(hours=7))))
    log.tick()
    log.order("A")
    log.debit("P1", "A")
    log.debit("P2", "A")  # a duplicate: refunded at once
    log.tick(15 * 60)  # 10:05, into the next UTC hour
    log.refund_ok("P2/DUPLICATE_DEBIT")
    model = FinanceModel(RULES)
    changes = Changes()
    for record in stored(log, RULES):
        model.apply(record, changes)
    first_hour = datetime(2024, 9, 4, 2, tzinfo=UTC)
    closing = changes.hours[SOURCE, first_hour]
    current = changes.hours[SOURCE, first_hour + timedelta(hours=1)]
    assert (closing.refund_pending, closing.refunded) == (12_500, 0)
    assert (current.refund_pending, current.refunded) == (0, 12_500)


def test_hour_of_is_the_utc_hour_start() -> None:
    """A WIB clock reading falls in the UTC hour that contains it."""
    clock = datetime(2024, 9, 4, 10, 59, 59, 999_999, tzinfo=timezone(timedelta(hours=7)))
    assert hour_of(clock) == datetime(2024, 9, 4, 3, tzinfo=UTC)


def test_a_decision_the_rules_do_not_lead_to_is_refused() -> None:
    """Projecting under other rules than the engine's stops at the first foreign decision."""
    log = Log()
    log.tick()
    log.order("A")
    log.debit("P1", "A")
    log.tick(300)  # ISSUE_SLA: the engine commands issuance
    model = FinanceModel(Rules(issue_sla=timedelta(hours=1)))
    records = stored(log, RULES)
    for record in records[:-2]:
        model.apply(record, Changes())
    with pytest.raises(DivergedError, match="A/PAID_NOT_ISSUED/detected"):
        model.apply(records[-2], Changes())


def test_a_decision_dropped_as_another_shards_duplicate_is_skipped() -> None:
    """A decision missing from the log (stored under another source) does not stop the shard."""
    log = Log()
    log.tick()
    log.order("A")
    log.debit("P1", "A")
    log.debit("P2", "A")  # DUPLICATE_DEBIT: a detection, then a refund command
    records = [r for r in stored(log, RULES) if not r.record_id.endswith("/detected")]
    model = FinanceModel(RULES)
    changes = Changes()
    for record in records:
        model.apply(record, changes)
    assert changes.outcomes[SOURCE, "refund", "commanded", "DUPLICATE_DEBIT", 0].count == 1


def test_a_logged_fact_that_no_longer_validates_stops_the_projection() -> None:
    """A fact record whose payload does not validate is an error, never skipped."""
    record = StoredRecord(1, "fact", "e1", "ClockTicked", b"{}", SOURCE, b"")
    with pytest.raises(ProjectionError, match="no longer validates"):
        FinanceModel(RULES).apply(record, Changes())
