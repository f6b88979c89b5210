"""SPEC's order statuses: the first that holds, in SPEC's order."""

from __future__ import annotations

from reconciler.domain.accounting import OrderStatus
from reconciler.domain.rules import Rules
from tests.builders import UNIT, Engine, Log


def test_status_awaiting_payment_for_a_new_order() -> None:
    """A placed, unpaid, unexpired order is AWAITING_PAYMENT."""
    log, engine = Log(), Engine()
    log.tick()
    log.order("A1")
    engine.feed(log)
    assert engine.status("A1") is OrderStatus.AWAITING_PAYMENT


def test_status_refunded_when_every_debited_rupiah_came_back() -> None:
    """Nothing delivered and every debit refunded: REFUNDED."""
    log, engine = Log(), Engine()
    log.tick()
    log.order("A1")
    log.debit("P1", "A1")
    log.cancel("A1")
    engine.feed(log)
    assert engine.status("A1") is OrderStatus.REFUND_PENDING
    log.refund_ok("P1/CANCELLED_ORDER_DEBIT")
    engine.feed(log)
    assert engine.status("A1") is OrderStatus.REFUNDED


def test_status_escalated_comes_before_everything() -> None:
    """An open escalation makes the order ESCALATED even when fully delivered."""
    log, engine = Log(), Engine()
    log.tick()
    log.order("A1")
    log.debit("P1", "A1")
    log.stamps("A1", "S1", "S2")
    engine.feed(log)
    assert engine.status("A1") is OrderStatus.ESCALATED


def test_status_refund_pending_comes_before_fulfilled() -> None:
    """A fulfilled order with a duplicate debit being refunded is REFUND_PENDING."""
    log, engine = Log(), Engine()
    log.tick()
    log.order("A1")
    log.debit("P1", "A1")
    log.stamps("A1", "S1")
    log.debit("P2", "A1")
    engine.feed(log)
    assert engine.status("A1") is OrderStatus.REFUND_PENDING
    log.refund_ok("P2/DUPLICATE_DEBIT")
    engine.feed(log)
    assert engine.status("A1") is OrderStatus.FULFILLED


def test_status_paid_while_awaiting_issuance() -> None:
    """A paid order with stamps still to come is PAID."""
    log, engine = Log(), Engine(Rules())
    log.tick()
    log.order("A1", quantity=2)
    log.debit("P1", "A1", amount=2 * UNIT)
    log.stamps("A1", "S1")
    engine.feed(log)
    assert engine.status("A1") is OrderStatus.PAID
