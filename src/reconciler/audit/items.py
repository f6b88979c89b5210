"""One log record as a piece of evidence: its place in the log and its telling fields."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from reconciler.audit.model import Evidence

if TYPE_CHECKING:
    from collections.abc import Mapping

    from reconciler.audit.model import Value
    from reconciler.store import StoredRecord

_FIELDS: dict[str, tuple[str, ...]] = {
    "OrderPlaced": ("order_id", "quantity", "total", "expires_at", "channel"),
    "OrderCancelled": ("order_id", "reason"),
    "PaymentDebited": ("payment_id", "order_id", "amount", "method", "source"),
    "StampIssued": ("order_id", "command_id", "serials"),
    "StampIssuanceFailed": ("order_id", "command_id", "reason", "retryable"),
    "RefundSucceeded": ("refund_id", "payment_id", "amount", "psp_refund_ref"),
    "RefundFailed": ("refund_id", "payment_id", "reason", "retryable"),
    "EscalationResolved": ("escalation_id", "outcome", "operator", "reference", "note"),
    "HeldRefundsApproved": ("incident_id", "operator", "note"),
    "HeldRefundsRejected": ("incident_id", "operator", "note"),
    "DiscrepancyDetected": ("case", "subject", "order_id", "payment_id"),
    "IssuanceCommanded": ("order_id", "quantity", "attempt"),
    "RefundCommanded": ("refund_id", "payment_id", "amount", "reason", "attempt"),
    "RefundHeld": ("refund_id", "payment_id", "amount", "reason", "incident_id"),
    "RefundWithdrawn": ("refund_id", "payment_id", "amount"),
    "CaseEscalated": ("reason", "subject", "order_id", "amount"),
    "CaseResolved": ("escalation_id", "outcome", "operator", "note"),
}
"""The fields each record type shows, in this order; missing or null ones are left out."""

MONEY_FIELDS = frozenset({"amount", "total"})
"""Fields that hold whole rupiah."""


def evidence(
    step: str, record: StoredRecord, payload: Mapping[str, Any], clock: datetime | None
) -> Evidence:
    """The record as evidence for `step`; a decision's time is its own `at`."""
    at = clock
    if record.kind == "decision":
        at = datetime.fromisoformat(payload["at"])
    return Evidence(
        step=step,
        kind=record.kind,
        type=record.type,
        record_id=record.record_id,
        position=record.position,
        source=record.source,
        at=at,
        fields=fields(record.type, payload, fact=record.kind == "fact"),
    )


def fields(type_: str, payload: Mapping[str, Any], *, fact: bool) -> tuple[tuple[str, Value], ...]:
    """The telling fields of a payload; a fact's producer time (`occurred_at`) last."""
    shown: list[tuple[str, Value]] = []
    for name in _FIELDS.get(type_, ()):
        value = len(payload.get("serial_numbers", ())) if name == "serials" else payload.get(name)
        if isinstance(value, str | int | bool):
            shown.append((name, value))
    if fact and isinstance(occurred := payload.get("occurred_at"), str):
        shown.append(("occurred_at", occurred))
    return tuple(shown)
