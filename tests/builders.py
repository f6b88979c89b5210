"""Builders for event logs in tests: readable facts with a moving clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from reconciler.domain.accounting import OrderStatus, order_money, order_status, total_money
from reconciler.domain.decider import decide
from reconciler.domain.events import (
    ClockTicked,
    EscalationResolved,
    Fact,
    HeldRefundsApproved,
    HeldRefundsRejected,
    OrderCancelled,
    OrderPlaced,
    PaymentDebited,
    RefundFailed,
    RefundSucceeded,
    StampIssuanceFailed,
    StampIssued,
)
from reconciler.domain.rules import Rules
from reconciler.domain.state import State

if TYPE_CHECKING:
    from reconciler.domain.accounting import Money
    from reconciler.domain.decisions import AnyDecision

WIB = timezone(timedelta(hours=7))
START = datetime(2024, 9, 4, 9, 0, tzinfo=WIB)
UNIT = 12_500
F = TypeVar("F", bound=Fact)

# One valid PaymentDebited record as a producer sends it, for validation tests to vary.
DEBIT_RECORD: dict[str, Any] = {
    "event_id": "e1",
    "type": "PaymentDebited",
    "version": 1,
    "occurred_at": "2024-09-04T10:00:00+07:00",
    "payment_id": "P1",
    "order_id": "A1",
    "amount": 12500,
    "method": "QRIS",
    "payer_ref": "payer",
    "source": "callback",
}


class Log:
    """Appends facts with unique ids; `tick` moves the clock forward in seconds."""

    def __init__(self, start: datetime = START) -> None:
        """Start the producers' clock at `start`."""
        self.now = start
        self.facts: list[Fact] = []
        self._count = 0

    def __repr__(self) -> str:
        """The facts, one per line, so that a failing example reads as a log."""
        lines = [fact.model_dump_json(exclude={"version", "occurred_at"}) for fact in self.facts]
        return "Log(\n  " + "\n  ".join(lines) + "\n)"

    def _next_id(self) -> str:
        self._count += 1
        return f"e{self._count}"

    def add(self, fact: Fact) -> Fact:
        """Append a fact as given."""
        self.facts.append(fact)
        return fact

    def tick(self, seconds: float = 0) -> ClockTicked:
        """Advance the clock by `seconds` and append the tick."""
        self.now += timedelta(seconds=seconds)
        tick = ClockTicked(event_id=self._next_id(), version=1, occurred_at=self.now, at=self.now)
        self.facts.append(tick)
        return tick

    def order(
        self,
        order_id: str,
        quantity: int = 1,
        unit_price: int = 10_000,
        unit_fee: int = 2_500,
        expires_in: float = 3600,
    ) -> OrderPlaced:
        """Place an order; `total` is computed as SPEC requires."""
        return self._add(
            OrderPlaced(
                event_id=self._next_id(),
                version=1,
                occurred_at=self.now,
                order_id=order_id,
                customer_ref="cust-" + order_id,
                quantity=quantity,
                unit_price=unit_price,
                unit_fee=unit_fee,
                total=quantity * (unit_price + unit_fee),
                expires_at=self.now + timedelta(seconds=expires_in),
                channel="web",
            )
        )

    def debit(
        self, payment_id: str, order_id: str | None, amount: int = UNIT, source: str = "callback"
    ) -> PaymentDebited:
        """Debit a payer's money."""
        return self._add(
            PaymentDebited.model_validate(
                {
                    "event_id": self._next_id(),
                    "version": 1,
                    "occurred_at": self.now,
                    "payment_id": payment_id,
                    "order_id": order_id,
                    "amount": amount,
                    "method": "QRIS",
                    "payer_ref": "payer-" + payment_id,
                    "source": source,
                }
            )
        )

    def stamps(self, order_id: str, *serials: str, command_id: str | None = None) -> StampIssued:
        """Deliver stamps with these serial numbers."""
        return self._add(
            StampIssued(
                event_id=self._next_id(),
                version=1,
                occurred_at=self.now,
                order_id=order_id,
                serial_numbers=serials,
                command_id=command_id,
            )
        )

    def issue_failed(
        self, order_id: str, *, retryable: bool, command_id: str | None = None
    ) -> StampIssuanceFailed:
        """The issuer refused or broke."""
        return self._add(
            StampIssuanceFailed(
                event_id=self._next_id(),
                version=1,
                occurred_at=self.now,
                order_id=order_id,
                reason="ISSUER_DOWN" if retryable else "REJECTED",
                retryable=retryable,
                command_id=command_id,
            )
        )

    def refund_ok(self, refund_id: str, amount: int = UNIT) -> RefundSucceeded:
        """The payment provider returned the money."""
        return self._add(
            RefundSucceeded(
                event_id=self._next_id(),
                version=1,
                occurred_at=self.now,
                refund_id=refund_id,
                payment_id=refund_id.split("/", maxsplit=1)[0],
                amount=amount,
                psp_refund_ref="psp-" + refund_id,
            )
        )

    def refund_failed(self, refund_id: str, *, retryable: bool) -> RefundFailed:
        """The payment provider could not return the money."""
        return self._add(
            RefundFailed(
                event_id=self._next_id(),
                version=1,
                occurred_at=self.now,
                refund_id=refund_id,
                payment_id=refund_id.split("/", maxsplit=1)[0],
                reason="BANK_TIMEOUT" if retryable else "REFUND_NOT_SUPPORTED",
                retryable=retryable,
            )
        )

    def cancel(self, order_id: str) -> OrderCancelled:
        """The customer cancelled."""
        return self._add(
            OrderCancelled(
                event_id=self._next_id(),
                version=1,
                occurred_at=self.now,
                order_id=order_id,
                reason="customer",
            )
        )

    def resolve(
        self, escalation_id: str, outcome: str, reference: str | None = None
    ) -> EscalationResolved:
        """An operator closes an escalation with an outcome."""
        return self._add(
            EscalationResolved.model_validate(
                {
                    "event_id": self._next_id(),
                    "version": 1,
                    "occurred_at": self.now,
                    "escalation_id": escalation_id,
                    "outcome": outcome,
                    "operator": "ops-1",
                    "note": "checked with the bank",
                    "reference": reference,
                }
            )
        )

    def approve(self, incident_id: str) -> HeldRefundsApproved:
        """An operator approves the refunds held under an incident."""
        return self._add(
            HeldRefundsApproved(
                event_id=self._next_id(),
                version=1,
                occurred_at=self.now,
                incident_id=incident_id,
                operator="ops-1",
                note="outage confirmed",
            )
        )

    def reject(self, incident_id: str) -> HeldRefundsRejected:
        """An operator rejects the refunds held under an incident."""
        return self._add(
            HeldRefundsRejected(
                event_id=self._next_id(),
                version=1,
                occurred_at=self.now,
                incident_id=incident_id,
                operator="ops-1",
                note="stamps are being issued by hand",
            )
        )

    def _add(self, fact: F) -> F:
        self.facts.append(fact)
        return fact


class Engine:
    """The decider over a growing log, with the views tests assert on."""

    def __init__(self, rules: Rules | None = None) -> None:
        """Start empty, with SPEC's default rules unless given others."""
        self.rules = rules or Rules()
        self.state = State()
        self.decisions: list[AnyDecision] = []
        self._fed = 0

    def feed(self, log: Log) -> list[dict[str, Any]]:
        """Decide on every fact not fed yet; return the commands they led to."""
        new: list[AnyDecision] = []
        for fact in log.facts[self._fed :]:
            new.extend(decide(self.state, fact, self.rules))
        self._fed = len(log.facts)
        self.decisions.extend(new)
        return [command for d in new if (command := d.command()) is not None]

    @property
    def commands(self) -> list[dict[str, Any]]:
        """Every command taken so far, in order."""
        return [command for d in self.decisions if (command := d.command()) is not None]

    def status(self, order_id: str) -> OrderStatus:
        """The order's SPEC status now."""
        order = self.state.orders[order_id]
        return order_status(order, order_money(order), self.state.clock)

    def money(self, order_id: str) -> Money:
        """The order's account now."""
        return order_money(self.state.orders[order_id])

    def totals(self) -> Money:
        """The account of every debit now."""
        return total_money(self.state)
