"""One test per SPEC rule (and the cases each rule implies), against the pure decider."""

from __future__ import annotations

from datetime import timedelta

from reconciler.domain.accounting import Money, OrderStatus
from reconciler.domain.rules import Rules
from tests.builders import UNIT, Engine, Log


def paid_order(log: Log, order_id: str = "A1", quantity: int = 1, payment_id: str = "P1") -> None:
    """Place an order and pay it in full at the current clock."""
    log.order(order_id, quantity=quantity)
    log.debit(payment_id, order_id, amount=quantity * UNIT)


# -- rule 1: the order's payment ------------------------------------------------------


def test_rule_1_first_debit_equal_to_total_pays_the_order() -> None:
    """A debit of exactly `total` pays the order and commands nothing."""
    log, engine = Log(), Engine()
    log.tick()
    paid_order(log)
    assert engine.feed(log) == []
    assert engine.status("A1") is OrderStatus.PAID
    assert engine.state.orders["A1"].paid_at == log.now


def test_rule_1_debit_after_expiry_still_pays_the_order() -> None:
    """A debit after `expires_at` pays the order: the money moved, stamps are owed."""
    log, engine = Log(), Engine()
    log.tick()
    log.order("A1", expires_in=900)
    log.tick(901)
    engine.feed(log)
    assert engine.status("A1") is OrderStatus.EXPIRED_UNPAID
    log.debit("P1", "A1")
    engine.feed(log)
    assert engine.status("A1") is OrderStatus.PAID


def test_rule_1_order_with_no_debit_at_expiry_is_expired_unpaid() -> None:
    """Before `expires_at` an unpaid order awaits payment; at it, it is EXPIRED_UNPAID."""
    log, engine = Log(), Engine()
    log.tick()
    log.order("A1", expires_in=900)
    log.tick(899)
    engine.feed(log)
    assert engine.status("A1") is OrderStatus.AWAITING_PAYMENT
    log.tick(1)
    engine.feed(log)
    assert engine.status("A1") is OrderStatus.EXPIRED_UNPAID


# -- rule 2: PAID_NOT_ISSUED ----------------------------------------------------------


def test_rule_2_paid_not_issued_commands_issuance_at_the_sla() -> None:
    """ISSUE_SLA after payment, the missing stamps are commanded, not a tick earlier."""
    log, engine = Log(), Engine()
    log.tick()
    paid_order(log, quantity=2)
    log.tick(299)
    assert engine.feed(log) == []
    log.tick(1)
    assert engine.feed(log) == [
        {
            "command_id": "A1/issue/1",
            "type": "IssueStamps",
            "order_id": "A1",
            "quantity": 2,
            "attempt": 1,
        }
    ]
    assert engine.state.orders["A1"].cases == ["PAID_NOT_ISSUED"]


def test_rule_2_delivered_order_needs_no_issuance() -> None:
    """Stamps delivered before the SLA mean no command and a FULFILLED order."""
    log, engine = Log(), Engine()
    log.tick()
    paid_order(log)
    log.tick(10)
    log.stamps("A1", "S1")
    log.tick(600)
    assert engine.feed(log) == []
    assert engine.status("A1") is OrderStatus.FULFILLED
    assert engine.money("A1") == Money(UNIT, UNIT, 0, 0, 0)


def test_rule_2_issuance_is_commanded_for_the_missing_quantity_only() -> None:
    """A partial delivery before the SLA leaves only the rest to command."""
    log, engine = Log(), Engine()
    log.tick()
    paid_order(log, quantity=3)
    log.stamps("A1", "S1")
    log.tick(300)
    assert [c["quantity"] for c in engine.feed(log)] == [2]


def test_rule_2_timed_out_attempts_are_retried_then_refunded() -> None:
    """Attempts with no answer retry until MAX_ISSUE_ATTEMPTS, then a full refund."""
    log, engine = Log(), Engine()
    log.tick()
    paid_order(log)
    log.tick(300)
    log.tick(119)
    assert [c["command_id"] for c in engine.feed(log)] == ["A1/issue/1"]
    log.tick(1)
    assert [c["command_id"] for c in engine.feed(log)] == ["A1/issue/2"]
    log.tick(120)
    assert [c["command_id"] for c in engine.feed(log)] == ["A1/issue/3"]
    log.tick(120)
    assert engine.feed(log) == [
        {
            "command_id": "P1/PAID_NOT_ISSUED/1",
            "type": "RefundPayment",
            "refund_id": "P1/PAID_NOT_ISSUED",
            "order_id": "A1",
            "payment_id": "P1",
            "amount": UNIT,
            "reason": "PAID_NOT_ISSUED",
            "attempt": 1,
        }
    ]
    assert engine.status("A1") is OrderStatus.REFUND_PENDING


def test_rule_2_retryable_failure_commands_the_next_attempt_at_once() -> None:
    """A retryable StampIssuanceFailed for the open attempt retries without waiting."""
    log, engine = Log(), Engine()
    log.tick()
    paid_order(log)
    log.tick(300)
    engine.feed(log)
    log.issue_failed("A1", retryable=True, command_id="A1/issue/1")
    assert [c["command_id"] for c in engine.feed(log)] == ["A1/issue/2"]


def test_rule_2_non_retryable_failure_refunds_at_once() -> None:
    """A non-retryable failure ends issuance: the undelivered money is refunded."""
    log, engine = Log(), Engine()
    log.tick()
    paid_order(log)
    log.tick(300)
    engine.feed(log)
    log.issue_failed("A1", retryable=False)
    assert [(c["type"], c.get("amount")) for c in engine.feed(log)] == [("RefundPayment", UNIT)]


def test_rule_2_partial_delivery_retries_the_rest() -> None:
    """A partial delivery ends the attempt as retryable and commands the missing stamps."""
    log, engine = Log(), Engine()
    log.tick()
    paid_order(log, quantity=3)
    log.tick(300)
    engine.feed(log)
    log.stamps("A1", "S1", command_id="A1/issue/1")
    assert engine.feed(log) == [
        {
            "command_id": "A1/issue/2",
            "type": "IssueStamps",
            "order_id": "A1",
            "quantity": 2,
            "attempt": 2,
        }
    ]


def test_rule_2_full_delivery_ends_issuance() -> None:
    """The commanded stamps delivered: the order is FULFILLED and nothing else follows."""
    log, engine = Log(), Engine()
    log.tick()
    paid_order(log)
    log.tick(300)
    log.stamps("A1", "S1", command_id="A1/issue/1")
    log.tick(3600)
    assert [c["type"] for c in engine.feed(log)] == ["IssueStamps"]
    assert engine.status("A1") is OrderStatus.FULFILLED


# -- rules 3 and 4: duplicate and mismatched debits -----------------------------------


def test_rule_3_duplicate_debit_is_refunded_in_full_at_once() -> None:
    """A second debit on a paid order is refunded at once, under its own refund id."""
    log, engine = Log(), Engine()
    log.tick()
    paid_order(log)
    log.debit("P2", "A1")
    assert engine.feed(log) == [
        {
            "command_id": "P2/DUPLICATE_DEBIT/1",
            "type": "RefundPayment",
            "refund_id": "P2/DUPLICATE_DEBIT",
            "order_id": "A1",
            "payment_id": "P2",
            "amount": UNIT,
            "reason": "DUPLICATE_DEBIT",
            "attempt": 1,
        }
    ]


def test_rule_3_same_payment_from_several_sources_is_one_debit() -> None:
    """The webhook and the settlement file reporting one payment_id are one debit."""
    log, engine = Log(), Engine()
    log.tick()
    paid_order(log)
    log.debit("P1", "A1", source="settlement")
    log.debit("P1", "A1", source="inquiry")
    assert engine.feed(log) == []
    assert engine.money("A1").debited == UNIT


def test_rule_4_amount_mismatch_is_refunded_and_order_stays_unpaid() -> None:
    """A debit of the wrong amount is refunded at once; a right one later still pays."""
    log, engine = Log(), Engine()
    log.tick()
    log.order("A1")
    log.debit("P1", "A1", amount=10_000)
    commands = engine.feed(log)
    assert [(c["refund_id"], c["amount"]) for c in commands] == [("P1/AMOUNT_MISMATCH", 10_000)]
    assert engine.state.orders["A1"].payment is None
    log.debit("P2", "A1")
    assert engine.feed(log) == []
    assert engine.state.orders["A1"].payment is not None


# -- rule 5: orphan debits ------------------------------------------------------------


def test_rule_5_orphan_debit_is_refunded_after_the_window() -> None:
    """A debit naming no known order is refunded ORPHAN_WINDOW after it was recorded."""
    log, engine = Log(), Engine()
    log.tick()
    log.debit("P9", "NOPE")
    log.tick(1799)
    assert engine.feed(log) == []
    log.tick(1)
    assert engine.feed(log) == [
        {
            "command_id": "P9/ORPHAN_DEBIT/1",
            "type": "RefundPayment",
            "refund_id": "P9/ORPHAN_DEBIT",
            "order_id": "NOPE",
            "payment_id": "P9",
            "amount": UNIT,
            "reason": "ORPHAN_DEBIT",
            "attempt": 1,
        }
    ]
    assert engine.totals() == Money(UNIT, 0, 0, UNIT, 0)


def test_rule_5_orphan_debit_with_null_order_keeps_null_in_the_command() -> None:
    """An orphan with `order_id` null is refunded with `order_id` null."""
    log, engine = Log(), Engine()
    log.tick()
    log.debit("P9", None)
    log.tick(1800)
    assert [c["order_id"] for c in engine.feed(log)] == [None]


def test_rule_5_order_placed_within_the_window_takes_the_debit() -> None:
    """An order placed after its payment, within the window, is paid by it."""
    log, engine = Log(), Engine()
    log.tick()
    log.debit("P1", "A1")
    log.tick(600)
    log.order("A1")
    log.tick(1800)
    assert engine.feed(log) == [
        {
            "command_id": "A1/issue/1",
            "type": "IssueStamps",
            "order_id": "A1",
            "quantity": 1,
            "attempt": 1,
        }
    ]
    order = engine.state.orders["A1"]
    assert order.paid_at == log.now - timedelta(seconds=1800)


def test_rule_5_late_known_orphans_follow_rules_3_and_4() -> None:
    """Two waiting debits on a late order: the first pays, the second is a duplicate."""
    log, engine = Log(), Engine()
    log.tick()
    log.debit("P1", "A1")
    log.debit("P2", "A1")
    log.debit("P3", "A1", amount=5_000)
    log.order("A1")
    assert [c["refund_id"] for c in engine.feed(log)] == [
        "P2/DUPLICATE_DEBIT",
        "P3/DUPLICATE_DEBIT",
    ]


# -- rule 6: cancelled orders ---------------------------------------------------------


def test_rule_6_cancelled_order_debits_are_refunded_at_once() -> None:
    """Cancelling a paid, undelivered order refunds the payment in full at once."""
    log, engine = Log(), Engine()
    log.tick()
    paid_order(log)
    log.cancel("A1")
    log.tick(600)
    commands = engine.feed(log)
    assert [(c["refund_id"], c["amount"]) for c in commands] == [("P1/CANCELLED_ORDER_DEBIT", UNIT)]


def test_rule_6_debit_arriving_after_cancellation_is_refunded() -> None:
    """A debit on an already cancelled order is refunded in full at once."""
    log, engine = Log(), Engine()
    log.tick()
    log.order("A1")
    log.cancel("A1")
    log.debit("P1", "A1")
    assert [c["refund_id"] for c in engine.feed(log)] == ["P1/CANCELLED_ORDER_DEBIT"]


def test_rule_6_open_attempt_is_awaited_and_its_delivery_kept() -> None:
    """Cancelled during an attempt: wait for it, keep what it delivered, refund the rest."""
    log, engine = Log(), Engine()
    log.tick()
    paid_order(log, quantity=3)
    log.tick(300)
    log.cancel("A1")
    log.debit("P2", "A1", amount=3 * UNIT)
    assert [c["type"] for c in engine.feed(log)] == ["IssueStamps"]
    log.stamps("A1", "S1", command_id="A1/issue/1")
    commands = engine.feed(log)
    assert [(c["refund_id"], c["amount"]) for c in commands] == [
        ("P1/CANCELLED_ORDER_DEBIT", 2 * UNIT),
        ("P2/CANCELLED_ORDER_DEBIT", 3 * UNIT),
    ]
    assert engine.money("A1") == Money(6 * UNIT, UNIT, 0, 5 * UNIT, 0)


# -- rule 7: issued without payment, over-issued, duplicate serials -------------------


def test_rule_7_issued_without_payment_escalates_after_the_grace() -> None:
    """Stamps and no payment PAYMENT_GRACE after the first delivery: escalate the loss."""
    log, engine = Log(), Engine()
    log.tick()
    log.order("A1", quantity=2)
    log.stamps("A1", "S1", "S2")
    log.tick(1799)
    assert engine.feed(log) == []
    log.tick(1)
    assert engine.feed(log) == [
        {
            "command_id": "A1/ISSUED_WITHOUT_PAYMENT",
            "type": "Escalate",
            "order_id": "A1",
            "reason": "ISSUED_WITHOUT_PAYMENT",
            "amount": 2 * UNIT,
        }
    ]
    assert engine.status("A1") is OrderStatus.ESCALATED


def test_rule_7_payment_within_the_grace_prevents_escalation() -> None:
    """Stamps first, payment within PAYMENT_GRACE: no escalation, a FULFILLED order."""
    log, engine = Log(), Engine()
    log.tick()
    log.order("A1")
    log.stamps("A1", "S1")
    log.tick(600)
    log.debit("P1", "A1")
    log.tick(3600)
    assert engine.feed(log) == []
    assert engine.status("A1") is OrderStatus.FULFILLED


def test_rule_7_stamps_for_an_order_never_placed_count_the_same() -> None:
    """Stamps on an unknown order escalate at the standard price after the grace."""
    log, engine = Log(), Engine()
    log.tick()
    log.stamps("GHOST", "S1")
    log.tick(1800)
    assert engine.feed(log) == [
        {
            "command_id": "GHOST/ISSUED_WITHOUT_PAYMENT",
            "type": "Escalate",
            "order_id": "GHOST",
            "reason": "ISSUED_WITHOUT_PAYMENT",
            "amount": UNIT,
        }
    ]


def test_rule_7_over_issued_escalates_once() -> None:
    """More stamps than ordered escalate OVER_ISSUED, once per order."""
    log, engine = Log(), Engine()
    log.tick()
    paid_order(log)
    log.stamps("A1", "S1", "S2")
    log.stamps("A1", "S3")
    assert [c["command_id"] for c in engine.feed(log)] == ["A1/OVER_ISSUED"]
    assert engine.money("A1").kept == UNIT


def test_rule_7_duplicate_serial_escalates_and_is_not_a_delivery() -> None:
    """A serial delivered twice escalates once per serial and does not count as delivered."""
    log, engine = Log(), Engine()
    log.tick()
    paid_order(log, "A1")
    paid_order(log, "B1", payment_id="P2")
    log.stamps("A1", "S1")
    log.stamps("B1", "S1")
    log.stamps("B1", "S1")
    commands = engine.feed(log)
    assert [c["command_id"] for c in commands] == ["S1/DUPLICATE_SERIAL"]
    assert commands[0]["order_id"] == "B1"
    assert engine.state.orders["B1"].delivered == 0
    log.tick(300)
    assert [c["command_id"] for c in engine.feed(log)] == ["B1/issue/1"]


# -- rule 8: refund failures ----------------------------------------------------------


def refunded_duplicate(log: Log, engine: Engine) -> None:
    """A paid order with a duplicate debit whose refund is commanded."""
    log.tick()
    paid_order(log)
    log.stamps("A1", "S1")
    log.debit("P2", "A1")
    engine.feed(log)


def test_rule_8_retryable_refund_failure_is_retried_after_the_interval() -> None:
    """A retryable failure retries the same refund id REFUND_RETRY_INTERVAL later."""
    log, engine = Log(), Engine()
    refunded_duplicate(log, engine)
    log.refund_failed("P2/DUPLICATE_DEBIT", retryable=True)
    log.tick(599)
    assert engine.feed(log) == []
    assert engine.money("A1").refund_pending == UNIT
    log.tick(1)
    commands = engine.feed(log)
    assert [(c["command_id"], c["refund_id"], c["attempt"]) for c in commands] == [
        ("P2/DUPLICATE_DEBIT/2", "P2/DUPLICATE_DEBIT", 2)
    ]


def test_rule_8_refund_failing_past_the_attempts_escalates() -> None:
    """After MAX_REFUND_ATTEMPTS retryable failures the refund escalates; money at risk."""
    log, engine = Log(), Engine(Rules(max_refund_attempts=2))
    refunded_duplicate(log, engine)
    log.refund_failed("P2/DUPLICATE_DEBIT", retryable=True)
    log.tick(600)
    log.refund_failed("P2/DUPLICATE_DEBIT", retryable=True)
    commands = engine.feed(log)
    assert [c["command_id"] for c in commands] == [
        "P2/DUPLICATE_DEBIT/2",
        "P2/REFUND_FAILED",
    ]
    assert engine.status("A1") is OrderStatus.ESCALATED
    assert engine.money("A1") == Money(2 * UNIT, UNIT, 0, 0, UNIT)


def test_rule_8_non_retryable_refund_failure_escalates_at_once() -> None:
    """A non-retryable refund failure (say REFUND_NOT_SUPPORTED) escalates at once."""
    log, engine = Log(), Engine()
    refunded_duplicate(log, engine)
    log.refund_failed("P2/DUPLICATE_DEBIT", retryable=False)
    assert engine.feed(log) == [
        {
            "command_id": "P2/REFUND_FAILED",
            "type": "Escalate",
            "order_id": "A1",
            "reason": "REFUND_FAILED",
            "amount": UNIT,
        }
    ]


# -- rule 9: refund amounts -----------------------------------------------------------


def test_rule_9_nothing_delivered_refunds_every_debit_in_full() -> None:
    """With no stamp delivered, every unrefunded debit of the order comes back in full."""
    log, engine = Log(), Engine(Rules(max_issue_attempts=1))
    log.tick()
    paid_order(log, quantity=2)
    log.tick(300)
    log.issue_failed("A1", retryable=False)
    commands = engine.feed(log)
    assert [(c["type"], c.get("amount")) for c in commands] == [
        ("IssueStamps", None),
        ("RefundPayment", 2 * UNIT),
    ]


def test_rule_9_some_delivered_refunds_the_rest_with_fees() -> None:
    """With d of q delivered, (q - d) x (unit_price + unit_fee) comes back."""
    log, engine = Log(), Engine(Rules(max_issue_attempts=1))
    log.tick()
    paid_order(log, quantity=5)
    log.tick(300)
    log.stamps("A1", "S1", "S2", command_id="A1/issue/1")
    commands = engine.feed(log)
    assert commands[-1]["amount"] == 3 * UNIT
    log.refund_ok("P1/PAID_NOT_ISSUED", 3 * UNIT)
    engine.feed(log)
    assert engine.status("A1") is OrderStatus.PARTIALLY_FULFILLED
    assert engine.money("A1") == Money(5 * UNIT, 2 * UNIT, 3 * UNIT, 0, 0)


def test_rule_9_a_refund_is_never_commanded_twice_for_the_same_money() -> None:
    """A cancellation after a PAID_NOT_ISSUED refund commands no second refund."""
    log, engine = Log(), Engine(Rules(max_issue_attempts=1))
    log.tick()
    paid_order(log)
    log.tick(300)
    log.issue_failed("A1", retryable=False)
    log.cancel("A1")
    refunds = [c for c in engine.feed(log) if c["type"] == "RefundPayment"]
    assert [c["refund_id"] for c in refunds] == ["P1/PAID_NOT_ISSUED"]


# -- rule 10: double remedy -----------------------------------------------------------


def test_rule_10_delivery_after_refund_is_a_double_remedy() -> None:
    """Stamps arriving after their refund was commanded escalate DOUBLE_REMEDY."""
    log, engine = Log(), Engine(Rules(max_issue_attempts=1))
    log.tick()
    paid_order(log)
    log.tick(300)
    log.tick(120)
    engine.feed(log)
    log.stamps("A1", "S1", command_id="A1/issue/1")
    assert engine.feed(log) == [
        {
            "command_id": "A1/DOUBLE_REMEDY",
            "type": "Escalate",
            "order_id": "A1",
            "reason": "DOUBLE_REMEDY",
            "amount": UNIT,
        }
    ]
    money = engine.money("A1")
    assert money.kept == 0
    assert money.refund_pending == UNIT


def test_rule_10_no_refund_while_an_issuance_attempt_is_open() -> None:
    """A cancellation during an attempt commands no refund until the attempt ends."""
    log, engine = Log(), Engine()
    log.tick()
    paid_order(log)
    log.tick(300)
    log.cancel("A1")
    log.tick(60)
    assert [c["type"] for c in engine.feed(log)] == ["IssueStamps"]
    log.tick(60)
    assert [c["type"] for c in engine.feed(log)] == ["RefundPayment"]
