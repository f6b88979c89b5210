"""What-if: the same facts under other rules, and which orders would have ended otherwise.

The replay runs two deciders side by side over the same facts: one under the rules the
log was recorded with (checked against the recorded decisions), one under the other
rules. At the end each order's status and money under both are set side by side; the
orders that differ, and the sum of what moved, are the answer.

The facts include the providers' answers, and those answered the recorded commands. A
command only the other rules would have sent got no answer in this history; a what-if
shows what the engine would have decided and held, not what the world would have done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from reconciler.domain.accounting import (
    Money,
    order_money,
    order_status,
    reported_orders,
    total_money,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from reconciler.domain.state import Order, State


@dataclass(frozen=True, slots=True)
class Ending:
    """How one order stands at the end of a run."""

    status: str
    money: Money
    delivered: int
    cases: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OrderChange:
    """An order that would have ended otherwise under the other rules."""

    source: str
    order_id: str
    recorded: Ending | None
    what_if: Ending | None


@dataclass(frozen=True, slots=True)
class WhatIf:
    """Every order that ends otherwise, and the money of both runs."""

    changes: list[OrderChange]
    recorded_money: Money
    what_if_money: Money

    @property
    def moved(self) -> Money:
        """What the other rules move, figure by figure (what-if minus recorded)."""
        before, after = self.recorded_money, self.what_if_money
        return Money(
            after.debited - before.debited,
            after.kept - before.kept,
            after.refunded - before.refunded,
            after.refund_pending - before.refund_pending,
            after.at_risk - before.at_risk,
        )


def compare_endings(recorded: Mapping[str, State], what_if: Mapping[str, State]) -> WhatIf:
    """Set every order's ending under the recorded rules beside its ending under the others."""
    before = _endings(recorded)
    after = _endings(what_if)
    changes = [
        OrderChange(source, order_id, before.get(key), after.get(key))
        for key in sorted(before.keys() | after.keys())
        for source, order_id in (key,)
        if before.get(key) != after.get(key)
    ]
    return WhatIf(changes, _total(recorded), _total(what_if))


def _endings(states: Mapping[str, State]) -> dict[tuple[str, str], Ending]:
    endings = {}
    for source, state in states.items():
        for order in reported_orders(state):
            endings[source, order.order_id] = _ending(order, state)
    return endings


def _ending(order: Order, state: State) -> Ending:
    money = order_money(order)
    status = order_status(order, money, state.clock)
    return Ending(status.value, money, order.delivered, tuple(case.value for case in order.cases))


def _total(states: Mapping[str, State]) -> Money:
    """Every debit's account, orphans included, over all sources."""
    return sum((total_money(state) for state in states.values()), Money())
