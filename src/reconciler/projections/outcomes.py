"""The tallies of `rm_outcomes`: commands the engine took and results that came back.

Issuance: `commanded` (a first attempt) and `retried` (a later one), with the stamps
asked for; `delivered` (a StampIssued, with the serials it carried) and `failed` (a
StampIssuanceFailed, by the issuer's reason, retryable or not). Refunds: `commanded`
and `retried` by the engine's reason, with the rupiah; `held` and `withdrawn` by the
refund-flood guard; `succeeded` (a RefundSucceeded, by the engine's reason for the
refund it settles, `unmatched` if none) and `failed` (a RefundFailed, by the payment
provider's reason, retryable or not). Results count as received: the same answer sent
twice counts twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reconciler.domain.decisions import (
    IssuanceCommanded,
    RefundCommanded,
    RefundHeld,
    RefundWithdrawn,
)
from reconciler.domain.events import RefundFailed, RefundSucceeded, StampIssuanceFailed, StampIssued

if TYPE_CHECKING:
    from reconciler.domain.decider import Decider
    from reconciler.domain.decisions import AnyDecision
    from reconciler.domain.events import Fact
    from reconciler.projections.changes import Changes

_RESULTS = (StampIssued, StampIssuanceFailed, RefundSucceeded, RefundFailed)

ISSUANCE = "issuance"
REFUND = "refund"
UNMATCHED = "unmatched"


def count_result(source: str, fact: Fact, decider: Decider, changes: Changes) -> None:
    """Tally a result fact; call before the fact is decided (it may settle its refund)."""
    if not isinstance(fact, _RESULTS):
        return  # most facts are not results
    if isinstance(fact, StampIssued):
        changes.count((source, ISSUANCE, "delivered", "", 0), stamps=len(fact.serial_numbers))
    elif isinstance(fact, StampIssuanceFailed):
        changes.count((source, ISSUANCE, "failed", fact.reason, int(fact.retryable)))
    elif isinstance(fact, RefundSucceeded):
        refund = decider.find_refund(fact.refund_id, fact.payment_id)
        reason = UNMATCHED if refund is None else refund.reason.value
        changes.count((source, REFUND, "succeeded", reason, 0), amount=fact.amount)
    elif isinstance(fact, RefundFailed):
        refund = decider.find_refund(fact.refund_id, fact.payment_id)
        amount = 0 if refund is None else refund.amount
        changes.count((source, REFUND, "failed", fact.reason, int(fact.retryable)), amount=amount)


def count_decision(source: str, decision: AnyDecision, changes: Changes) -> None:
    """Tally a command, or a refund the flood guard held or withdrew."""
    if isinstance(decision, IssuanceCommanded):
        outcome = "commanded" if decision.attempt == 1 else "retried"
        changes.count((source, ISSUANCE, outcome, "", 0), stamps=decision.quantity)
    elif isinstance(decision, RefundCommanded):
        outcome = "commanded" if decision.attempt == 1 else "retried"
        key = (source, REFUND, outcome, decision.reason.value, 0)
        changes.count(key, amount=decision.amount)
    elif isinstance(decision, RefundHeld):
        key = (source, REFUND, "held", decision.reason.value, 0)
        changes.count(key, amount=decision.amount)
    elif isinstance(decision, RefundWithdrawn):
        changes.count((source, REFUND, "withdrawn", "", 0), amount=decision.amount)
