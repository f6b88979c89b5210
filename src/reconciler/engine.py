"""The engine: facts in, decisions out, both recorded in the log in one transaction.

Sources hand it batches of input records; it appends the valid ones to the store (which
drops any `event_id` it already holds), runs the decider on the facts that are new,
records the decisions, the rejections and the input positions in the same transaction,
and returns the decisions so that the outbox can hand them to the jobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reconciler.domain.decider import Decider
from reconciler.domain.state import State
from reconciler.ingest.validation import Rejected
from reconciler.store import DeadLetter, NewRecord

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from reconciler.domain.decisions import AnyDecision
    from reconciler.domain.rules import Rules
    from reconciler.ingest.source import InputRecord
    from reconciler.store import LogStore


@dataclass(frozen=True, slots=True)
class Rejection:
    """A dead-lettered input record, as the engine reports it."""

    source: str
    position: int
    reason: str


@dataclass(slots=True)
class BatchOutcome:
    """What one batch did: the decisions taken, rejections kept, duplicates dropped."""

    decisions: list[AnyDecision] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    facts_appended: int = 0
    duplicates: int = 0


class Engine:
    """Runs the pure decider over a log store; one transaction per batch."""

    def __init__(self, rules: Rules, store: LogStore, state: State | None = None) -> None:
        """Start from an empty state, or from one rebuilt from the store's log."""
        self.rules = rules
        self.store = store
        self.state = state if state is not None else State()
        self._decider = Decider(rules, self.state)

    def process(
        self, batch: Sequence[InputRecord], positions: Mapping[str, int] | None = None
    ) -> BatchOutcome:
        """Record a batch of input and the decisions it leads to, atomically."""
        outcome = BatchOutcome()
        facts = []
        records = []
        dead_letters = []
        for item in batch:
            parsed = item.parsed
            if isinstance(parsed, Rejected):
                outcome.rejections.append(Rejection(item.source, item.position, parsed.reason))
                dead_letters.append(DeadLetter(item.source, item.locator, parsed.reason, item.raw))
            else:
                facts.append(parsed)
                records.append(NewRecord("fact", parsed.event_id, parsed.type, item.raw))
        with self.store.transaction() as tx:
            stored = tx.append(records)
            for fact, kept in zip(facts, stored, strict=True):
                if kept is None:
                    outcome.duplicates += 1
                    continue
                outcome.facts_appended += 1
                outcome.decisions.extend(self._decider.decide(fact))
            tx.append(
                [
                    NewRecord("decision", decision.decision_id, decision.type, _encode(decision))
                    for decision in outcome.decisions
                ]
            )
            if dead_letters:
                tx.add_dead_letters(dead_letters)
            if positions:
                tx.set_positions(positions)
        return outcome


def _encode(decision: AnyDecision) -> bytes:
    """Decisions are stored as their JSON, which a replay compares byte for byte."""
    return decision.model_dump_json().encode()
