from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

import pytest

from reconciler.demo import (
    WIB,
    CommandError,
    DemoConfig,
    Payment,
    PaymentProviderSimulator,
    StampIssuerSimulator,
)
from reconciler.demo.facts import SerialNumbers
from reconciler.domain.events import (
    RefundFailed,
    RefundSucceeded,
    StampIssuanceFailed,
    StampIssued,
)

CONFIG = DemoConfig(orders=0, seed=5)
OUTAGE_START, OUTAGE_END = CONFIG.outage
MORNING = CONFIG.at(time(8, 0))


def issue(order_id: str, quantity: int = 1, attempt: int = 1) -> dict[str, Any]:
    """An IssueStamps command as the engine sends it."""
    return {
        "command_id": f"{order_id}/issue/{attempt}",
        "type": "IssueStamps",
        "order_id": order_id,
        "quantity": quantity,
        "attempt": attempt,
    }


def refund(payment_id: str, amount: int, attempt: int = 1) -> dict[str, Any]:
    """A RefundPayment command for a duplicate debit, as the engine sends it."""
    refund_id = f"{payment_id}/DUPLICATE_DEBIT"
    return {
        "command_id": f"{refund_id}/{attempt}",
        "type": "RefundPayment",
        "refund_id": refund_id,
        "order_id": "ORD-1",
        "payment_id": payment_id,
        "amount": amount,
        "reason": "DUPLICATE_DEBIT",
        "attempt": attempt,
    }


def payment(payment_id: str, payer_ref: str = "QRIS:BRI:****0001") -> Payment:
    """A Rp 12,500 QRIS debit the provider knows."""
    paid_at = datetime(2024, 9, 4, 8, 0, tzinfo=WIB)
    return Payment(payment_id, "ORD-1", 12_500, "QRIS", payer_ref, paid_at)


def test_issuer_answers_each_command_by_its_id_with_fresh_serials() -> None:
    """Outside the outage the issuer answers with the command's id and never reuses a serial."""
    issuer = StampIssuerSimulator(CONFIG, SerialNumbers("EMT"))
    answers = [
        arrival
        for n in range(200)
        for arrival in issuer.receive(issue(f"ORD-{n}", quantity=3), MORNING)
    ]
    assert len(answers) > 190  # a few stay silent: the engine's timeout handles them
    serials: list[str] = []
    for arrives_at, fact in answers:
        assert isinstance(fact, StampIssued | StampIssuanceFailed)
        assert fact.command_id == f"{fact.order_id}/issue/1"
        assert issuer.answer_for(fact.command_id) == fact
        assert arrives_at == fact.occurred_at > MORNING
        if isinstance(fact, StampIssued):
            assert len(fact.serial_numbers) <= 3
            serials.extend(fact.serial_numbers)
    assert len(serials) == len(set(serials)) == issuer.stamps_issued
    delivered = [fact for _, fact in answers if isinstance(fact, StampIssued)]
    assert any(len(fact.serial_numbers) < 3 for fact in delivered)  # partial deliveries


def test_issuer_fails_or_stays_silent_during_the_outage() -> None:
    """In the outage window no command is answered with stamps; failures are retryable."""
    issuer = StampIssuerSimulator(CONFIG, SerialNumbers("EMT"))
    during = OUTAGE_START + timedelta(minutes=30)
    answers = [a for n in range(100) for a in issuer.receive(issue(f"ORD-{n}"), during)]
    assert 20 < len(answers) < 100
    assert all(isinstance(fact, StampIssuanceFailed) and fact.retryable for _, fact in answers)
    assert issuer.stamps_issued == 0


def test_issuer_ignores_a_repeated_command() -> None:
    """The same command id twice delivers stamps once."""
    issuer = StampIssuerSimulator(CONFIG, SerialNumbers("EMT"))
    first = issuer.receive(issue("ORD-7", quantity=2), MORNING)
    again = issuer.receive(issue("ORD-7", quantity=2), MORNING + timedelta(seconds=30))
    assert len(first) == 1
    assert again == []
    assert issuer.repeated_commands == 1
    assert issuer.stamps_issued <= 2


def test_issuer_answer_does_not_depend_on_other_commands() -> None:
    """What a command gets is drawn from the seed and its id, not from what came before."""
    alone = StampIssuerSimulator(CONFIG, SerialNumbers("A"))
    busy = StampIssuerSimulator(CONFIG, SerialNumbers("A"))
    for n in range(20):
        busy.receive(issue(f"OTHER-{n}"), MORNING)
    [(_, mine)] = alone.receive(issue("ORD-9"), MORNING)
    [(_, theirs)] = busy.receive(issue("ORD-9"), MORNING)
    assert type(mine) is type(theirs)
    assert mine.occurred_at == theirs.occurred_at


def test_provider_pays_a_refund_id_once_however_often_commanded() -> None:
    """Repeated and re-attempted refund commands never pay the same refund_id twice."""
    psp = PaymentProviderSimulator(CONFIG, {"PAY-1": payment("PAY-1")})
    answers = psp.receive(refund("PAY-1", 12_500), MORNING)
    answers += psp.receive(refund("PAY-1", 12_500), MORNING)  # redelivered
    answers += psp.receive(refund("PAY-1", 12_500, attempt=2), MORNING)  # re-attempted
    facts = [fact for _, fact in answers]
    assert psp.repeated_commands == 2
    assert psp.paid_out_total == 12_500
    assert psp.paid_out_by_refund == {"PAY-1/DUPLICATE_DEBIT": 12_500}
    assert psp.payouts == 1
    assert all(isinstance(fact, RefundSucceeded) for fact in facts)
    refs = {fact.psp_refund_ref for fact in facts if isinstance(fact, RefundSucceeded)}
    assert len(refs) == 1


def test_provider_retries_a_bank_timeout_and_then_pays_once() -> None:
    """A retryable failure moves no money; the attempt that succeeds pays exactly once."""
    config = DemoConfig(orders=0, seed=5, refund_bank_timeout_rate=0.5)
    psp = PaymentProviderSimulator(config, {"PAY-1": payment("PAY-1")})
    outcomes = []
    for attempt in range(1, 30):
        [(_, fact)] = psp.receive(refund("PAY-1", 12_500, attempt), MORNING)
        outcomes.append(fact)
    failures = [fact for fact in outcomes if isinstance(fact, RefundFailed)]
    assert failures
    assert all(fact.reason == "BANK_TIMEOUT" and fact.retryable for fact in failures)
    assert isinstance(outcomes[-1], RefundSucceeded)
    assert psp.paid_out_total == 12_500
    assert psp.payouts == 1


def test_provider_never_returns_more_than_was_debited() -> None:
    """Two refunds of one debit together cannot exceed it; the second is refused for good."""
    psp = PaymentProviderSimulator(CONFIG, {"PAY-1": payment("PAY-1")})
    psp.receive(refund("PAY-1", 10_000), MORNING)
    other = refund("PAY-1", 5_000) | {"refund_id": "PAY-1/PAID_NOT_ISSUED"}
    other["command_id"] = "PAY-1/PAID_NOT_ISSUED/1"
    [(_, fact)] = psp.receive(other, MORNING)
    assert isinstance(fact, RefundFailed)
    assert (fact.reason, fact.retryable) == ("AMOUNT_EXCEEDS_REFUNDABLE", False)
    assert psp.refunded_on("PAY-1") == 10_000


@pytest.mark.parametrize(
    ("payments", "reason"),
    [
        ({"PAY-1": payment("PAY-1", "QRIS:BPR-012:****0001")}, "REFUND_NOT_SUPPORTED"),
        ({}, "PAYMENT_NOT_FOUND"),
    ],
)
def test_provider_refuses_for_good(payments: dict[str, Payment], reason: str) -> None:
    """A payer bank without a refund API, or an unknown debit, fails without retry."""
    psp = PaymentProviderSimulator(CONFIG, payments)
    [(_, fact)] = psp.receive(refund("PAY-1", 12_500), MORNING)
    assert isinstance(fact, RefundFailed)
    assert (fact.reason, fact.retryable) == (reason, False)
    [(_, again)] = psp.receive(refund("PAY-1", 12_500, attempt=2), MORNING)
    assert isinstance(again, RefundFailed)
    assert again.reason == reason
    assert psp.paid_out_total == 0


def test_a_malformed_command_is_an_error() -> None:
    """A command without its fields is the engine's bug and is reported as such."""
    issuer = StampIssuerSimulator(CONFIG, SerialNumbers("EMT"))
    with pytest.raises(CommandError, match="quantity"):
        issuer.receive({"command_id": "X/issue/1", "order_id": "X", "quantity": "1"}, MORNING)
