"""The slimmer decider state and its cold tier: same decisions, same money, less memory."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings

from reconciler.domain import archive as archive_module
from reconciler.domain.accounting import order_money, order_status, reported_orders, total_money
from reconciler.domain.archive import (
    ATTEMPT_FIELDS,
    DEBIT_FIELDS,
    ORDER_FIELDS,
    REFUND_FIELDS,
    OrderArchive,
    _dump,
    _load,
)
from reconciler.domain.decider import Decider
from reconciler.domain.decisions import Case
from reconciler.domain.rules import Rules
from reconciler.domain.state import Attempt, Debit, Order, Refund, RefundStatus, State
from reconciler.ingest.source import InputRecord
from reconciler.replay.deciders import InMemory
from tests.builders import UNIT, Log
from tests.strategies import logs

RULES = Rules()
# The refund-flood guard at its tightest, so that generated logs hold and release often.
FLOOD_RULES = Rules(refund_flood_limit=1)
BOTH = pytest.mark.parametrize("rules", [RULES, FLOOD_RULES], ids=["spec", "flood-guard"])


def endings(state: State) -> list[tuple[str, str, object, int, tuple[str, ...]]]:
    """Every reported order's status, money, stamps and cases, sorted by id."""
    return sorted(
        (
            order.order_id,
            order_status(order, order_money(order), state.clock).value,
            order_money(order),
            order.delivered,
            tuple(case.value for case in order.cases),
        )
        for order in reported_orders(state)
    )


def run(log: Log, rules: Rules, bound: int | None) -> tuple[list[str], list[object], State]:
    """Decide the log fact by fact, spilling between facts; decisions and totals after each."""
    state = State() if bound is None else State(archive=OrderArchive(bound))
    decider = Decider(rules, state)
    decisions: list[str] = []
    totals: list[object] = []
    for fact in log.facts:
        decisions.extend(decision.model_dump_json() for decision in decider.decide(fact))
        state.archive_settled()
        totals.append(total_money(state))
    return decisions, totals, state


@BOTH
@settings(max_examples=60)
@given(log=logs(max_actions=60))
def test_a_tiny_archive_changes_no_decision_and_no_total(rules: Rules, log: Log) -> None:
    """With at most one order in memory, decisions, totals and endings are those without."""
    decisions, totals, state = run(log, rules, None)
    archived_decisions, archived_totals, archived = run(log, rules, 1)
    assert archived_decisions == decisions
    assert archived_totals == totals
    assert endings(archived) == endings(state)
    assert len(archived.open_escalations) == len(state.open_escalations)


@BOTH
@given(log=logs(max_actions=60))
def test_the_in_memory_replay_with_a_cold_tier_rederives_the_same(rules: Rules, log: Log) -> None:
    """`InMemory` with a bound of 1 hands back what it does with every order in memory."""
    records = [
        InputRecord("s", position, fact.model_dump_json().encode(), fact)
        for position, fact in enumerate(log.facts, 1)
    ]
    plain, cold = InMemory(rules, cold_after=None), InMemory(rules, cold_after=1)
    # A page of three facts: the replay spills between pages.
    pages = [records[start : start + 3] for start in range(0, len(records), 3)]
    assert [cold.feed(page) for page in pages] == [plain.feed(page) for page in pages]
    assert total_money(cold.states()["s"]) == total_money(plain.states()["s"])


def settled_log() -> Log:
    """Two orders paid, delivered and long past every deadline, then a third, paid."""
    log = Log()
    log.tick()
    for order_id, payment_id, serial in (("A", "PA", "SA"), ("B", "PB", "SB")):
        log.order(order_id, quantity=1, expires_in=900)
        log.debit(payment_id, order_id, amount=UNIT)
        log.stamps(order_id, serial)
    log.tick(86_400)
    log.order("C", quantity=1, expires_in=900)
    log.debit("PC", "C", amount=UNIT)  # ISSUE_SLA now runs for C: it stays
    return log


def archived_state() -> State:
    """`settled_log` decided with a bound of 1 and spilled once."""
    state = State(archive=OrderArchive(1))
    decider = Decider(RULES, state)
    for fact in settled_log().facts:
        decider.decide(fact)
    assert state.archive_settled() == 2
    return state


def test_settled_orders_leave_memory_with_their_debits() -> None:
    """Spilling moves settled orders and their debits out of the resident dicts."""
    state = archived_state()
    assert sorted(dict.keys(state.orders)) == ["C"]
    assert sorted(dict.keys(state.payments)) == ["PC"]
    assert state.archive is not None
    assert state.archive.archived_orders == 2


def test_every_lookup_finds_an_archived_order() -> None:
    """`in`, `get`, `[]` and `order()` see archived orders, payments and serials."""
    state = archived_state()
    assert "PA" in state.payments
    assert "SA" in state.serials
    assert "A" in state.orders
    assert "Z" not in state.orders
    assert "PZ" not in state.payments
    assert "SZ" not in state.serials
    assert state.orders.get("Z") is None
    order = state.order("A")
    assert order.placed
    assert order.delivered == 1
    debit = state.payments["PA"]
    assert order.payment is debit
    assert order.debits == (debit,)
    assert debit.order_id is order.order_id
    assert state.orders.get("B") is not None
    assert state.payments.get("PB") is state.orders["B"].payment


def test_a_brought_back_refund_is_its_debits_refund() -> None:
    """An archived refund comes back as the very object its debit points at."""
    log = Log()
    log.tick()
    log.order("A", quantity=1, expires_in=900)
    log.debit("PA", "A", amount=UNIT)
    log.debit("PD", "A", amount=UNIT)  # a duplicate debit: refunded
    log.refund_ok("PD/DUPLICATE_DEBIT", UNIT)
    log.stamps("A", "SA")
    log.tick(86_400)
    log.order("C", quantity=1, expires_in=900)
    log.debit("PC", "C", amount=UNIT)
    state = State(archive=OrderArchive(1))
    decider = Decider(RULES, state)
    for fact in log.facts:
        decider.decide(fact)
    assert state.archive_settled() == 1
    refund = state.refunds["PD/DUPLICATE_DEBIT"]
    assert refund.status is RefundStatus.SUCCEEDED
    assert state.payments["PD"].refund is refund
    assert [debit.payment_id for debit in state.orders["A"].debits] == ["PA", "PD"]


def test_orders_something_waits_on_stay_in_memory() -> None:
    """An order with a pending deadline or an open attempt is not archived."""
    log = Log()
    log.tick()
    log.order("A", quantity=1, expires_in=900)
    log.debit("PA", "A", amount=UNIT)  # ISSUE_SLA now runs for A
    log.order("B", quantity=1, expires_in=900)
    log.order("C", quantity=1, expires_in=900)
    state = State(archive=OrderArchive(1))
    decider = Decider(RULES, state)
    for fact in log.facts:
        decider.decide(fact)
    assert state.archive_settled() == 2
    assert list(dict.keys(state.orders)) == ["A"]


def test_a_unit_survives_the_round_trip() -> None:
    """Dumping and loading an order keeps every field, shared objects and one tzinfo."""
    zone = timezone(timedelta(hours=7))
    at = datetime(2026, 1, 1, 12, tzinfo=zone)
    order = Order("A", placed=True, quantity=3, total=3 * UNIT, expires_at=at, cancelled=True)
    payment = Debit("P1", order.order_id, 3 * UNIT, at)
    extra = Debit("P2", order.order_id, 5_000, at)
    refund = Refund("P2/DUPLICATE_DEBIT", "P2", "A", 5_000, Case.DUPLICATE_DEBIT)
    withdrawn = Refund(
        "P1/PAID_NOT_ISSUED", "P1", "A", UNIT, Case.PAID_NOT_ISSUED, status=RefundStatus.WITHDRAWN
    )
    extra.refund = refund
    order.attach_debit(payment)
    order.attach_debit(extra)
    order.payment, order.paid_at, order.delivered, order.first_delivery_at = payment, at, 2, at
    order.attempts, order.open_attempt = 1, Attempt(1, "A/issue/1", 3)
    order.add_case(Case.DUPLICATE_DEBIT)
    order.add_escalation("A/OVER_ISSUED")
    loaded, refunds = _load(_dump(order, (withdrawn,)))
    assert loaded == order
    assert refunds == (withdrawn, refund)
    assert loaded.payment is loaded.debits[0]
    assert loaded.debits[1].refund is refunds[1]
    assert loaded.expires_at is not None
    assert loaded.paid_at is not None
    assert loaded.expires_at.tzinfo is loaded.paid_at.tzinfo


def test_the_archive_packs_every_field() -> None:
    """The packed field lists are the dataclasses' fields: a new field must be packed too."""
    assert tuple(f.name for f in fields(Order)) == ORDER_FIELDS
    assert tuple(f.name for f in fields(Debit)) == DEBIT_FIELDS
    assert tuple(f.name for f in fields(Refund)) == REFUND_FIELDS
    assert tuple(f.name for f in fields(Attempt)) == ATTEMPT_FIELDS


def test_an_order_keeps_no_empty_containers() -> None:
    """A new order shares the empty tuple for cases and escalations and holds no debit list."""
    order = Order("A")
    assert order.cases == ()
    assert order.escalations == ()
    assert order.debits == ()
    assert order.held_debits is None
    assert order.unit_total == 0


def test_an_order_grows_its_containers_when_needed() -> None:
    """Cases and escalations become lists once added; a second debit makes a tuple."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    order = Order("A", placed=True, quantity=2, total=2 * UNIT)
    first, second = Debit("P1", "A", UNIT, at), Debit("P2", "A", UNIT, at)
    order.attach_debit(first)
    assert order.held_debits is first
    order.attach_debit(second)
    assert order.debits == (first, second)
    order.add_case(Case.DUPLICATE_DEBIT)
    order.add_case(Case.DUPLICATE_DEBIT)
    assert order.cases == [Case.DUPLICATE_DEBIT]
    order.add_escalation("E1")
    order.remove_escalation("E1")
    order.remove_escalation(None)
    assert order.escalations == ()
    assert order.unit_total == UNIT


def test_an_archive_serves_one_state() -> None:
    """Attaching one archive to two states is refused."""
    archive = OrderArchive(10)
    State(archive=archive)
    with pytest.raises(ValueError, match="one state"):
        State(archive=archive)


def test_archived_orders_are_read_a_page_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Iterating the archive pages through it in id order, every order once."""
    monkeypatch.setattr(archive_module, "_PAGE", 1)
    state = archived_state()
    assert state.archive is not None
    assert [order.order_id for order in state.archive.orders()] == ["A", "B"]
    assert [order.order_id for order in reported_orders(state)] == ["C", "A", "B"]
