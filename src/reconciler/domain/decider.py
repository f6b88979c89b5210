"""SPEC's rules as one pure function: `decide(state, fact, rules) -> decisions`.

The live service, the offline `reconcile` command and the auditors' replay all run
this function. It reads no wall clock, does no I/O and keeps no global state: the clock
is the last `ClockTicked`, and a deadline is checked again when it falls due, so a
replay of the same log takes exactly the same decisions. `state` is updated in place
(see state.py for why); the decisions returned are what the caller records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reconciler.domain import ids
from reconciler.domain.decisions import (
    AnyDecision,
    Case,
    CaseEscalated,
    DiscrepancyDetected,
    IssuanceCommanded,
    RefundCommanded,
)
from reconciler.domain.events import (
    ClockTicked,
    OrderCancelled,
    OrderPlaced,
    PaymentDebited,
    RefundFailed,
    RefundSucceeded,
    StampIssuanceFailed,
    StampIssued,
)
from reconciler.domain.state import (
    Attempt,
    Debit,
    Order,
    Refund,
    RefundStatus,
    TimerKind,
    Unmatched,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from reconciler.domain.events import Fact
    from reconciler.domain.rules import Rules
    from reconciler.domain.state import State


def decide(state: State, fact: Fact, rules: Rules) -> list[AnyDecision]:
    """Apply one fact to `state` and return the decisions it leads to, in order."""
    return Decider(rules, state).decide(fact)


class Decider:
    """`decide` bound to one state and one set of rules, for callers that feed many facts."""

    __slots__ = ("decisions", "rules", "state")

    def __init__(self, rules: Rules, state: State) -> None:
        """Decide over `state` (updated in place) under `rules`."""
        self.state = state
        self.rules = rules
        self.decisions: list[AnyDecision] = []

    def decide(self, fact: Fact) -> list[AnyDecision]:
        """Apply one fact and return the decisions it leads to, in order."""
        if self.state.clock is None and type(fact) is not ClockTicked:
            # SPEC: a fact recorded before any tick counts as recorded at the first tick.
            self.state.before_first_tick.append(fact)
            return []
        decisions = self.decisions = []
        _FACT_HANDLERS[type(fact)](self, fact)
        return decisions

    @property
    def now(self) -> datetime:
        """The engine clock; set, since facts before the first tick wait for it."""
        clock = self.state.clock
        if clock is None:  # pragma: no cover - decide() buffers facts until the first tick
            msg = "no clock before the first tick"
            raise AssertionError(msg)
        return clock

    def apply(self, fact: Fact) -> None:
        """Dispatch a fact to the rule that handles its type."""
        _FACT_HANDLERS[type(fact)](self, fact)

    # -- time -------------------------------------------------------------------------

    def on_tick(self, fact: ClockTicked) -> None:
        """Advance the clock (never back) and act on every deadline now due."""
        state = self.state
        if state.clock is None:
            state.clock = fact.at
            waiting, state.before_first_tick = state.before_first_tick, []
            for earlier in waiting:
                self.apply(earlier)
        elif fact.at > state.clock:
            state.clock = fact.at
        while (due := state.pop_due()) is not None:
            kind, key, token = due
            _TIMER_HANDLERS[kind](self, key, token)

    # -- orders -----------------------------------------------------------------------

    def on_order_placed(self, fact: OrderPlaced) -> None:
        """Know the order; debits that waited for it are judged as if they just arrived."""
        state = self.state
        order = state.orders.get(fact.order_id)
        if order is None:
            state.orders[fact.order_id] = Order(
                fact.order_id,
                placed=True,
                quantity=fact.quantity,
                unit_total=fact.unit_total,
                total=fact.total,
                expires_at=fact.expires_at,
            )
            if fact.order_id in state.orphans:
                self.attach_orphans(state.orders[fact.order_id])
            return
        if order.placed:
            return  # the first placement is the order; a repeat changes nothing
        order.placed = True
        order.quantity = fact.quantity
        order.unit_total = fact.unit_total
        order.total = fact.total
        order.expires_at = fact.expires_at
        if order.delivered > order.quantity:
            self.escalate_over_issued(order)
        self.attach_orphans(order)

    def attach_orphans(self, order: Order) -> None:
        """Rule 5: debits that waited for this order are judged as if they just arrived."""
        for debit in self.state.orphans.pop(order.order_id, ()):
            debit.orphan = False
            self.attach(order, debit)

    def on_order_cancelled(self, fact: OrderCancelled) -> None:
        """Rule 6: refund the debits of a cancelled order, after any open attempt ends."""
        order = self.state.order(fact.order_id)
        if order.cancelled:
            return
        order.cancelled = True
        if order.open_attempt is None:
            self.settle_cancelled(order)

    # -- debits -----------------------------------------------------------------------

    def on_payment(self, fact: PaymentDebited) -> None:
        """One debit per payment id; a debit for an unknown order waits ORPHAN_WINDOW."""
        state = self.state
        if fact.payment_id in state.payments:
            return  # the same debit from another source (callback, settlement, inquiry)
        debit = Debit(fact.payment_id, fact.order_id, fact.amount, self.now)
        state.payments[fact.payment_id] = debit
        order = state.orders.get(fact.order_id or "")
        if order is not None and order.placed:
            self.attach(order, debit)
            return
        debit.orphan = True
        if fact.order_id is not None:
            state.orphans.setdefault(fact.order_id, []).append(debit)
        state.schedule(
            self.now + self.rules.orphan_window, TimerKind.ORPHAN_WINDOW, debit.payment_id
        )

    def attach(self, order: Order, debit: Debit) -> None:
        """Rules 1, 3, 4 and 6 for a debit on a known order."""
        order.debits.append(debit)
        if order.cancelled and order.delivered == 0:
            if order.open_attempt is None:
                self.command_refund(debit, debit.amount, Case.CANCELLED_ORDER_DEBIT)
            return
        if order.payment is None and debit.amount == order.total:
            order.payment = debit
            order.paid_at = self.now
            if order.cancelled:
                self.settle_cancelled(order)
            else:
                self.state.schedule(
                    self.now + self.rules.issue_sla, TimerKind.ISSUE_SLA, order.order_id
                )
            return
        case = Case.DUPLICATE_DEBIT if order.payment is not None else Case.AMOUNT_MISMATCH
        self.command_refund(debit, debit.amount, case)

    # -- stamps -----------------------------------------------------------------------

    def on_stamps(self, fact: StampIssued) -> None:
        """Count fresh serials; escalate duplicates, over-issue and double remedies (7, 10)."""
        state = self.state
        order = state.order(fact.order_id)
        fresh = 0
        for serial in fact.serial_numbers:
            if serial in state.serials:
                # The second delivery of a serial is no stamp: the buyer still needs one.
                self.escalate(Case.DUPLICATE_SERIAL, order, serial, self.unit_total(order))
            else:
                state.serials.add(serial)
                fresh += 1
        if fresh:
            order.delivered += fresh
            if order.first_delivery_at is None:
                order.first_delivery_at = self.now
                if order.payment is None:
                    state.schedule(
                        self.now + self.rules.payment_grace, TimerKind.PAYMENT_GRACE, order.order_id
                    )
            if order.placed and order.delivered > order.quantity:
                self.escalate_over_issued(order)
            if order.undelivered_refunded:
                self.escalate(
                    Case.DOUBLE_REMEDY, order, order.order_id, fresh * self.unit_total(order)
                )
        attempt = order.open_attempt
        if attempt is not None and fact.command_id in (None, attempt.command_id):
            self.end_attempt(order, retryable=True)
        elif fact.command_id is not None:
            self.note(fact, fact.order_id, f"no open attempt is {fact.command_id}")

    def on_issuance_failed(self, fact: StampIssuanceFailed) -> None:
        """End the matching attempt; a failure outside any attempt is only recorded."""
        order = self.state.order(fact.order_id)
        attempt = order.open_attempt
        if attempt is not None and fact.command_id in (None, attempt.command_id):
            self.end_attempt(order, retryable=fact.retryable)
        else:
            # SPEC: recorded and reported; the ISSUE_SLA timer still decides.
            self.note(fact, fact.order_id, "no engine issuance attempt is open")

    def command_issue(self, order: Order, quantity: int) -> None:
        """Rule 2: command the next issuance attempt for the missing stamps."""
        order.attempts += 1
        command_id = ids.issue_command_id(order.order_id, order.attempts)
        order.open_attempt = Attempt(order.attempts, command_id, quantity)
        if order.attempts == 1:
            payment_id = order.payment.payment_id if order.payment else None
            self.detect(Case.PAID_NOT_ISSUED, order, order.order_id, payment_id)
        self.decisions.append(
            IssuanceCommanded(
                decision_id=command_id,
                at=self.now,
                command_id=command_id,
                order_id=order.order_id,
                quantity=quantity,
                attempt=order.attempts,
            )
        )
        self.state.schedule(
            self.now + self.rules.issue_attempt_timeout,
            TimerKind.ATTEMPT_TIMEOUT,
            order.order_id,
            order.attempts,
        )

    def end_attempt(self, order: Order, *, retryable: bool) -> None:
        """Rule 2: when an attempt ends short, retry, or refund what was not delivered."""
        attempt = order.open_attempt
        if attempt is not None:
            attempt.open = False
        order.open_attempt = None
        missing = order.quantity - order.delivered
        if order.cancelled:
            self.settle_cancelled(order)
        elif missing <= 0:
            return
        elif retryable and order.attempts < self.rules.max_issue_attempts:
            self.command_issue(order, missing)
        else:
            self.refund_undelivered(order, Case.PAID_NOT_ISSUED)

    # -- refunds ----------------------------------------------------------------------

    def settle_cancelled(self, order: Order) -> None:
        """Rule 6 with rule 9: keep what was delivered, refund every other rupiah."""
        for debit in order.debits:
            if debit.refund is not None:
                continue
            amount = debit.amount
            if debit is order.payment and order.delivered > 0:
                amount = min(amount, (order.quantity - order.delivered) * order.unit_total)
                if amount <= 0:
                    continue
            self.command_refund(debit, amount, Case.CANCELLED_ORDER_DEBIT)
            if debit is order.payment:
                order.undelivered_refunded = True

    def refund_undelivered(self, order: Order, case: Case) -> None:
        """Rule 9: nothing delivered, every debit in full; some, the rest from the payment."""
        payment = order.payment
        if order.delivered == 0:
            for debit in order.debits:
                if debit.refund is None:
                    self.command_refund(debit, debit.amount, case)
        elif payment is not None and payment.refund is None:
            missing = order.quantity - order.delivered
            self.command_refund(payment, min(payment.amount, missing * order.unit_total), case)
        order.undelivered_refunded = True

    def command_refund(self, debit: Debit, amount: int, case: Case) -> None:
        """Command a refund, never twice for the same money (one refund id per debit)."""
        if debit.refund is not None:
            return
        refund_id = ids.refund_id(debit.payment_id, case.value)
        refund = Refund(refund_id, debit.payment_id, debit.order_id, amount, case)
        debit.refund = refund
        self.state.refunds[refund_id] = refund
        order = (
            None if debit.orphan or debit.order_id is None else self.state.orders[debit.order_id]
        )
        self.detect(case, order, debit.payment_id, debit.payment_id, debit.order_id)
        self.emit_refund(refund)

    def emit_refund(self, refund: Refund) -> None:
        """Record the RefundPayment command for the refund's current attempt."""
        command_id = ids.refund_command_id(refund.refund_id, refund.attempt)
        self.decisions.append(
            RefundCommanded(
                decision_id=command_id,
                at=self.now,
                command_id=command_id,
                refund_id=refund.refund_id,
                order_id=refund.order_id,
                payment_id=refund.payment_id,
                amount=refund.amount,
                reason=refund.reason,
                attempt=refund.attempt,
            )
        )

    def find_refund(self, refund_id: str, payment_id: str) -> Refund | None:
        """Match a provider's answer by refund id, or by payment when the id is unknown."""
        refund = self.state.refunds.get(refund_id)
        if refund is None:
            debit = self.state.payments.get(payment_id)
            refund = debit.refund if debit is not None else None
        return refund

    def on_refund_succeeded(self, fact: RefundSucceeded) -> None:
        """The money is back; an amount other than commanded is escalated."""
        refund = self.find_refund(fact.refund_id, fact.payment_id)
        if refund is None:
            self.note(fact, fact.refund_id, "the engine commanded no such refund")
            return
        if refund.status is RefundStatus.SUCCEEDED:
            return  # the same answer again
        refund.status = RefundStatus.SUCCEEDED
        refund.refunded = min(fact.amount, refund.amount)
        if fact.amount != refund.amount:
            self.escalate(
                Case.REFUND_AMOUNT_MISMATCH,
                self.order_of(refund),
                refund.payment_id,
                abs(fact.amount - refund.amount),
                payment_id=refund.payment_id,
                order_id=refund.order_id,
            )

    def on_refund_failed(self, fact: RefundFailed) -> None:
        """Rule 8: retry a retryable failure later, up to the limit; otherwise escalate."""
        refund = self.find_refund(fact.refund_id, fact.payment_id)
        if refund is None:
            self.note(fact, fact.refund_id, "the engine commanded no such refund")
            return
        if refund.status is not RefundStatus.AWAITING_RESULT:
            return  # late or repeated: only the answer to the current attempt counts
        if fact.retryable and refund.attempt < self.rules.max_refund_attempts:
            refund.status = RefundStatus.AWAITING_RETRY
            self.state.schedule(
                self.now + self.rules.refund_retry_interval,
                TimerKind.REFUND_RETRY,
                refund.refund_id,
                refund.attempt,
            )
            return
        refund.status = RefundStatus.FAILED
        self.escalate(
            Case.REFUND_FAILED,
            self.order_of(refund),
            refund.payment_id,
            refund.amount,
            payment_id=refund.payment_id,
            order_id=refund.order_id,
        )

    # -- cases ------------------------------------------------------------------------

    def note(self, fact: Fact, subject: str, why: str) -> None:
        """Keep a result no command of ours was waiting for, so the report shows it."""
        self.state.unmatched.append(Unmatched(fact.event_id, fact.type, subject, why))

    def detect(
        self,
        case: Case,
        order: Order | None,
        subject: str,
        payment_id: str | None,
        order_id: str | None = None,
    ) -> None:
        """Record that a case was opened, on its order when the order is known."""
        if order is not None:
            order_id = order.order_id
            if case not in order.cases:
                order.cases.append(case)
        self.decisions.append(
            DiscrepancyDetected(
                decision_id=ids.detection_id(subject, case.value),
                at=self.now,
                case=case,
                order_id=order_id,
                payment_id=payment_id,
                subject=subject,
            )
        )

    def escalate(  # noqa: PLR0913 - an escalation names its case, subject, order and money
        self,
        case: Case,
        order: Order | None,
        subject: str,
        amount: int,
        *,
        payment_id: str | None = None,
        order_id: str | None = None,
    ) -> None:
        """Hand a case to a person, once per subject and reason."""
        command_id = ids.escalation_id(subject, case.value)
        if command_id in self.state.escalated:
            return
        self.state.escalated.add(command_id)
        if order is not None:
            order_id = order.order_id
            order.escalations.append(command_id)
        self.detect(case, order, subject, payment_id, order_id)
        self.decisions.append(
            CaseEscalated(
                decision_id=command_id,
                at=self.now,
                command_id=command_id,
                order_id=order_id,
                reason=case,
                subject=subject,
                amount=amount,
            )
        )

    def escalate_over_issued(self, order: Order) -> None:
        """Rule 7: more stamps delivered than ordered."""
        excess = order.delivered - order.quantity
        self.escalate(Case.OVER_ISSUED, order, order.order_id, excess * order.unit_total)

    def order_of(self, refund: Refund) -> Order | None:
        """The placed order a refund's debit belongs to, if any."""
        debit = self.state.payments[refund.payment_id]
        if debit.orphan or debit.order_id is None:
            return None
        return self.state.orders.get(debit.order_id)

    def unit_total(self, order: Order) -> int:
        """One stamp's price and fee; the standard one for an order never placed."""
        if order.placed:
            return order.unit_total
        return self.rules.default_unit_price + self.rules.default_unit_fee

    # -- deadlines --------------------------------------------------------------------

    def on_issue_sla(self, order_id: str, _token: int) -> None:
        """Rule 2: ISSUE_SLA after payment, command issuance of the missing stamps."""
        order = self.state.orders[order_id]
        missing = order.quantity - order.delivered
        if not order.cancelled and order.attempts == 0 and missing > 0:
            self.command_issue(order, missing)

    def on_attempt_timeout(self, order_id: str, attempt_number: int) -> None:
        """Rule 2: an attempt with no answer ends after ISSUE_ATTEMPT_TIMEOUT, retryable."""
        order = self.state.orders[order_id]
        attempt = order.open_attempt
        if attempt is not None and attempt.number == attempt_number:
            self.end_attempt(order, retryable=True)

    def on_orphan_window(self, payment_id: str, _token: int) -> None:
        """Rule 5: a debit whose order never became known is refunded in full."""
        debit = self.state.payments[payment_id]
        if not debit.orphan:
            return
        if debit.order_id is not None:
            waiting = self.state.orphans.get(debit.order_id, [])
            if debit in waiting:
                waiting.remove(debit)
            if not waiting:
                self.state.orphans.pop(debit.order_id, None)
        self.command_refund(debit, debit.amount, Case.ORPHAN_DEBIT)

    def on_payment_grace(self, order_id: str, _token: int) -> None:
        """Rule 7: stamps delivered and still no payment PAYMENT_GRACE later."""
        order = self.state.orders[order_id]
        if order.payment is None:
            amount = order.delivered * self.unit_total(order)
            self.escalate(Case.ISSUED_WITHOUT_PAYMENT, order, order.order_id, amount)

    def on_refund_retry(self, refund_id: str, attempt: int) -> None:
        """Rule 8: command the next attempt of a refund that failed retryably."""
        refund = self.state.refunds[refund_id]
        if refund.status is RefundStatus.AWAITING_RETRY and refund.attempt == attempt:
            refund.attempt += 1
            refund.status = RefundStatus.AWAITING_RESULT
            self.emit_refund(refund)


_FACT_HANDLERS: dict[type[Fact], Callable[[Decider, object], None]] = {
    ClockTicked: Decider.on_tick,  # type: ignore[dict-item]
    OrderPlaced: Decider.on_order_placed,  # type: ignore[dict-item]
    OrderCancelled: Decider.on_order_cancelled,  # type: ignore[dict-item]
    PaymentDebited: Decider.on_payment,  # type: ignore[dict-item]
    StampIssued: Decider.on_stamps,  # type: ignore[dict-item]
    StampIssuanceFailed: Decider.on_issuance_failed,  # type: ignore[dict-item]
    RefundSucceeded: Decider.on_refund_succeeded,  # type: ignore[dict-item]
    RefundFailed: Decider.on_refund_failed,  # type: ignore[dict-item]
}

_TIMER_HANDLERS: dict[TimerKind, Callable[[Decider, str, int], None]] = {
    TimerKind.ISSUE_SLA: Decider.on_issue_sla,
    TimerKind.ATTEMPT_TIMEOUT: Decider.on_attempt_timeout,
    TimerKind.ORPHAN_WINDOW: Decider.on_orphan_window,
    TimerKind.PAYMENT_GRACE: Decider.on_payment_grace,
    TimerKind.REFUND_RETRY: Decider.on_refund_retry,
}
