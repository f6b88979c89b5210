"""The escalations of a period, read from the log: opened, acted on, resolved or still open.

Kept: those opened in the period, and those opened earlier and still open when it
began. One resolved before the period began is dropped when its resolution is read, so
memory holds the period's escalations and those open. Operators' actions (a resolution,
or approving or rejecting held refunds) are kept with the escalation they name; the one
the engine closed the case on is marked accepted, the others it refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from reconciler.audit.model import EscalationRecord, OperatorAction, Resolution

if TYPE_CHECKING:
    from reconciler.audit.period import Period
    from reconciler.store import StoredRecord

_OUTCOMES = {"HeldRefundsApproved": "APPROVED", "HeldRefundsRejected": "REJECTED"}
"""Approving or rejecting held refunds closes the incident with this outcome."""

TYPES = frozenset({"CaseEscalated", "CaseResolved", "EscalationResolved", *_OUTCOMES})
"""The record types this tracker reads."""


@dataclass(slots=True)
class _Case:
    opened: EscalationRecord
    resolution: Resolution | None = None
    actions: list[OperatorAction] = field(default_factory=list)


class EscalationTracker:
    """Follows escalations through the log, in one pass with the refunds."""

    def __init__(self, period: Period) -> None:
        """Keep the escalations that matter to `period`."""
        self._period = period
        self._cases: dict[tuple[str, str], _Case] = {}

    def feed(self, record: StoredRecord, body: dict[str, Any], clock: datetime | None) -> None:
        """Take one record of the types in `TYPES`, in the order the engine acted on it."""
        if record.type == "CaseEscalated":
            self._opened(record, body)
        elif record.type == "CaseResolved":
            self._resolved(record, body)
        elif record.type in TYPES:
            self._acted(record, body, clock)

    def records(self) -> list[EscalationRecord]:
        """The escalations kept, in the order they were opened."""
        cases = sorted(self._cases.values(), key=lambda case: case.opened.opened_position)
        return [
            replace(case.opened, resolution=case.resolution, actions=tuple(case.actions))
            for case in cases
        ]

    def _opened(self, record: StoredRecord, body: dict[str, Any]) -> None:
        at = datetime.fromisoformat(body["at"])
        if at >= self._period.utc_end:
            return
        self._cases[(record.source, record.record_id)] = _Case(
            EscalationRecord(
                escalation_id=record.record_id,
                source=record.source,
                reason=body["reason"],
                subject=body["subject"],
                order_id=body["order_id"],
                amount=body["amount"],
                opened_at=at,
                opened_position=record.position,
                carried_in=self._period.before(at),
                resolution=None,
                actions=(),
            )
        )

    def _resolved(self, record: StoredRecord, body: dict[str, Any]) -> None:
        key = (record.source, body["escalation_id"])
        case = self._cases.get(key)
        if case is None:
            return
        at = datetime.fromisoformat(body["at"])
        if case.opened.carried_in and self._period.before(at):
            del self._cases[key]
            return
        case.resolution = Resolution(
            decision_id=record.record_id,
            position=record.position,
            at=at,
            outcome=body["outcome"],
            operator=body["operator"],
            note=body["note"],
        )
        for index in reversed(range(len(case.actions))):
            action = case.actions[index]
            if (action.operator, action.outcome) == (body["operator"], body["outcome"]):
                case.actions[index] = replace(action, accepted=True)
                break

    def _acted(self, record: StoredRecord, body: dict[str, Any], clock: datetime | None) -> None:
        case_id = body.get("escalation_id") or body["incident_id"]
        case = self._cases.get((record.source, case_id))
        if case is None:
            return
        case.actions.append(
            OperatorAction(
                event_id=record.record_id,
                type=record.type,
                position=record.position,
                at=clock,
                operator=body["operator"],
                outcome=body.get("outcome") or _OUTCOMES[record.type],
                note=body["note"],
                reference=body.get("reference"),
                accepted=False,
            )
        )
