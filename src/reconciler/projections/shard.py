"""One shard's side of the projection: its decider, where its money stands, the rows it moves.

Each source of the log (a JSONL file, a Kafka partition) is decided by its own decider,
as the engine decides it. The shard replays the source's facts through a decider of its
own with the same rules, so its state is the engine's state at every position; the
money and statuses it writes are computed by `domain.accounting` from that state, the
very functions `reconcile`'s report uses.

Recomputing every order after every fact would cost the size of the state per fact, so
a fact recomputes only what it concerns (see `concerns`), plus what the clock moves: the
orders expiring unpaid at a tick, and everything at the first tick (facts recorded
before it are decided then). The shard keeps each order's and each orphan debit's
account, so its totals move by differences; they equal `total_money` of the state.

Decision records are checked against the decisions the shard's own decider took, in
order: one the facts do not lead to means other rules than the engine's (DivergedError).
A decision the log dropped as a duplicate of another shard's is skipped over.
"""

from __future__ import annotations

import heapq
import json
from collections import deque
from datetime import UTC
from typing import TYPE_CHECKING

from reconciler.domain.accounting import Money, OrderStatus, debit_money, order_money, order_status
from reconciler.domain.decider import Decider
from reconciler.domain.decisions import CaseEscalated, CaseResolved
from reconciler.domain.events import OrderPlaced
from reconciler.domain.state import State
from reconciler.projections.changes import (
    CaseClosed,
    CaseOpened,
    OrderWrite,
    RemedyWrite,
    SourceWrite,
)
from reconciler.projections.concerns import decision_order, decision_payment, fact_concerns
from reconciler.projections.errors import DivergedError
from reconciler.projections.outcomes import count_decision, count_result

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from reconciler.domain.decisions import AnyDecision, Case
    from reconciler.domain.events import Fact
    from reconciler.domain.rules import Rules
    from reconciler.domain.state import Debit, Order
    from reconciler.projections.changes import Changes
    from reconciler.projections.concerns import Concerned

ZERO = Money()
_STATUS_TEXT = {status: status.value for status in OrderStatus}  # `.value` is slow to reach
REMEDIES = frozenset({OrderStatus.FULFILLED, OrderStatus.PARTIALLY_FULFILLED, OrderStatus.REFUNDED})
"""The statuses in which an order's money is settled: stamps delivered, or money back."""


class Shard:
    """The decider of one source, its accounts and totals, and the rows it changes."""

    def __init__(self, source: str, rules: Rules) -> None:
        """Start as the engine starts a new source: an empty state."""
        self.source = source
        self.decider = Decider(rules, State())
        self.totals = ZERO
        # The accounts the totals add up: each order's debits, and each orphan debit.
        self._order_accounts: dict[str, Money] = {}
        self._debit_accounts: dict[str, Money] = {}
        self._expiries: list[tuple[datetime, str]] = []
        self._expected: deque[str] = deque()
        # (clock, its hour), kept while the clock stands still, as it does for most facts.
        self._hour: tuple[datetime, datetime] | None = None

    @property
    def state(self) -> State:
        """The shard's decider state, as the engine's after the same facts."""
        return self.decider.state

    def apply_fact(self, position: int, fact: Fact, changes: Changes) -> None:
        """Decide a fact, then recompute every order and debit it moved."""
        decider = self.decider
        state = decider.state
        concerned = fact_concerns(fact, decider)
        if concerned.orders:
            story = changes.story
            for order_id in concerned.orders:
                story.add((order_id, position))
        count_result(self.source, fact, decider, changes)
        incident = state.incident
        before_first_tick = state.clock is None
        decisions = decider.decide(fact)
        if decisions:  # most facts lead to none
            self._expect_later(decisions, concerned)
        if incident is not None and state.incident is not incident:
            # An incident closed: its orders are no longer escalated under it.
            concerned.orders.update(incident.orders)
        if isinstance(fact, OrderPlaced):
            heapq.heappush(self._expiries, (fact.expires_at, fact.order_id))
        clock = state.clock
        if clock is not None:
            self._at_clock(concerned, clock, changes, first_tick=before_first_tick)
        changes.sources[self.source] = SourceWrite(self.source, clock, position, self.totals)

    def _expect_later(self, decisions: list[AnyDecision], concerned: Concerned) -> None:
        """Note the decisions a fact led to: their records follow it; what they name moved."""
        self._expected.extend([decision.decision_id for decision in decisions])
        for decision in decisions:
            concerned.add_order(decision_order(decision))
            if (payment_id := decision_payment(decision)) is not None:
                concerned.payments.add(payment_id)

    def _at_clock(
        self, concerned: Concerned, clock: datetime, changes: Changes, *, first_tick: bool
    ) -> None:
        """Settle what a fact moved, and what the clock did; note the hour's totals."""
        orders = concerned.orders
        if first_tick:
            state = self.decider.state
            orders.update(state.orders)
            concerned.payments.update(state.payments)
        expiries = self._expiries
        while expiries and expiries[0][0] <= clock:
            orders.add(heapq.heappop(expiries)[1])
        if orders or concerned.payments:
            self._settle(concerned, clock, changes)
        hour = self._hour
        if hour is None or hour[0] != clock:
            hour = self._hour = (clock, hour_of(clock))
        changes.hours[self.source, hour[1]] = self.totals

    def apply_decision(
        self, position: int, decision_id: str, decision: AnyDecision, changes: Changes
    ) -> None:
        """Take a recorded decision: its cases, its tallies, its place in an order's story."""
        self._expect(position, decision_id)
        order_id = decision.order_id
        if order_id is None:
            debit = self.state.payments.get(decision_payment(decision) or "")
            order_id = debit.order_id if debit is not None else None
        if order_id is not None:
            changes.story.add((order_id, position))
        count_decision(self.source, decision, changes)
        if isinstance(decision, CaseEscalated):
            changes.cases_opened.append(
                CaseOpened(
                    self.source,
                    decision.command_id,
                    decision.reason.value,
                    decision.order_id,
                    decision.subject,
                    decision.amount,
                    decision.at,
                )
            )
        elif isinstance(decision, CaseResolved):
            changes.cases_closed.append(
                CaseClosed(
                    self.source,
                    decision.escalation_id,
                    decision.at,
                    decision.outcome,
                    decision.operator,
                    decision.note,
                )
            )
        changes.sources[self.source] = SourceWrite(
            self.source, self.state.clock, position, self.totals
        )

    def _expect(self, position: int, decision_id: str) -> None:
        while self._expected:
            if self._expected.popleft() == decision_id:
                return
        raise DivergedError(self.source, position, decision_id)

    def _settle(self, concerned: Concerned, clock: datetime, changes: Changes) -> None:
        """Recompute the accounts of what a fact concerns, and the rows of its orders."""
        state = self.decider.state
        all_orders, all_payments = state.orders, state.payments
        orders, payments = concerned.orders, concerned.payments
        for payment_id in payments:
            owner = _owner(all_payments.get(payment_id))
            if owner is not None:
                orders.add(owner)
        found: list[tuple[Order, Sequence[Debit]]] = []
        for order_id in orders:
            order = all_orders.get(order_id)
            if order is not None:
                attached = order.debits
                found.append((order, attached))
                payments.update([debit.payment_id for debit in attached])
        self._settle_debits(payments, all_payments)
        for order, debits in found:
            money = _order_money(order, debits)
            self._account(self._order_accounts, order.order_id, money)
            # The orders `accounting.reported_orders` lists.
            if order.placed or order.delivered or order.cases:
                self._write_order(order, debits, money, clock, changes)

    def _settle_debits(self, payments: set[str], all_payments: dict[str, Debit]) -> None:
        """Recompute the accounts of orphan debits (an order's debits are in its account)."""
        accounts = self._debit_accounts
        for payment_id in payments:
            debit = all_payments.get(payment_id)
            if debit is None:
                continue
            if _owner(debit) is None:
                self._account(accounts, payment_id, debit_money(debit, None))
            elif payment_id in accounts:  # an orphan's until now: its order's from now on
                self._account(accounts, payment_id, ZERO)

    def _account(self, accounts: dict[str, Money], key: str, money: Money) -> None:
        """Move the totals by what an account's money changed."""
        old = accounts.get(key, ZERO)
        if money is not old and money != old:
            accounts[key] = money
            self.totals = _moved(self.totals, old, money)

    def _write_order(
        self,
        order: Order,
        debits: Sequence[Debit],
        money: Money,
        clock: datetime,
        changes: Changes,
    ) -> None:
        """Note an order's row as it stands now; its firsts keep the page's earlier ones."""
        key = (self.source, order.order_id)
        status = order_status(order, money, clock)
        earlier = changes.orders.get(key)
        if earlier is None:
            placed_at = remedied_at = None
        else:
            placed_at, remedied_at = earlier.placed_at, earlier.remedied_at
        if placed_at is None and order.placed:
            placed_at = clock
        if not debits:
            first_debit_at = None
        elif len(debits) == 1:
            first_debit_at = debits[0].recorded_at
        else:
            first_debit_at = min(debit.recorded_at for debit in debits)
        remedied = first_debit_at is not None and status in REMEDIES
        if remedied_at is None and remedied:
            remedied_at = clock
        if remedied and first_debit_at is not None and key not in changes.remedies:
            seconds = (clock - first_debit_at).total_seconds()
            changes.remedies[key] = RemedyWrite(
                self.source, order.order_id, status.value, first_debit_at, clock, seconds
            )
        changes.orders[key] = OrderWrite(
            self.source,
            order.order_id,
            _STATUS_TEXT[status],
            order.placed,
            order.quantity,
            order.delivered,
            money,
            _cases(order.cases),
            order.expires_at,
            placed_at,
            order.paid_at,
            first_debit_at,
            remedied_at,
            clock,
        )


def hour_of(clock: datetime) -> datetime:
    """The start of the UTC hour the clock is in."""
    return clock.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _owner(debit: Debit | None) -> str | None:
    """The order whose account holds this debit; None for an orphan (its own account)."""
    if debit is None or debit.orphan:
        return None
    return debit.order_id


def _order_money(order: Order, debits: Sequence[Debit]) -> Money:
    """`accounting.order_money`, without its sum for the usual single debit."""
    if len(debits) == 1:
        return debit_money(debits[0], order)
    return order_money(order) if debits else ZERO


_NO_CASES = json.dumps([])


def _cases(cases: Sequence[Case]) -> str:
    """An order's cases as the JSON list its row keeps (nearly always empty)."""
    return json.dumps([case.value for case in cases]) if cases else _NO_CASES


def _moved(totals: Money, old: Money, new: Money) -> Money:
    return Money(
        totals.debited - old.debited + new.debited,
        totals.kept - old.kept + new.kept,
        totals.refunded - old.refunded + new.refunded,
        totals.refund_pending - old.refund_pending + new.refund_pending,
        totals.at_risk - old.at_risk + new.at_risk,
    )
