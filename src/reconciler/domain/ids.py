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


def detection_id(subject: str, case: str) -> str:
    """A detected discrepancy: `<subject>/<case>/detected`."""
    return f"{subject}/{case}/detected"
