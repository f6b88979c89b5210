"""Where every debited rupiah stands (SPEC rule 11) and each order's status.

debited = kept + refunded + refund_pending + at_risk, per debit, per order and in total.
`at_risk` is what is neither kept for delivered stamps nor refunded nor on its way back;
a refund that failed for good is at risk again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from itertools import chain
from typing import TYPE_CHECKING

from reconciler.domain.state import RefundStatus

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from reconciler.domain.state import Debit, Order, State


class OrderStatus(StrEnum):
    """SPEC's order statuses; an order has the first that holds, in this order."""

    ESCALATED = "ESCALATED"
    REFUND_PENDING = "REFUND_PENDING"
    FULFILLED = "FULFILLED"
    PARTIALLY_FULFILLED = "PARTIALLY_FULFILLED"
    REFUNDED = "REFUNDED"
    PAID = "PAID"
    EXPIRED_UNPAID = "EXPIRED_UNPAID"
    AWAITING_PAYMENT = "AWAITING_PAYMENT"


@dataclass(frozen=True, slots=True)
class Money:
    """The five figures of the conservation identity, in rupiah."""

    debited: int = 0
    kept: int = 0
    refunded: int = 0
    refund_pending: int = 0
    at_risk: int = 0

    def __add__(self, other: Money) -> Money:
        """Sum two accounts figure by figure."""
        return Money(
            self.debited + other.debited,
            self.kept + other.kept,
            self.refunded + other.refunded,
            self.refund_pending + other.refund_pending,
            self.at_risk + other.at_risk,
        )

    @property
    def balanced(self) -> bool:
        """The conservation identity holds and no figure is negative."""
        figures = (self.kept, self.refunded, self.refund_pending, self.at_risk)
        return min(figures) >= 0 and self.debited == sum(figures)


def debit_money(debit: Debit, order: Order | None) -> Money:
    """Split one debit into kept, refunded, pending and at risk."""
    refund = debit.refund
    refunded = pending = claimed = 0
    if refund is not None:
        claimed = refund.amount
        if refund.status is RefundStatus.SUCCEEDED:
            refunded = refund.refunded
        elif refund.pending:
            pending = refund.amount
    kept = 0
    if order is not None and order.payment is debit:
        delivered = min(order.delivered, order.quantity)
        kept = max(0, min(delivered * order.unit_total, debit.amount - claimed))
    at_risk = debit.amount - kept - refunded - pending
    return Money(debit.amount, kept, refunded, pending, at_risk)


def order_money(order: Order) -> Money:
    """The account of every debit attached to an order."""
    return sum((debit_money(debit, order) for debit in order.debits), Money())


def total_money(state: State) -> Money:
    """The account of every debit the engine knows, orphans included, archived ones too."""
    total = Money()
    # The resident debits (an order moves to the archive with its debits, so theirs are
    # resident too), then the archived orders' own.
    for debit in dict.values(state.payments):
        order = None if debit.orphan or debit.order_id is None else state.orders.get(debit.order_id)
        total += debit_money(debit, order)
    if state.archive is not None:
        for order in state.archive.orders():
            total += order_money(order)
    return total


def order_status(order: Order, money: Money, clock: datetime | None) -> OrderStatus:  # noqa: PLR0911 - SPEC's list, first match wins
    """The first of SPEC's statuses that holds for the order."""
    if order.escalations:
        return OrderStatus.ESCALATED
    if money.refund_pending > 0:
        return OrderStatus.REFUND_PENDING
    if order.placed and order.delivered >= order.quantity:
        return OrderStatus.FULFILLED
    refund = order.payment.refund if order.payment is not None else None
    if order.delivered > 0 and refund is not None and refund.status is RefundStatus.SUCCEEDED:
        return OrderStatus.PARTIALLY_FULFILLED
    if order.delivered == 0 and money.debited > 0 and money.refunded == money.debited:
        return OrderStatus.REFUNDED
    if order.payment is not None:
        return OrderStatus.PAID
    if order.expires_at is not None and clock is not None and clock >= order.expires_at:
        return OrderStatus.EXPIRED_UNPAID
    return OrderStatus.AWAITING_PAYMENT


def reported_orders(state: State) -> Iterable[Order]:
    """Placed orders, and ids never placed that stamps or cases name (archived ones last)."""
    orders: Iterable[Order] = state.orders.values()
    if state.archive is not None:
        orders = chain(orders, state.archive.orders())
    for order in orders:
        if order.placed or order.delivered or order.cases:
            yield order
