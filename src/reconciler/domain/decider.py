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
    CaseResolved,
    DiscrepancyDetected,
    IssuanceCommanded,
    RefundCommanded,
    RefundHeld,
    RefundWithdrawn,
)
from reconciler.domain.events import (
    ClockTicked,
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
from reconciler.domain.state import (
    Attempt,
    Debit,
    Escalation,
    Incident,
    Order,
    Refund,
    RefundStatus,
    TimerKind,
    Unmatched,
    shared_int,
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
                total=shared_int(fact.total),
                expires_at=fact.expires_at,
            )
            if fact.order_id in state.orphans:
                self.attach_orphans(state.orders[fact.order_id])
            return
        if order.placed:
            return  # the first placement is the order; a repeat changes nothing
        order.placed = True
        order.quantity = fact.quantity
        order.total = shared_int(fact.total)
        order.expires_at = fact.expires_at
        if order.delivered > order.quantity:
            self.escalate_over_issued(order)
        self.attach_orphans(order)

    def attach_orphans(self, order: Order) -> None:
        """Rule 5: debits that waited for this order are judged as if they just arrived."""
        for debit in self.state.orphans.pop(order.order_id, ()):
            debit.orphan = False
            debit.order_id = order.order_id  # the same id: one string, not two
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
        order = state.orders.get(fact.order_id or "")
        # The order's own id string when it is known: one string per id, not one per fact.
        order_id = fact.order_id if order is None else order.order_id
        debit = Debit(fact.payment_id, order_id, shared_int(fact.amount), self.now)
        state.payments[fact.payment_id] = debit
        if order is not None and order.placed:
            self.attach(order, debit)
            return
        debit.orphan = True
        if order_id is not None:
            state.orphans.setdefault(order_id, []).append(debit)
        state.schedule(
            self.now + self.rules.orphan_window, TimerKind.ORPHAN_WINDOW, debit.payment_id
        )

    def attach(self, order: Order, debit: Debit) -> None:
        """Rules 1, 3, 4 and 6 for a debit on a known order."""
        order.attach_debit(debit)
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
        order = self.state.order(fact.order_id)
        fresh = self.count_fresh(order, fact.serial_numbers)
        if fresh:
            self.deliver(order, fresh)
        attempt = order.open_attempt
        if attempt is not None and fact.command_id in (None, attempt.command_id):
            if fresh and fact.command_id is not None and self.state.incident is not None:
                # The issuer answered one of our commands with stamps: it has recovered.
                self.release_held("ISSUER_RECOVERED", None, f"{fact.event_id} delivered stamps")
            self.end_attempt(order, retryable=True)
        elif fact.command_id is not None:
            self.note(fact, fact.order_id, f"no open attempt is {fact.command_id}")

    def count_fresh(self, order: Order, serials: tuple[str, ...]) -> int:
        """Rule 7: how many serials are new; a serial seen before is escalated, not counted."""
        fresh = 0
        for serial in serials:
            if serial in self.state.serials:
                # The second delivery of a serial is no stamp: the buyer still needs one.
                self.escalate(Case.DUPLICATE_SERIAL, order, serial, self.unit_total(order))
            else:
                self.state.serials.add(serial)
                fresh += 1
        return fresh

    def deliver(self, order: Order, fresh: int) -> None:
        """Count delivered stamps; watch for missing payment, over-issue and double remedy."""
        order.delivered += fresh
        if order.first_delivery_at is None:
            order.first_delivery_at = self.now
            if order.payment is None:
                self.state.schedule(
                    self.now + self.rules.payment_grace, TimerKind.PAYMENT_GRACE, order.order_id
                )
        if order.placed and order.delivered > order.quantity:
            self.escalate_over_issued(order)
        if self.shrink_held_refund(order):
            return  # the refund was only held: paying less of it is no double remedy
        if order.undelivered_refunded:
            self.escalate(Case.DOUBLE_REMEDY, order, order.order_id, fresh * self.unit_total(order))

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
        if self.flooded():
            self.hold(refund, order)
        else:
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

    # -- the refund-flood guard --------------------------------------------------------

    def flooded(self) -> bool:
        """Whether a new refund must be held: an incident is open, or the window is full."""
        limit = self.rules.refund_flood_limit
        if limit is None:
            return False
        state = self.state
        if state.incident is not None:
            return True
        recent = state.recent_refunds
        horizon = self.now - self.rules.refund_flood_window
        while recent and recent[0] <= horizon:
            recent.popleft()
        if len(recent) >= limit:
            return True
        recent.append(self.now)
        return False

    def hold(self, refund: Refund, order: Order | None) -> None:
        """Hold a refund under the open incident, opening one (an escalation) if none is."""
        state = self.state
        incident = state.incident
        if incident is None:
            incident_id = self.escalate(
                Case.REFUND_FLOOD,
                None,
                refund.refund_id,
                refund.amount,
                order_id=refund.order_id,
                payment_id=refund.payment_id,
            )
            incident = state.incident = Incident(incident_id)
        refund.status = RefundStatus.HELD
        refund.escalation = incident.incident_id
        incident.held.append(refund.refund_id)
        if order is not None:
            incident.orders.add(order.order_id)
            if incident.incident_id not in order.escalations:
                order.add_escalation(incident.incident_id)
            order.add_case(Case.REFUND_FLOOD)
        self.decisions.append(
            RefundHeld(
                decision_id=self.occurrence(ids.held_id(refund.refund_id)),
                at=self.now,
                refund_id=refund.refund_id,
                order_id=refund.order_id,
                payment_id=refund.payment_id,
                amount=refund.amount,
                reason=refund.reason,
                incident_id=incident.incident_id,
            )
        )

    def shrink_held_refund(self, order: Order) -> bool:
        """Stamps arrived for an order whose refund is held: hold only what is still missing.

        Returns whether the order's payment had a held refund. A refund that would now
        return nothing is withdrawn, and the order is no longer owed one.
        """
        payment = order.payment
        refund = payment.refund if payment is not None else None
        if payment is None or refund is None or refund.status is not RefundStatus.HELD:
            return False
        missing = max(0, order.quantity - order.delivered)
        still_owed = min(payment.amount, missing * order.unit_total)
        if still_owed >= refund.amount:
            return True
        if still_owed > 0:
            refund.amount = still_owed
            return True
        payment.refund = None
        refund.status = RefundStatus.WITHDRAWN
        order.undelivered_refunded = False
        incident = self.state.incident
        if incident is not None and refund.refund_id in incident.held:
            incident.held.remove(refund.refund_id)
        self.close_on_order(order, refund.escalation)
        self.decisions.append(
            RefundWithdrawn(
                decision_id=self.occurrence(ids.withdrawn_id(refund.refund_id)),
                at=self.now,
                refund_id=refund.refund_id,
                order_id=refund.order_id,
                payment_id=refund.payment_id,
                amount=refund.amount,
            )
        )
        return True

    def release_held(self, outcome: str, operator: str | None, note: str) -> None:
        """Close the incident: command every refund still held, and count afresh."""
        incident = self.state.incident
        if incident is None:
            return
        self.close_incident(incident, outcome, operator, note)
        for refund_id in incident.held:
            refund = self.state.refunds[refund_id]
            if refund.status is RefundStatus.HELD:
                refund.status = RefundStatus.AWAITING_RESULT
                refund.escalation = None
                self.emit_refund(refund)

    def reject_held(self, operator: str, note: str) -> None:
        """Close the incident: no held refund is paid; each becomes a case of its own."""
        incident = self.state.incident
        if incident is None:
            return
        self.close_incident(incident, "REJECTED", operator, note)
        for refund_id in incident.held:
            refund = self.state.refunds[refund_id]
            if refund.status is RefundStatus.HELD:
                refund.status = RefundStatus.REJECTED
                self.escalate_refund(refund, Case.REFUND_REJECTED, refund.amount)

    def close_incident(
        self, incident: Incident, outcome: str, operator: str | None, note: str
    ) -> None:
        """Resolve the incident's escalation and take it off the orders it held."""
        self.state.incident = None
        self.state.recent_refunds.clear()
        for order_id in incident.orders:
            self.close_on_order(self.state.orders[order_id], incident.incident_id)
        self.resolve(incident.incident_id, outcome, operator, note)

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
            self.escalate_refund(
                refund, Case.REFUND_AMOUNT_MISMATCH, abs(fact.amount - refund.amount)
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
        self.escalate_refund(refund, Case.REFUND_FAILED, refund.amount)

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
            order.add_case(case)
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
        refund_id: str | None = None,
    ) -> str:
        """Hand a case to a person, once per subject and reason; returns its id.

        A refund at risk again after an operator closed its case (retried, it failed
        again) is escalated again, under `<subject>/<reason>/<n>`.
        """
        state = self.state
        first_id = ids.escalation_id(subject, case.value)
        if first_id in state.escalated:
            if refund_id is None or self.is_open(first_id):
                return first_id
            command_id = self.occurrence(first_id)
        else:
            state.escalated.add(first_id)
            state.occurrences[first_id] = 1
            command_id = first_id
            if order is not None:
                order_id = order.order_id
            self.detect(case, order, subject, payment_id, order_id)
        if order is not None:
            order_id = order.order_id
            order.add_escalation(command_id)
        state.open_escalations[command_id] = Escalation(command_id, case, order_id, refund_id)
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
        return command_id

    def is_open(self, first_id: str) -> bool:
        """Whether the latest escalation under `first_id` is still open."""
        latest = ids.again(first_id, self.state.occurrences[first_id])
        return latest in self.state.open_escalations

    def occurrence(self, first_id: str) -> str:
        """The id of this decision's next occurrence: `first_id`, then `first_id/2`, ..."""
        count = self.state.occurrences[first_id] = self.state.occurrences[first_id] + 1
        return ids.again(first_id, count)

    def resolve(self, escalation_id: str, outcome: str, operator: str | None, note: str) -> None:
        """Record that an open escalation was closed, and how."""
        escalation = self.state.open_escalations.pop(escalation_id)
        self.decisions.append(
            CaseResolved(
                decision_id=ids.resolution_id(escalation_id),
                at=self.now,
                escalation_id=escalation_id,
                order_id=escalation.order_id,
                reason=escalation.reason,
                outcome=outcome,
                operator=operator,
                note=note,
            )
        )

    def close_on_order(self, order: Order, escalation_id: str | None) -> None:
        """Take a closed escalation off its order's open list."""
        order.remove_escalation(escalation_id)

    def escalate_refund(self, refund: Refund, case: Case, amount: int) -> None:
        """Escalate a case about a refund's money; the refund remembers the open case."""
        refund.escalation = self.escalate(
            case,
            self.order_of(refund),
            refund.payment_id,
            amount,
            payment_id=refund.payment_id,
            order_id=refund.order_id,
            refund_id=refund.refund_id,
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

    # -- operators --------------------------------------------------------------------

    def on_escalation_resolved(self, fact: EscalationResolved) -> None:
        """Close a case the way the operator said, unless that leaves money at risk unseen."""
        escalation = self.state.open_escalations.get(fact.escalation_id)
        refusal = self.refuse_resolution(escalation, fact.outcome)
        if escalation is None or refusal is not None:
            self.note(fact, fact.escalation_id, refusal or "no open escalation has this id")
            return
        order = self.state.orders.get(escalation.order_id or "")
        if order is not None:
            self.close_on_order(order, escalation.escalation_id)
        self.resolve(escalation.escalation_id, fact.outcome, fact.operator, fact.note)
        refund = self.state.refunds.get(escalation.refund_id or "")
        if refund is None or refund.escalation != escalation.escalation_id:
            return
        refund.escalation = None
        if fact.outcome == "REFUNDED_OUTSIDE":
            refund.status = RefundStatus.SUCCEEDED
            refund.refunded = refund.amount
        elif fact.outcome == "RETRY_REFUND":
            refund.attempt += 1
            refund.status = RefundStatus.AWAITING_RESULT
            self.emit_refund(refund)

    def refuse_resolution(self, escalation: Escalation | None, outcome: str) -> str | None:
        """Why an operator's outcome cannot close this escalation, or None if it can."""
        if escalation is None:
            return "no open escalation has this id"
        if escalation.reason is Case.REFUND_FLOOD:
            return "an incident is closed by approving or rejecting its held refunds"
        refund = self.state.refunds.get(escalation.refund_id or "")
        at_stake = 0 if refund is None else refund.amount - refund.refunded
        if outcome == "NO_MONEY_AT_STAKE":
            return f"Rp {at_stake} is still at stake in this case" if at_stake > 0 else None
        if refund is None or at_stake == 0:
            return f"{outcome}: no refund is at stake in this case"
        if outcome == "RETRY_REFUND" and refund.status not in _RETRIABLE:
            return "RETRY_REFUND: this refund did not fail"
        return None

    def on_held_approved(self, fact: HeldRefundsApproved) -> None:
        """An operator approved the held refunds: command them."""
        if self.is_open_incident(fact, fact.incident_id):
            self.release_held("APPROVED", fact.operator, fact.note)

    def on_held_rejected(self, fact: HeldRefundsRejected) -> None:
        """An operator rejected the held refunds: each becomes a case of its own."""
        if self.is_open_incident(fact, fact.incident_id):
            self.reject_held(fact.operator, fact.note)

    def is_open_incident(self, fact: Fact, incident_id: str) -> bool:
        """Whether `incident_id` is the open incident; if not, note the fact and say no."""
        incident = self.state.incident
        if incident is not None and incident.incident_id == incident_id:
            return True
        self.note(fact, incident_id, "no open refund-flood incident has this id")
        return False

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


# Refunds an operator may have commanded once more: they failed for good, or were rejected.
_RETRIABLE = (RefundStatus.FAILED, RefundStatus.REJECTED)

_FACT_HANDLERS: dict[type[Fact], Callable[[Decider, object], None]] = {
    ClockTicked: Decider.on_tick,  # type: ignore[dict-item]
    OrderPlaced: Decider.on_order_placed,  # type: ignore[dict-item]
    OrderCancelled: Decider.on_order_cancelled,  # type: ignore[dict-item]
    PaymentDebited: Decider.on_payment,  # type: ignore[dict-item]
    StampIssued: Decider.on_stamps,  # type: ignore[dict-item]
    StampIssuanceFailed: Decider.on_issuance_failed,  # type: ignore[dict-item]
    RefundSucceeded: Decider.on_refund_succeeded,  # type: ignore[dict-item]
    RefundFailed: Decider.on_refund_failed,  # type: ignore[dict-item]
    EscalationResolved: Decider.on_escalation_resolved,  # type: ignore[dict-item]
    HeldRefundsApproved: Decider.on_held_approved,  # type: ignore[dict-item]
    HeldRefundsRejected: Decider.on_held_rejected,  # type: ignore[dict-item]
}

_TIMER_HANDLERS: dict[TimerKind, Callable[[Decider, str, int], None]] = {
    TimerKind.ISSUE_SLA: Decider.on_issue_sla,
    TimerKind.ATTEMPT_TIMEOUT: Decider.on_attempt_timeout,
    TimerKind.ORPHAN_WINDOW: Decider.on_orphan_window,
    TimerKind.PAYMENT_GRACE: Decider.on_payment_grace,
    TimerKind.REFUND_RETRY: Decider.on_refund_retry,
}
