"""The stamp issuer and the payment provider, as the engine's commands find them.

Both take a command (a plain dict in SPEC's offline-report shape) and answer later with
result facts, or not at all. Both are idempotent the way the real services must be: a
command id seen before is ignored, and the provider keys refunds by `refund_id`, so no
command, however often repeated, pays out twice.

What happens to a command is drawn from a generator seeded by the demo seed and the
command id, so the answer to a command does not depend on what else the engine sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from random import Random
from typing import TYPE_CHECKING, Any

from reconciler.demo.facts import Arrival, Numbering, build
from reconciler.demo.payers import refundable
from reconciler.domain.events import (
    RefundFailed,
    RefundSucceeded,
    StampIssuanceFailed,
    StampIssued,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from reconciler.demo.config import DemoConfig
    from reconciler.demo.facts import SerialNumbers
    from reconciler.demo.generator import Payment
    from reconciler.domain.events import Fact


class CommandError(ValueError):
    """A command lacks a field or carries one of the wrong type: the engine has a bug."""


def _field(command: Mapping[str, Any], name: str, kind: type[Any]) -> Any:  # noqa: ANN401
    value = command.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        msg = f"command {command.get('command_id')!r}: {name} must be {kind.__name__}"
        raise CommandError(msg)
    return value


_FAILURES = {
    "unavailable": ("ISSUER_UNAVAILABLE", True),
    "busy": ("ISSUER_BUSY", True),
    "rejected": ("ORDER_REJECTED", False),
}


def _seconds(rng: Random, low: float, high: float) -> float:
    return round(rng.uniform(low, high), 3)


class StampIssuerSimulator:
    """Peruri's issuing service: healthy most of the day, down during the outage window."""

    def __init__(self, config: DemoConfig, serials: SerialNumbers) -> None:
        """Answer `IssueStamps` under `config`, drawing serials from the portal's book."""
        self._config = config
        self._serials = serials
        self._event_ids = Numbering("iss")
        self._answers: dict[str, Fact | None] = {}
        self.stamps_issued = 0
        self.repeated_commands = 0

    def receive(self, command: Mapping[str, Any], at: datetime) -> list[Arrival]:
        """Take an `IssueStamps` command at `at`; return the answer to deliver, if any."""
        command_id = _field(command, "command_id", str)
        order_id = _field(command, "order_id", str)
        quantity = _field(command, "quantity", int)
        if command_id in self._answers:
            self.repeated_commands += 1
            return []
        rng = Random(f"{self._config.seed}/issuer/{command_id}")  # noqa: S311 - simulation
        answer = self._answer(rng, command_id, order_id, quantity, at)
        self._answers[command_id] = answer.fact if answer else None
        return [answer] if answer else []

    def answer_for(self, command_id: str) -> Fact | None:
        """What the issuer answered to this command; None if it stayed silent or never saw it."""
        return self._answers.get(command_id)

    def _answer(
        self, rng: Random, command_id: str, order_id: str, quantity: int, at: datetime
    ) -> Arrival | None:
        outcome = self._outcome(rng, at)
        if outcome == "silent":
            return None
        if outcome in {"unavailable", "busy", "rejected"}:
            after = _seconds(rng, 1, 30)
            return self._failed(command_id, order_id, at, after, outcome=outcome)
        if outcome == "partial" and quantity > 1:
            quantity = rng.randrange(1, quantity)
        # A late answer comes long after the engine gave up waiting for it.
        after = _seconds(rng, 180, 600) if outcome == "late" else _seconds(rng, 1, 20)
        return self._issued(command_id, order_id, at, after, quantity)

    def _outcome(self, rng: Random, at: datetime) -> str:
        config = self._config
        if config.in_outage(at):
            return "silent" if rng.random() < config.outage_timeout_share else "unavailable"
        roll = rng.random()
        for outcome, rate in (
            ("silent", config.issuer_timeout_rate),
            ("late", config.issuer_late_rate),
            ("rejected", config.issuer_reject_rate),
            ("busy", config.issuer_busy_rate),
            ("partial", config.issuer_partial_rate),
        ):
            if roll < rate:
                return outcome
            roll -= rate
        return "issued"

    def _issued(
        self, command_id: str, order_id: str, at: datetime, after: float, quantity: int
    ) -> Arrival:
        when = at + timedelta(seconds=after)
        self.stamps_issued += quantity
        fact = build(
            StampIssued,
            event_id=self._event_ids.next(),
            occurred_at=when,
            order_id=order_id,
            serial_numbers=self._serials.take(quantity),
            command_id=command_id,
        )
        return Arrival(when, fact)

    def _failed(
        self, command_id: str, order_id: str, at: datetime, after: float, *, outcome: str
    ) -> Arrival:
        when = at + timedelta(seconds=after)
        reason, retryable = _FAILURES[outcome]
        fact = build(
            StampIssuanceFailed,
            event_id=self._event_ids.next(),
            occurred_at=when,
            order_id=order_id,
            reason=reason,
            retryable=retryable,
            command_id=command_id,
        )
        return Arrival(when, fact)


@dataclass
class _Refund:
    """The provider's record of one refund_id."""

    payment_id: str
    amount: int
    status: str  # "paid", "failed_final" or "failed_retryable"
    reason: str = ""
    psp_refund_ref: str = ""


class PaymentProviderSimulator:
    """The payment provider (PSP): returns money on `RefundPayment`, once per `refund_id`."""

    def __init__(self, config: DemoConfig, payments: Mapping[str, Payment]) -> None:
        """Refund the debits it knows (`payments`, by payment_id) under `config`."""
        self._config = config
        self._payments = payments
        self._event_ids = Numbering("psp")
        self._refund_refs = Numbering(f"RFD{config.day:%y%m%d}")
        self._seen_commands: set[str] = set()
        self._refunds: dict[str, _Refund] = {}
        self._refunded_by_payment: dict[str, int] = {}
        self.paid_out_total = 0
        self.paid_out_by_refund: dict[str, int] = {}
        self.payouts = 0
        self.repeated_commands = 0

    def receive(self, command: Mapping[str, Any], at: datetime) -> list[Arrival]:
        """Take a `RefundPayment` command at `at`; return the answer to deliver."""
        command_id = _field(command, "command_id", str)
        refund_id = _field(command, "refund_id", str)
        payment_id = _field(command, "payment_id", str)
        amount = _field(command, "amount", int)
        if command_id in self._seen_commands:
            self.repeated_commands += 1
            return []
        self._seen_commands.add(command_id)
        rng = Random(f"{self._config.seed}/psp/{command_id}")  # noqa: S311 - simulation
        known = self._refunds.get(refund_id)
        if known is not None and known.status != "failed_retryable":
            # Already settled for good: say so again, and move no money.
            self.repeated_commands += 1
            return [self._report(refund_id, known, at, _seconds(rng, 1, 5))]
        refund = self._decide(rng, payment_id, amount)
        self._refunds[refund_id] = refund
        if refund.status == "paid":
            self._pay(refund_id, refund)
        delay = self._latency(rng, refund)
        return [self._report(refund_id, refund, at, delay)]

    def refunded_on(self, payment_id: str) -> int:
        """How much of this debit the provider has returned so far."""
        return self._refunded_by_payment.get(payment_id, 0)

    def _decide(self, rng: Random, payment_id: str, amount: int) -> _Refund:
        payment = self._payments.get(payment_id)
        if payment is None:
            return _Refund(payment_id, amount, "failed_final", "PAYMENT_NOT_FOUND")
        if not refundable(payment.payer_ref):
            return _Refund(payment_id, amount, "failed_final", "REFUND_NOT_SUPPORTED")
        if not 0 < amount <= payment.amount - self.refunded_on(payment_id):
            return _Refund(payment_id, amount, "failed_final", "AMOUNT_EXCEEDS_REFUNDABLE")
        if rng.random() < self._config.refund_bank_timeout_rate:
            return _Refund(payment_id, amount, "failed_retryable", "BANK_TIMEOUT")
        return _Refund(payment_id, amount, "paid", psp_refund_ref=self._refund_refs.next())

    def _pay(self, refund_id: str, refund: _Refund) -> None:
        # The money leaves when the provider accepts the refund; the answer trails it.
        self.paid_out_total += refund.amount
        self.paid_out_by_refund[refund_id] = (
            self.paid_out_by_refund.get(refund_id, 0) + refund.amount
        )
        self._refunded_by_payment[refund.payment_id] = (
            self.refunded_on(refund.payment_id) + refund.amount
        )
        self.payouts += 1

    def _latency(self, rng: Random, refund: _Refund) -> float:
        if refund.status != "paid":
            return _seconds(rng, 30, 120)
        payment = self._payments[refund.payment_id]
        if payment.method in {"QRIS", "EWALLET"}:
            return _seconds(rng, 5, 90)
        return _seconds(rng, 60, 900)

    def _report(self, refund_id: str, refund: _Refund, at: datetime, after: float) -> Arrival:
        when = at + timedelta(seconds=after)
        fact: Fact
        if refund.status == "paid":
            fact = build(
                RefundSucceeded,
                event_id=self._event_ids.next(),
                occurred_at=when,
                refund_id=refund_id,
                payment_id=refund.payment_id,
                amount=refund.amount,
                psp_refund_ref=refund.psp_refund_ref,
            )
        else:
            fact = build(
                RefundFailed,
                event_id=self._event_ids.next(),
                occurred_at=when,
                refund_id=refund_id,
                payment_id=refund.payment_id,
                reason=refund.reason,
                retryable=refund.status == "failed_retryable",
            )
        return Arrival(when, fact)
