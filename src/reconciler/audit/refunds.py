"""Each refund's chain of evidence, gathered in two passes over the log.

Both passes read the log in the order the engine acted on it (see `stream`). The
first follows every refund from its first decision (`RefundCommanded`, or `RefundHeld`
under a refund flood) to the end of the log: retries, the provider's answers,
escalations, operators' actions and resolutions, mirroring the decider's refund
states. A refund first decided after the period is not followed; one settled before
the period began, and not touched in it, is dropped as soon as it settles, so memory
holds the period's refunds and the few still moving. The second pass, up to the last
first decision, picks up what led to each refund: its order's placement, cancellation,
debits and issuance attempts, its payment's debits, and the detection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from reconciler.audit.items import evidence
from reconciler.audit.model import RefundRecord, RefundState

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from reconciler.audit.model import Evidence
    from reconciler.audit.period import Period
    from reconciler.store import StoredRecord

Clock = datetime | None
"""The shard's engine clock when a record was recorded (None before its first tick)."""
Key = tuple[str, str]
"""(source, id): ids are the decider's, and each shard has its own decider."""

_ESCALATED_STATES = {
    "REFUND_FAILED": RefundState.FAILED_ESCALATED,
    "REFUND_REJECTED": RefundState.REJECTED,
    "REFUND_AMOUNT_MISMATCH": None,
}
"""The escalations about a refund's money (their subject is its payment), and what they mean."""

_CAUSE_STEPS = {
    "OrderPlaced": "order",
    "OrderCancelled": "order",
    "PaymentDebited": "debit",
    "IssuanceCommanded": "issuance",
    "StampIssued": "issuance",
    "StampIssuanceFailed": "issuance",
    "DiscrepancyDetected": "detected",
}
"""Records that may lead to a refund, and the step each is evidence of."""
_FIRST_DECISIONS = frozenset({"RefundCommanded", "RefundHeld"})
"""The decisions a refund starts with; its causes are the records before."""


@dataclass(slots=True, eq=False)
class Dossier:
    """A refund while it is being followed through the log."""

    refund_id: str
    source: str
    payment_id: str
    order_id: str | None
    reason: str
    amount: int
    first_at: datetime
    first_position: int
    attempts: int = 0
    state: RefundState = RefundState.PENDING
    refunded: int = 0
    settled_at: datetime | None = None
    touched: bool = False
    psp_refs: list[str] = field(default_factory=list)
    escalations: list[str] = field(default_factory=list)
    causes: list[Evidence] = field(default_factory=list)
    trail: list[Evidence] = field(default_factory=list)

    def add(self, item: Evidence, period: Period) -> None:
        """Keep a piece of evidence from the first decision on; note if it falls in the period."""
        self.trail.append(item)
        if item.at is not None and period.contains(item.at):
            self.touched = True

    def settle(self, state: RefundState, at: datetime | None, refunded: int) -> None:
        """The refund reached a state in which its money no longer moves."""
        self.state = state
        self.settled_at = at
        self.refunded = refunded

    def record(self, period: Period) -> RefundRecord:
        """The finished refund: what led to it, then what followed, as the engine went."""
        return RefundRecord(
            refund_id=self.refund_id,
            source=self.source,
            order_id=self.order_id,
            payment_id=self.payment_id,
            reason=self.reason,
            amount=self.amount,
            attempts=self.attempts,
            state=self.state,
            refunded=self.refunded,
            first_at=self.first_at,
            first_position=self.first_position,
            settled_at=self.settled_at,
            psp_refs=tuple(self.psp_refs),
            escalations=tuple(self.escalations),
            carried_in=period.before(self.first_at),
            evidence=(*self.causes, *self.trail),
        )


class RefundTracker:
    """The first pass: follows refunds from their first decision to the end of the log."""

    def __init__(self, period: Period) -> None:
        """Follow the refunds that matter to `period`."""
        self._period = period
        self._refunds: dict[Key, Dossier] = {}
        self._by_payment: dict[Key, Dossier] = {}
        self._by_escalation: dict[Key, list[Dossier]] = {}

    def feed(self, record: StoredRecord, payload: dict[str, Any], clock: Clock) -> None:
        """Take one record of the types in `TYPES`, in the order the engine acted on it."""
        handler = _HANDLERS.get(record.type)
        if handler is not None:
            handler(self, record, payload, clock)

    def dossiers(self) -> list[Dossier]:
        """The refunds followed, in the order of their first decision."""
        return sorted(self._refunds.values(), key=lambda dossier: dossier.first_position)

    # -- the engine's decisions ---------------------------------------------------------

    def _held(self, record: StoredRecord, body: dict[str, Any], _clock: Clock) -> None:
        dossier = self._opened(record, body)
        if dossier is not None:
            dossier.state = RefundState.HELD
            dossier.amount = body["amount"]
            if body["incident_id"] not in dossier.escalations:
                dossier.escalations.append(body["incident_id"])
            self._link(record.source, body["incident_id"], dossier)
            dossier.add(evidence("held", record, body, None), self._period)

    def _commanded(self, record: StoredRecord, body: dict[str, Any], _clock: Clock) -> None:
        dossier = self._opened(record, body)
        if dossier is not None:
            dossier.state = RefundState.PENDING
            dossier.amount = body["amount"]
            dossier.attempts = body["attempt"]
            step = "commanded" if body["attempt"] == 1 else "retried"
            dossier.add(evidence(step, record, body, None), self._period)

    def _withdrawn(self, record: StoredRecord, body: dict[str, Any], _clock: Clock) -> None:
        dossier = self._refunds.get((record.source, body["refund_id"]))
        if dossier is not None:
            item = evidence("withdrawn", record, body, None)
            dossier.add(item, self._period)
            dossier.settle(RefundState.WITHDRAWN, item.at, 0)
            self._forget_if_done(dossier)

    def _escalated(self, record: StoredRecord, body: dict[str, Any], _clock: Clock) -> None:
        reason = body["reason"]
        dossier = self._by_payment.get((record.source, body["subject"]))
        if reason not in _ESCALATED_STATES or dossier is None:
            return
        dossier.add(evidence("escalated", record, body, None), self._period)
        dossier.escalations.append(record.record_id)
        self._link(record.source, record.record_id, dossier)
        if (state := _ESCALATED_STATES[reason]) is not None:
            dossier.state = state

    def _resolved(self, record: StoredRecord, body: dict[str, Any], _clock: Clock) -> None:
        for dossier in self._by_escalation.pop((record.source, body["escalation_id"]), []):
            item = evidence("resolved", record, body, None)
            dossier.add(item, self._period)
            if body["outcome"] == "REFUNDED_OUTSIDE":
                dossier.settle(RefundState.PAID_OUTSIDE, item.at, dossier.amount)
                self._forget_if_done(dossier)

    # -- the provider's answers and the operators' actions ------------------------------

    def _succeeded(self, record: StoredRecord, body: dict[str, Any], clock: Clock) -> None:
        dossier = self._answered(record, body)
        if dossier is None:
            return
        dossier.add(evidence("result", record, body, clock), self._period)
        dossier.psp_refs.append(body["psp_refund_ref"])
        if dossier.state not in {RefundState.PAID, RefundState.PAID_OUTSIDE}:
            dossier.settle(RefundState.PAID, clock, min(body["amount"], dossier.amount))
            self._forget_if_done(dossier)

    def _failed(self, record: StoredRecord, body: dict[str, Any], clock: Clock) -> None:
        dossier = self._answered(record, body)
        if dossier is not None:
            dossier.add(evidence("result", record, body, clock), self._period)

    def _operator(self, record: StoredRecord, body: dict[str, Any], clock: Clock) -> None:
        """An operator's action names an escalation or a refund-flood incident."""
        case = body.get("escalation_id") or body["incident_id"]
        for dossier in self._by_escalation.get((record.source, case), []):
            dossier.add(evidence("operator", record, body, clock), self._period)

    # -- plumbing ----------------------------------------------------------------------

    def _opened(self, record: StoredRecord, body: dict[str, Any]) -> Dossier | None:
        """The refund a decision is about; a new one unless it comes after the period."""
        key = (record.source, body["refund_id"])
        dossier = self._refunds.get(key)
        if dossier is None:
            at = datetime.fromisoformat(body["at"])
            if at >= self._period.utc_end:
                return None
            dossier = self._refunds[key] = Dossier(
                refund_id=body["refund_id"],
                source=record.source,
                payment_id=body["payment_id"],
                order_id=body["order_id"],
                reason=body["reason"],
                amount=body["amount"],
                first_at=at,
                first_position=record.position,
            )
        self._by_payment[(record.source, dossier.payment_id)] = dossier
        return dossier

    def _answered(self, record: StoredRecord, body: dict[str, Any]) -> Dossier | None:
        """The refund a provider's answer is about: by refund id, else by payment (SPEC)."""
        dossier = self._refunds.get((record.source, body["refund_id"]))
        return dossier or self._by_payment.get((record.source, body["payment_id"]))

    def _link(self, source: str, escalation_id: str, dossier: Dossier) -> None:
        linked = self._by_escalation.setdefault((source, escalation_id), [])
        if dossier not in linked:
            linked.append(dossier)

    def _forget_if_done(self, dossier: Dossier) -> None:
        """Drop a refund settled before the period that the period never saw."""
        at = dossier.settled_at
        if dossier.touched or at is None or not self._period.before(at):
            return
        key = (dossier.source, dossier.refund_id)
        del self._refunds[key]
        if self._by_payment.get((dossier.source, dossier.payment_id)) is dossier:
            del self._by_payment[(dossier.source, dossier.payment_id)]
        for linked in self._by_escalation.values():
            if dossier in linked:
                linked.remove(dossier)


_HANDLERS: dict[str, Callable[[RefundTracker, StoredRecord, dict[str, Any], Clock], None]] = {
    "RefundHeld": RefundTracker._held,  # noqa: SLF001 - the class's own dispatch table
    "RefundCommanded": RefundTracker._commanded,  # noqa: SLF001
    "RefundWithdrawn": RefundTracker._withdrawn,  # noqa: SLF001
    "CaseEscalated": RefundTracker._escalated,  # noqa: SLF001
    "CaseResolved": RefundTracker._resolved,  # noqa: SLF001
    "RefundSucceeded": RefundTracker._succeeded,  # noqa: SLF001
    "RefundFailed": RefundTracker._failed,  # noqa: SLF001
    "EscalationResolved": RefundTracker._operator,  # noqa: SLF001
    "HeldRefundsApproved": RefundTracker._operator,  # noqa: SLF001
    "HeldRefundsRejected": RefundTracker._operator,  # noqa: SLF001
}
TYPES = frozenset(_HANDLERS)
"""The record types the first pass reads."""


class Causes:
    """The second pass: what led to each refund, read before its first decision."""

    def __init__(self, dossiers: Iterable[Dossier]) -> None:
        """Look for the records about these refunds' orders and payments."""
        self._by_order: dict[Key, list[Dossier]] = {}
        self._by_payment: dict[Key, list[Dossier]] = {}
        self._collecting: dict[tuple[str, int], Dossier] = {}
        self.until = 0
        for dossier in dossiers:
            self.until = max(self.until, dossier.first_position)
            self._collecting[(dossier.source, dossier.first_position)] = dossier
            self._by_payment.setdefault((dossier.source, dossier.payment_id), []).append(dossier)
            if dossier.order_id is not None:
                self._by_order.setdefault((dossier.source, dossier.order_id), []).append(dossier)

    @staticmethod
    def wants(record: StoredRecord) -> bool:
        """Whether a record can lead to a refund, or is a refund's first decision."""
        return record.type in _CAUSE_STEPS or record.type in _FIRST_DECISIONS

    def feed(self, record: StoredRecord, body: dict[str, Any], clock: Clock) -> None:
        """Take one wanted record, in the order the engine acted on it."""
        source = record.source
        if record.type in _FIRST_DECISIONS:
            self._collecting.pop((source, record.position), None)
            return
        found = self._by_order.get((source, body.get("order_id") or ""), [])
        found = found + self._by_payment.get((source, body.get("payment_id") or ""), [])
        step = _CAUSE_STEPS[record.type]
        for dossier in dict.fromkeys(found):
            if self._collecting.get((source, dossier.first_position)) is dossier:
                dossier.causes.append(evidence(step, record, body, clock))
