"""Deterministic, readable ids: the payment provider and the issuer use them as idempotency keys."""

from __future__ import annotations


def refund_id(payment_id: str, reason: str) -> str:
    """One refund per (payment, reason): `<payment_id>/<reason>`."""
    return f"{payment_id}/{reason}"


def refund_command_id(refund: str, attempt: int) -> str:
    """A refund command: `<refund_id>/<attempt>`."""
    return f"{refund}/{attempt}"


def issue_command_id(order_id: str, attempt: int) -> str:
    """An issuance command: `<order_id>/issue/<attempt>`."""
    return f"{order_id}/issue/{attempt}"


def escalation_id(subject: str, reason: str) -> str:
    """An escalation: `<subject>/<reason>`; the subject is an order, payment or serial."""
    return f"{subject}/{reason}"


def again(decision_id: str, occurrence: int) -> str:
    """The id of the n-th decision of one kind about one subject: the bare id first, then `/<n>`."""
    return decision_id if occurrence <= 1 else f"{decision_id}/{occurrence}"


def held_id(refund: str) -> str:
    """A refund held by the flood guard: `<refund_id>/held`."""
    return f"{refund}/held"


def withdrawn_id(refund: str) -> str:
    """A held refund dropped because the stamps arrived after all: `<refund_id>/withdrawn`."""
    return f"{refund}/withdrawn"


def resolution_id(escalation: str) -> str:
    """The closing of an escalation: `<escalation command_id>/resolved`."""
    return f"{escalation}/resolved"


def detection_id(subject: str, case: str) -> str:
    """A detected discrepancy: `<subject>/<case>/detected`."""
    return f"{subject}/{case}/detected"
