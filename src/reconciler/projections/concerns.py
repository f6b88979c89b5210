"""Which orders and payments a record concerns, so that only their rows are recomputed.

A fact names its order or payment; a result names a refund, whose payment and order the
decider knows; an operator's action names an escalation or an incident, whose orders
and refunds are looked up before the fact is decided (deciding closes them). The
decisions a fact leads to name every other order and payment whose money or status
it moved. What the clock alone changes (an order expiring unpaid, the facts that waited
for the first tick) is the model's to add.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reconciler.domain.decisions import (
    DiscrepancyDetected,
    RefundCommanded,
    RefundHeld,
    RefundWithdrawn,
)
from reconciler.domain.events import (
    EscalationResolved,
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

if TYPE_CHECKING:
    from reconciler.domain.decider import Decider
    from reconciler.domain.decisions import AnyDecision
    from reconciler.domain.events import Fact
    from reconciler.domain.state import Refund

_NAMES_ORDER = (OrderPlaced, OrderCancelled, StampIssued, StampIssuanceFailed)
_NAMES_PAYMENT = (DiscrepancyDetected, RefundCommanded, RefundHeld, RefundWithdrawn)


@dataclass(slots=True)
class Concerned:
    """Order ids and payment ids a record is about."""

    orders: set[str] = field(default_factory=set)
    payments: set[str] = field(default_factory=set)

    def add_order(self, order_id: str | None) -> None:
        """Add an order id, if there is one."""
        if order_id is not None:
            self.orders.add(order_id)

    def add_refund(self, refund: Refund | None) -> None:
        """Add a refund's payment and the order its debit named."""
        if refund is not None:
            self.payments.add(refund.payment_id)
            self.add_order(refund.order_id)


def fact_concerns(fact: Fact, decider: Decider) -> Concerned:
    """What a fact is about, looked up in the shard's state before the fact is decided."""
    concerned = Concerned()
    state = decider.state
    if isinstance(fact, _NAMES_ORDER):
        concerned.add_order(fact.order_id)
    elif isinstance(fact, PaymentDebited):
        concerned.add_order(fact.order_id)
        concerned.payments.add(fact.payment_id)
    elif isinstance(fact, RefundSucceeded | RefundFailed):
        concerned.payments.add(fact.payment_id)
        concerned.add_refund(decider.find_refund(fact.refund_id, fact.payment_id))
        debit = state.payments.get(fact.payment_id)
        concerned.add_order(debit.order_id if debit is not None else None)
    elif isinstance(fact, EscalationResolved):
        escalation = state.open_escalations.get(fact.escalation_id)
        if escalation is not None:
            concerned.add_order(escalation.order_id)
            concerned.add_refund(state.refunds.get(escalation.refund_id or ""))
    elif isinstance(fact, HeldRefundsApproved | HeldRefundsRejected):
        incident = state.incident
        if incident is not None and incident.incident_id == fact.incident_id:
            concerned.orders.update(incident.orders)
            for refund_id in incident.held:
                concerned.add_refund(state.refunds.get(refund_id))
    return concerned


def decision_order(decision: AnyDecision) -> str | None:
    """The order a decision names, if any."""
    return decision.order_id


def decision_payment(decision: AnyDecision) -> str | None:
    """The payment a decision names, if any."""
    return decision.payment_id if isinstance(decision, _NAMES_PAYMENT) else None
