"""What an audit report holds: the verification handed in, and what was gathered from the log.

Everything is frozen. Money is whole rupiah in `Money` (SPEC rule 11's five figures);
times are aware datetimes on the engine's clock. Positions are those of the shadow log
the report was gathered from; event and decision ids are the same in the live log.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from reconciler.domain.accounting import Money

if TYPE_CHECKING:
    from datetime import date, datetime

    from reconciler.audit.period import Period
    from reconciler.replay.compare import DecisionDifference
    from reconciler.store import Kind, VerifyReport

Value = str | int | bool
"""One field of a record as the report shows it: text, whole rupiah or a count, or a flag."""


@dataclass(frozen=True, slots=True)
class Verification:
    """What the caller checked before gathering: the live log's chain and the replay."""

    chain: VerifyReport
    log: str
    records_replayed: int
    as_of: str
    decisions_recorded: int
    decisions_rederived: int
    differences: list[DecisionDifference]
    rules: dict[str, object]
    generated_at: datetime


@dataclass(frozen=True, slots=True)
class Evidence:
    """One fact or decision in a chain of evidence, where the log holds it.

    `at` is the engine clock when it was recorded: a decision's own `at`, or for a fact
    the clock of its shard (the last tick before it; the first tick for a fact before
    any). `fields` are the record's telling fields; a fact's producer time is among them.
    """

    step: str
    kind: Kind
    type: str
    record_id: str
    position: int
    source: str
    at: datetime | None
    fields: tuple[tuple[str, Value], ...]

    @property
    def detail(self) -> str:
        """The fields as `name=value; ...`, money in whole rupiah."""
        return "; ".join(f"{name}={_text(value)}" for name, value in self.fields)


class RefundState(StrEnum):
    """Where a refund stands at the end of the log audited."""

    PAID = "paid"
    """The payment provider confirmed the money back."""
    PAID_OUTSIDE = "paid-outside"
    """An operator closed its case: the money went back another way (a named transfer)."""
    PENDING = "pending"
    """Commanded, or failed and waiting for its retry; no answer that settles it yet."""
    HELD = "held"
    """Held by the refund-flood guard; the money is at risk until an operator decides."""
    FAILED_ESCALATED = "failed-escalated"
    """Failed for good and escalated: the money is at risk again."""
    REJECTED = "rejected"
    """Held, then rejected by an operator: a case of its own, the money at risk."""
    WITHDRAWN = "withdrawn"
    """Held, then dropped: the stamps it would have paid for arrived after all."""


SETTLED = frozenset({RefundState.PAID, RefundState.PAID_OUTSIDE, RefundState.WITHDRAWN})
"""States in which a refund's money is no longer moving."""


@dataclass(frozen=True, slots=True)
class RefundRecord:
    """One refund (one per payment and reason) with its chain of evidence, as the engine went.

    `amount` is what was last commanded (or held); `refunded` what came back, at most
    that. `carried_in` marks a refund first decided before the period and still open
    at its start, or touched during it.
    """

    refund_id: str
    source: str
    order_id: str | None
    payment_id: str
    reason: str
    amount: int
    attempts: int
    state: RefundState
    refunded: int
    first_at: datetime
    first_position: int
    settled_at: datetime | None
    psp_refs: tuple[str, ...]
    escalations: tuple[str, ...]
    carried_in: bool
    evidence: tuple[Evidence, ...]

    @property
    def pending(self) -> int:
        """The money on its way back: the amount while the refund is pending, else 0."""
        return self.amount if self.state is RefundState.PENDING else 0


@dataclass(frozen=True, slots=True)
class OperatorAction:
    """An operator's fact naming an escalation; `accepted` if the engine closed the case on it."""

    event_id: str
    type: str
    position: int
    at: datetime | None
    operator: str
    outcome: str
    note: str
    reference: str | None
    accepted: bool


@dataclass(frozen=True, slots=True)
class Resolution:
    """The engine's CaseResolved decision closing an escalation."""

    decision_id: str
    position: int
    at: datetime
    outcome: str
    operator: str | None
    note: str


@dataclass(frozen=True, slots=True)
class EscalationRecord:
    """An escalation opened in the period, or open when it began, and how it ended."""

    escalation_id: str
    source: str
    reason: str
    subject: str
    order_id: str | None
    amount: int
    opened_at: datetime
    opened_position: int
    carried_in: bool
    resolution: Resolution | None
    actions: tuple[OperatorAction, ...]

    @property
    def open(self) -> bool:
        """Whether no CaseResolved closed it by the end of the log."""
        return self.resolution is None

    @property
    def reference(self) -> str | None:
        """The transfer reference of the accepted operator action, if it named one."""
        accepted = [action for action in self.actions if action.accepted]
        return accepted[-1].reference if accepted else None


@dataclass(frozen=True, slots=True)
class DayBalance:
    """One day's money: its opening and closing figures, and whether the close balances.

    The figures are states (where the money stood), not flows: opening is the close of
    the day before, closing the money at the end of the day's last engine-clock hour.
    `recorded` says whether the log moved on that day; if not, the close is carried over.
    """

    day: date
    opening: Money
    closing: Money
    recorded: bool

    @property
    def movement(self) -> Money:
        """Closing less opening, figure by figure: the day's net movements (may be negative)."""
        return difference(self.closing, self.opening)

    @property
    def balanced(self) -> bool:
        """Whether debited = kept + refunded + refund_pending + at_risk at close, none negative."""
        return self.closing.balanced


@dataclass(frozen=True, slots=True)
class Projection:
    """How far the finance read models were projected, against the shadow log's end."""

    position: int
    log_position: int
    clock: datetime | None

    @property
    def current(self) -> bool:
        """Whether the read models include every record of the log."""
        return self.position == self.log_position


@dataclass(frozen=True, slots=True)
class AuditReport:
    """Everything an auditor signs for one period; `failures` says why it does not pass."""

    period: Period
    verification: Verification
    projection: Projection
    days: tuple[DayBalance, ...]
    refunds: tuple[RefundRecord, ...]
    escalations: tuple[EscalationRecord, ...]
    orders_placed: int
    orders_by_status: dict[str, int]
    dead_letters: int
    unmatched_payouts: tuple[int, int]
    """Refund payouts in the whole log that answered no refund the engine commanded:
    how many, and their rupiah. Money the provider returned on no command of the engine's
    is outside the conservation figures."""

    @property
    def opening(self) -> Money:
        """The money when the period began."""
        return self.days[0].opening

    @property
    def closing(self) -> Money:
        """The money when the period ended."""
        return self.days[-1].closing

    @property
    def movement(self) -> Money:
        """The period's net movements, figure by figure."""
        return difference(self.closing, self.opening)

    def refunds_by_state(self) -> dict[RefundState, tuple[int, int, int]]:
        """For each state some refund is in: how many, their amount, and what came back."""
        totals: dict[RefundState, tuple[int, int, int]] = {}
        for refund in self.refunds:
            count, amount, refunded = totals.get(refund.state, (0, 0, 0))
            totals[refund.state] = (count + 1, amount + refund.amount, refunded + refund.refunded)
        return {state: totals[state] for state in RefundState if state in totals}

    @property
    def open_escalations(self) -> int:
        """How many of the report's escalations were still open at the end of the log."""
        return sum(escalation.open for escalation in self.escalations)

    @property
    def unbalanced_days(self) -> list[date]:
        """The days whose close does not balance."""
        return [day.day for day in self.days if not day.balanced]

    def failures(self) -> list[str]:
        """Why the report does not pass, one sentence each; empty when it passes."""
        failures: list[str] = []
        chain = self.verification.chain
        if not chain.ok:
            failures.append(
                f"the hash chain is broken at position {chain.first_bad_position}"
                f" ({chain.fault}): {chain.detail}"
            )
        verification = self.verification
        if count := len(verification.differences):
            failures.append(f"{count} decision(s) differ between the log and its replay")
        elif verification.decisions_recorded != verification.decisions_rederived:
            failures.append(
                f"the log recorded {verification.decisions_recorded} decision(s),"
                f" the replay re-derived {verification.decisions_rederived}"
            )
        if unbalanced := self.unbalanced_days:
            days = ", ".join(str(day) for day in unbalanced)
            failures.append(f"money is not conserved at the close of {days}")
        if not self.projection.current:
            failures.append(
                f"the read models reach position {self.projection.position}"
                f" of {self.projection.log_position}: the figures are stale"
            )
        return failures

    @property
    def passed(self) -> bool:
        """PASS: chain intact, no differences, every day balanced, read models current."""
        return not self.failures()

    @property
    def verdict(self) -> str:
        """`PASS` or `FAIL`."""
        return "PASS" if self.passed else "FAIL"

    def notes(self) -> list[str]:
        """What an auditor should know that does not fail the report."""
        notes: list[str] = []
        clock = self.projection.clock
        if clock is None:
            notes.append("the log holds no engine clock: every figure is zero")
        elif self.period.day_of(clock) < self.period.end:
            local = clock.astimezone(self.period.zone).isoformat()
            notes.append(f"the log's clock ends at {local}: later days carry its figures over")
        if carried := sum(refund.carried_in for refund in self.refunds):
            notes.append(f"{carried} refund(s) were first decided before the period")
        count, amount = self.unmatched_payouts
        if count:
            notes.append(
                f"{count} refund payout(s) in the log, {amount} rupiah in all,"
                " answered no refund the engine commanded"
            )
        if self.dead_letters:
            notes.append(f"{self.dead_letters} input record(s) in the log were dead-lettered")
        return notes


def difference(later: Money, earlier: Money) -> Money:
    """Figure by figure, `later` less `earlier`."""
    return Money(
        later.debited - earlier.debited,
        later.kept - earlier.kept,
        later.refunded - earlier.refunded,
        later.refund_pending - earlier.refund_pending,
        later.at_risk - earlier.at_risk,
    )


def _text(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
