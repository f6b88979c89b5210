"""The two ways a replay re-derives decisions: in memory, or into a shadow log.

Both take the log's facts in log order, a page at a time, each source through its own
decider under the replay's rules, as the engine runs them, and hand back the decision
records they led to as (source, id, type, payload) with the payload encoded as the
engine encodes it, so that a byte comparison with the recorded payload is exact.

`InMemory` only decides; past `COLD_AFTER` orders a source's settled orders move to a
temporary on-disk archive (domain/archive.py), which keeps a long replay's memory
bounded without changing a decision. `IntoShadow` runs the engine itself over a second, empty
store: the facts and the re-derived decisions are written there with a hash chain of
their own, and the finance read models can then be projected from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol

from reconciler.domain.archive import OrderArchive
from reconciler.domain.decider import Decider
from reconciler.domain.state import State
from reconciler.engine import Engine, encode_decision
from reconciler.ingest.validation import Rejected

if TYPE_CHECKING:
    from collections.abc import Sequence

    from reconciler.domain.rules import Rules
    from reconciler.ingest.source import InputRecord
    from reconciler.store import LogStore


# Orders a source's state keeps in memory before settled ones go to its archive: a
# 10-million-record log holds about 2.5 million orders, a short one never reaches this.
COLD_AFTER = 50_000


class Derived(NamedTuple):
    """A re-derived decision record."""

    source: str
    decision_id: str
    type: str
    payload: bytes


class Rederiver(Protocol):
    """Decides a page of facts; keeps each source's state for the summary."""

    def feed(self, facts: Sequence[InputRecord]) -> list[Derived]:
        """The decisions these facts lead to, in the order they were taken."""
        ...

    def states(self) -> dict[str, State]:
        """Each source's decider state as of the facts fed so far."""
        ...


class InMemory:
    """One decider per source, nothing written anywhere."""

    def __init__(self, rules: Rules, *, cold_after: int | None = COLD_AFTER) -> None:
        """No source seen yet; `cold_after` None keeps every order in memory."""
        self._rules = rules
        self._cold_after = cold_after
        self._deciders: dict[str, Decider] = {}

    def feed(self, facts: Sequence[InputRecord]) -> list[Derived]:
        """Decide each fact in its source's decider."""
        derived: list[Derived] = []
        for item in facts:
            decider = self._deciders.get(item.source)
            if decider is None:
                decider = self._deciders[item.source] = Decider(self._rules, self._new_state())
            fact = item.parsed
            if isinstance(fact, Rejected):  # pragma: no cover - the replay feeds facts only
                raise TypeError(fact.reason)
            decisions = decider.decide(fact)
            if decisions:
                derived.extend(
                    Derived(
                        item.source, decision.decision_id, decision.type, encode_decision(decision)
                    )
                    for decision in decisions
                )
        if self._cold_after is not None:
            # Between pages no handler holds an order, so settled ones may leave memory.
            for decider in self._deciders.values():
                decider.state.archive_settled()
        return derived

    def _new_state(self) -> State:
        """An empty state, with its cold tier when one was asked for."""
        if self._cold_after is None:
            return State()
        return State(archive=OrderArchive(self._cold_after))

    def states(self) -> dict[str, State]:
        """Each source's state."""
        return {source: decider.state for source, decider in self._deciders.items()}


class IntoShadow:
    """The engine over an empty shadow store: facts and re-derived decisions logged there."""

    def __init__(self, rules: Rules, shadow: LogStore) -> None:
        """Refuse a shadow that already holds records: a replay starts from nothing."""
        held = shadow.last_position()
        if held:
            msg = f"the shadow log already holds {held} records; give an empty one"
            raise ValueError(msg)
        self._engine = Engine(rules, shadow)

    def feed(self, facts: Sequence[InputRecord]) -> list[Derived]:
        """Append the facts and their decisions to the shadow, in one transaction."""
        outcome = self._engine.process(facts)
        return [
            Derived(record.source, record.record_id, record.type, record.payload)
            for record in outcome.recorded
        ]

    def states(self) -> dict[str, State]:
        """Each source's state, as the shadow engine holds it."""
        return {source: self._engine.state(source) for source in self._engine.sources()}
