"""Operator actions: close an escalation, approve or reject refunds held in a flood.

An action is a fact like any other (`EscalationResolved`, `HeldRefundsApproved`,
`HeldRefundsRejected`), so a replay sees every hand that moved money. It must reach the
shard that holds the case: the source (file or Kafka partition) in which the engine
escalated it, found in the log. Before anything is written, the action is tried on that
shard's state rebuilt from the log, so an outcome the engine would refuse (one that
leaves money at risk with no case open) is refused here, with the engine's reason.

Then, on the embedded default, the fact is appended to the log and decided at once; on
a Kafka partition, it is produced to that partition and the service decides it.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from reconciler.domain.decider import Decider
from reconciler.domain.decisions import CaseEscalated, CaseResolved
from reconciler.domain.events import EscalationResolved, HeldRefundsApproved, HeldRefundsRejected
from reconciler.engine import Engine
from reconciler.ingest.source import InputRecord
from reconciler.kafka_io import produce_all

if TYPE_CHECKING:
    from reconciler.domain.decisions import AnyDecision
    from reconciler.domain.events import Fact
    from reconciler.domain.rules import Rules
    from reconciler.store import LogStore

OperatorFact = EscalationResolved | HeldRefundsApproved | HeldRefundsRejected
_ACTIONS: dict[str, type[EscalationResolved | HeldRefundsApproved | HeldRefundsRejected]] = {
    "resolve": EscalationResolved,
    "approve": HeldRefundsApproved,
    "reject": HeldRefundsRejected,
}


class OperatorActionError(Exception):
    """An action that cannot be taken; the message says why, in the engine's words."""


class UnknownEscalationError(OperatorActionError):
    """No open escalation has the id the action names."""


class ActionRefusedError(OperatorActionError):
    """The case is open, but the action does not fit it or the engine refuses it."""


@dataclass(frozen=True, slots=True)
class OpenCase:
    """An escalation no one has closed yet, and the shard that holds it."""

    escalation_id: str
    reason: str
    order_id: str | None
    amount: int
    at: datetime
    source: str


@dataclass(frozen=True, slots=True)
class Taken:
    """What an action did: where it went, and the decisions it led (or will lead) to."""

    fact: OperatorFact
    source: str
    decisions: list[AnyDecision]
    delivered_to_kafka: bool


def open_cases(store: LogStore) -> list[OpenCase]:
    """Every escalation in the log without a resolution, oldest first."""
    cases: dict[str, OpenCase] = {}
    for record in store.read(kind="decision"):
        if record.type == "CaseEscalated":
            escalated = CaseEscalated.model_validate_json(record.payload)
            cases[escalated.command_id] = OpenCase(
                escalated.command_id,
                escalated.reason.value,
                escalated.order_id,
                escalated.amount,
                escalated.at,
                record.source,
            )
        elif record.type == "CaseResolved":
            cases.pop(CaseResolved.model_validate_json(record.payload).escalation_id, None)
    return list(cases.values())


def operator_fact(kind: str, **fields: Any) -> OperatorFact:  # noqa: ANN401 - the fact's fields
    """Build an operator fact with a fresh event id, recorded now (UTC)."""
    model = _ACTIONS[kind]
    return model.model_validate(
        {
            "event_id": f"operator/{uuid.uuid4().hex}",
            "version": 1,
            "occurred_at": datetime.now(UTC),
            **fields,
        }
    )


def take_action(
    store: LogStore, rules: Rules, fact: OperatorFact, kafka_bootstrap: str | None = None
) -> Taken:
    """Check the action against the case's shard, then write it where that shard reads."""
    subject = fact.escalation_id if isinstance(fact, EscalationResolved) else fact.incident_id
    case = next((c for c in open_cases(store) if c.escalation_id == subject), None)
    if case is None:
        msg = f"no open escalation {subject!r} in the log (see `reconciler operator cases`)"
        raise UnknownEscalationError(msg)
    wants_incident = not isinstance(fact, EscalationResolved)
    if wants_incident != (case.reason == "REFUND_FLOOD"):
        what = "a refund-flood incident" if wants_incident else "a case (not an incident)"
        msg = f"{subject!r} is a {case.reason} escalation, not {what}"
        raise ActionRefusedError(msg)
    engine = Engine(rules, store)
    engine.restore(case.source)
    decisions = _try(engine, case.source, fact)
    partition = _kafka_partition(case.source)
    if partition is None:
        taken = engine.process([InputRecord.from_fact(case.source, 0, fact)]).decisions
        return Taken(fact, case.source, taken, delivered_to_kafka=False)
    if kafka_bootstrap is None:
        msg = f"{subject!r} is held by Kafka partition {case.source}: give --kafka-bootstrap"
        raise OperatorActionError(msg)
    topic, number = partition
    key = (case.order_id or subject).encode()
    produce_all(kafka_bootstrap, topic, [(key, fact.model_dump_json().encode(), None)], number)
    return Taken(fact, case.source, decisions, delivered_to_kafka=True)


def _try(engine: Engine, source: str, fact: Fact) -> list[AnyDecision]:
    """The decisions the fact leads to on a copy of the shard's state; refused if noted.

    A copy, so the engine's own state (rebuilt once) is still the log's when the fact
    is then appended.
    """
    state = copy.deepcopy(engine.state(source))
    decisions = Decider(engine.rules, state).decide(fact)
    refusal = next((n.why for n in state.unmatched if n.event_id == fact.event_id), None)
    if refusal is not None:
        msg = f"the engine refuses it: {refusal}"
        raise ActionRefusedError(msg)
    return decisions


def _kafka_partition(source: str) -> tuple[str, int] | None:
    """`topic:partition` for a Kafka source; None for a file on the embedded default."""
    topic, _, number = source.rpartition(":")
    return (topic, int(number)) if topic and number.isdigit() else None
