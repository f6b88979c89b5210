"""The cases the rules imply: late, unknown, repeated and out-of-order results."""

from __future__ import annotations

from reconciler.domain.accounting import Money, OrderStatus
from reconciler.domain.rules import Rules
from tests.builders import UNIT, Engine, Log


def test_late_stamp_result_for_an_earlier_attempt_counts_as_delivered() -> None:
    """Stamps answering attempt 1 after it timed out are delivered; attempt 2 stays open."""
    log, engine = Log(), Engine()
    log.tick()
    log.order("A1")
    log.debit("P1", "A1")
    log.tick(300)
    log.tick(120)
    engine.feed(log)
    log.stamps("A1", "S1", command_id="A1/issue/1")
    assert engine.feed(log) == []
    order = engine.state.orders["A1"]
    assert order.delivered == 1
    assert order.open_attempt is not None
    assert order.open_attempt.command_id == "A1/issue/2"
    log.tick(120)
    assert engine.feed(log) == []
    assert engine.status("A1") is OrderStatus.FULFILLED


def test_stamps_for_an_unknown_command_are_delivered_without_ending_the_attempt() -> None:
    """A result naming a command the engine never gave still delivers its stamps."""
    log, engine = Log(), Engine()
    log.tick()
    log.order("A1", quantity=2)
    log.debit("P1", "A1", amount=2 * UNIT)
    log.tick(300)
    engine.feed(log)
    log.stamps("A1", "S1", command_id="someone-else/7")
    assert engine.feed(log) == []
    assert [n.why for n in engine.state.unmatched] == ["no open attempt is someone-else/7"]
    assert engine.state.orders["A1"].open_attempt is not None
    assert engine.state.orders["A1"].delivered == 1


def test_issuance_failure_with_no_attempt_open_is_only_recorded() -> None:
    """A StampIssuanceFailed outside any attempt is counted; the SLA still decides."""
    log, engine = Log(), Engine()
    log.tick()
    log.order("A1")
    log.debit("P1", "A1")
    log.issue_failed("A1", retryable=False)
    assert engine.feed(log) == []
    [note] = engine.state.unmatched
    assert (note.type, note.subject) == ("StampIssuanceFailed", "A1")
    log.tick(300)
    assert [c["type"] for c in engine.feed(log)] == ["IssueStamps"]


def test_refund_success_arriving_twice_changes_nothing() -> None:
    """A second RefundSucceeded for a settled refund (another event id) is ignored."""
    log, engine = Log(), Engine()
    log.tick()
    log.order("A1")
    log.debit("P1", "A1")
    log.debit("P2", "A1")
    log.refund_ok("P2/DUPLICATE_DEBIT")
    log.refund_ok("P2/DUPLICATE_DEBIT")
    engine.feed(log)
    assert engine.money("A1") == Money(2 * UNIT, 0, UNIT, 0, UNIT)


def test_refund_failure_arriving_twice_retries_once() -> None:
    """Two failures for the same attempt schedule one retry, not two."""
    log, engine = Log(), Engine()
    log.tick()
    log.order("A1")
    log.debit("P1", "A1")
    log.debit("P2", "A1")
    log.refund_failed("P2/DUPLICATE_DEBIT", retryable=True)
    log.refund_failed("P2/DUPLICATE_DEBIT", retryable=True)
    log.tick(600)
    log.tick(600)
    retries = [c for c in engine.feed(log) if c.get("refund_id") and c["attempt"] == 2]
    assert len(retries) == 1


def test_late_success_after_a_retry_was_scheduled_settles_the_refund() -> None:
    """Attempt 1 succeeding late, while a retry waits, settles it and stops the retry."""
    log, engine = Log(), Engine()
    log.tick()
    log.order("A1")
    log.debit("P1", "A1")
    log.debit("P2", "A1")
    log.refund_failed("P2/DUPLICATE_DEBIT", retryable=True)
    log.refund_ok("P2/DUPLICATE_DEBIT")
    log.tick(600)
    assert [c["attempt"] for c in engine.feed(log) if c["type"] == "RefundPayment"] == [1]
    assert engine.money("A1").refunded == UNIT


def test_refund_result_for_an_unknown_refund_is_ignored() -> None:
    """A provider answer for a refund the engine never commanded moves no money."""
    log, engine = Log(), Engine()
    log.tick()
    log.order("A1")
    log.debit("P1", "A1")
    log.refund_ok("P9/SOMETHING")
    assert engine.feed(log) == []
    assert engine.money("A1").refunded == 0
    assert [(n.subject, n.why) for n in engine.state.unmatched] == [
        ("P9/SOMETHING", "the engine commanded no such refund")
    ]


def test_refund_success_for_other_amount_escalates() -> None:
    """A provider refunding less than commanded: the shortfall is at risk and escalated."""
    log, engine = Log(), Engine()
    log.tick()
    log.order("A1")
    log.debit("P1", "A1")
    log.debit("P2", "A1")
    log.refund_ok("P2/DUPLICATE_DEBIT", amount=UNIT - 2_500)
    commands = engine.feed(log)
    assert commands[-1]["command_id"] == "P2/REFUND_AMOUNT_MISMATCH"
    assert engine.money("A1") == Money(2 * UNIT, 0, UNIT - 2_500, 0, UNIT + 2_500)


def test_second_order_placement_changes_nothing() -> None:
    """The same order id placed twice keeps the first placement's terms."""
    log, engine = Log(), Engine()
    log.tick()
    log.order("A1", quantity=1)
    log.order("A1", quantity=4)
    engine.feed(log)
    assert engine.state.orders["A1"].quantity == 1


def test_cancelled_order_with_all_stamps_delivered_refunds_nothing() -> None:
    """Cancelling after full delivery keeps the payment for the stamps."""
    log, engine = Log(), Engine()
    log.tick()
    log.order("A1")
    log.debit("P1", "A1")
    log.stamps("A1", "S1")
    log.cancel("A1")
    assert engine.feed(log) == []
    assert engine.status("A1") is OrderStatus.FULFILLED


def test_refund_after_issuance_attempts_exhausted_counts_only_the_payment() -> None:
    """A mismatched debit refunded at once is not refunded again by rule 9."""
    log, engine = Log(), Engine(Rules(max_issue_attempts=1))
    log.tick()
    log.order("A1")
    log.debit("P0", "A1", amount=5_000)
    log.debit("P1", "A1")
    log.tick(300)
    log.tick(120)
    refunds = [c["refund_id"] for c in engine.feed(log) if c["type"] == "RefundPayment"]
    assert refunds == ["P0/AMOUNT_MISMATCH", "P1/PAID_NOT_ISSUED"]
