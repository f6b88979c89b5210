"""The engine's own facts: what it detected and what it commanded, at which clock time.

They are recorded in the log after the fact that caused them, so that a replay can
re-derive them and compare. Each carries a deterministic id (SPEC "Ids").
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict


class Case(StrEnum):
    """The kinds of discrepancy SPEC names, also the refund and escalation reasons."""

    PAID_NOT_ISSUED = "PAID_NOT_ISSUED"
    DUPLICATE_DEBIT = "DUPLICATE_DEBIT"
    AMOUNT_MISMATCH = "AMOUNT_MISMATCH"
    ORPHAN_DEBIT = "ORPHAN_DEBIT"
    CANCELLED_ORDER_DEBIT = "CANCELLED_ORDER_DEBIT"
    ISSUED_WITHOUT_PAYMENT = "ISSUED_WITHOUT_PAYMENT"
    OVER_ISSUED = "OVER_ISSUED"
    DUPLICATE_SERIAL = "DUPLICATE_SERIAL"
    REFUND_FAILED = "REFUND_FAILED"
    DOUBLE_REMEDY = "DOUBLE_REMEDY"
    REFUND_AMOUNT_MISMATCH = "REFUND_AMOUNT_MISMATCH"
    # Not in SPEC: the refund-flood guard's incident, and a held refund an operator rejected.
    REFUND_FLOOD = "REFUND_FLOOD"
    REFUND_REJECTED = "REFUND_REJECTED"


class Decision(BaseModel):
    """What every decision carries: its id and the engine clock when it was taken."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    decision_id: str
    at: datetime

    command_type: ClassVar[str | None] = None

    def command(self) -> dict[str, Any] | None:
        """The command for the jobs, in the shape SPEC's offline report lists; None if none."""
        return None


class DiscrepancyDetected(Decision):
    """A case was opened on an order or a payment."""

    type: Literal["DiscrepancyDetected"] = "DiscrepancyDetected"
    case: Case
    order_id: str | None
    payment_id: str | None
    subject: str


class IssuanceCommanded(Decision):
    """The engine commanded the issuer to deliver the missing stamps."""

    type: Literal["IssuanceCommanded"] = "IssuanceCommanded"
    command_id: str
    order_id: str
    quantity: int
    attempt: int

    command_type: ClassVar[str | None] = "IssueStamps"

    def command(self) -> dict[str, Any]:
        """The IssueStamps command."""
        return {
            "command_id": self.command_id,
            "type": "IssueStamps",
            "order_id": self.order_id,
            "quantity": self.quantity,
            "attempt": self.attempt,
        }


class RefundCommanded(Decision):
    """The engine commanded the payment provider to return money."""

    type: Literal["RefundCommanded"] = "RefundCommanded"
    command_id: str
    refund_id: str
    order_id: str | None
    payment_id: str
    amount: int
    reason: Case
    attempt: int

    command_type: ClassVar[str | None] = "RefundPayment"

    def command(self) -> dict[str, Any]:
        """The RefundPayment command."""
        return {
            "command_id": self.command_id,
            "type": "RefundPayment",
            "refund_id": self.refund_id,
            "order_id": self.order_id,
            "payment_id": self.payment_id,
            "amount": self.amount,
            "reason": self.reason.value,
            "attempt": self.attempt,
        }


class CaseEscalated(Decision):
    """A case a person must look at; `amount` is the money at stake in it."""

    type: Literal["CaseEscalated"] = "CaseEscalated"
    command_id: str
    order_id: str | None
    reason: Case
    subject: str
    amount: int

    command_type: ClassVar[str | None] = "Escalate"

    def command(self) -> dict[str, Any]:
        """The Escalate command."""
        return {
            "command_id": self.command_id,
            "type": "Escalate",
            "order_id": self.order_id,
            "reason": self.reason.value,
            "amount": self.amount,
        }


class RefundHeld(Decision):
    """The refund-flood guard held a refund instead of commanding it; the money is at risk."""

    type: Literal["RefundHeld"] = "RefundHeld"
    refund_id: str
    order_id: str | None
    payment_id: str
    amount: int
    reason: Case
    incident_id: str


class RefundWithdrawn(Decision):
    """A held refund was dropped: the stamps it would have paid back arrived after all."""

    type: Literal["RefundWithdrawn"] = "RefundWithdrawn"
    refund_id: str
    order_id: str | None
    payment_id: str
    amount: int


class CaseResolved(Decision):
    """An escalation was closed: by an operator, or (an incident) by the issuer's recovery."""

    type: Literal["CaseResolved"] = "CaseResolved"
    escalation_id: str
    order_id: str | None
    reason: Case
    outcome: str
    operator: str | None
    note: str


AnyDecision: TypeAlias = (
    DiscrepancyDetected
    | IssuanceCommanded
    | RefundCommanded
    | CaseEscalated
    | RefundHeld
    | RefundWithdrawn
    | CaseResolved
)

DECISION_MODELS: dict[str, type[Decision]] = {
    model.model_fields["type"].default: model
    for model in (
        DiscrepancyDetected,
        IssuanceCommanded,
        RefundCommanded,
        CaseEscalated,
        RefundHeld,
        RefundWithdrawn,
        CaseResolved,
    )
}
