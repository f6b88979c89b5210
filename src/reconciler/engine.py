"""The engine: facts in, decisions out, both recorded in the log in one transaction.

Sources hand it batches of input records. Each source (a JSONL file, one Kafka
partition) is a shard with its own decider state: its facts arrive in a fixed order, so
its decisions are the same whichever process runs it and however often it restarts. For
each batch the engine appends the valid records to the store (which drops any
`event_id` it already holds), runs each shard's decider on its new facts, and records
the decisions, the rejections and the input positions in the same transaction.

A long-lived engine (`reconciler serve`) gives each shard a cold tier with `cold_after`:
past that many orders in memory, a shard's settled orders move to a private temporary
SQLite file (domain/archive.py) after each committed batch, and come back when a fact
names them, so its decisions are the same and its memory stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reconciler.domain.archive import OrderArchive
from reconciler.domain.decider import Decider
from reconciler.domain.state import State
from reconciler.ingest.validation import Rejected, parse_record
from reconciler.store import DeadLetter, NewRecord

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from reconciler.domain.decisions import AnyDecision
    from reconciler.domain.events import Fact
    from reconciler.domain.rules import Rules
    from reconciler.ingest.source import InputRecord
    from reconciler.store import LogStore, LogTransaction, StoredRecord


class StaleBatchError(Exception):
    """Another process already stored input past where this batch starts."""

    def __init__(self, source: str, batch_start: int, stored: int | None) -> None:
        """Name the source and both positions."""
        super().__init__(
            f"{source}: batch starts at {batch_start} but the log holds input up to {stored}"
        )
        self.source = source


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
    # The decision records the log kept: a decision another shard recorded first is not.
    recorded: list[StoredRecord] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    facts_appended: int = 0
    duplicates: int = 0


class Engine:
    """Runs the pure decider, one state per source, over a log store."""

    def __init__(self, rules: Rules, store: LogStore, *, cold_after: int | None = None) -> None:
        """Start with no shard; `restore` rebuilds one from the log.

        `cold_after`: orders a shard keeps in memory before its settled ones move to a
        temporary on-disk archive (at least 1); None keeps every order in memory. An
        engine with archives holds temporary files: `close` it (or `forget` a source).
        """
        if cold_after is not None and cold_after < 1:
            msg = f"cold_after must be at least 1, or None (got {cold_after})"
            raise ValueError(msg)
        self.rules = rules
        self.store = store
        self.cold_after = cold_after
        self._shards: dict[str, Decider] = {}

    def state(self, source: str) -> State:
        """The decider state of one source (empty if it has seen nothing)."""
        return self._shard(source).state

    def sources(self) -> list[str]:
        """The sources this engine holds state for."""
        return list(self._shards)

    def restore(self, source: str) -> int:
        """Rebuild a source's state from its facts in the log; returns how many."""
        decider = self._new_shard(source)
        state = decider.state
        count = 0
        for record in self.store.read(source=source, kind="fact"):
            fact = parse_record(record.payload)
            if isinstance(fact, Rejected):  # pragma: no cover - only valid facts are logged
                msg = f"logged fact {record.record_id} no longer validates: {fact.reason}"
                raise TypeError(msg)
            decider.decide(fact)
            # Between facts, so that a long history never sits in memory all at once;
            # below the bound this is two length checks.
            state.archive_settled()
            count += 1
        return count

    def forget(self, source: str) -> None:
        """Drop a source's state (its partition moved away, or a batch failed)."""
        decider = self._shards.pop(source, None)
        if decider is not None and decider.state.archive is not None:
            decider.state.archive.close()

    def close(self) -> None:
        """Drop every source's state and its archive's temporary file."""
        for source in list(self._shards):
            self.forget(source)

    def process(
        self,
        batch: Sequence[InputRecord],
        positions: Mapping[str, int] | None = None,
        expected: Mapping[str, int] | None = None,
    ) -> BatchOutcome:
        """Record a batch of input and the decisions it leads to, atomically.

        `positions` are stored with the batch (e.g. each partition's next offset).
        `expected` fences concurrent writers: for each name, the position the store
        must not have passed already (the batch's first offset), else StaleBatchError.
        If anything fails, the states of the batch's sources are dropped, since the
        decider has moved on while the log has not: restore them before going on.
        With `cold_after`, the batch's shards then archive their settled orders.
        """
        touched = {item.source for item in batch}
        try:
            outcome = self._process(batch, positions or {}, expected or {})
            if self.cold_after is not None:
                # Committed, and no fact is being decided: settled orders may leave memory.
                for source in touched:
                    decider = self._shards.get(source)
                    if decider is not None:
                        decider.state.archive_settled()
        except BaseException:
            for source in touched:
                self.forget(source)
            raise
        return outcome

    def _process(
        self,
        batch: Sequence[InputRecord],
        positions: Mapping[str, int],
        expected: Mapping[str, int],
    ) -> BatchOutcome:
        outcome = BatchOutcome()
        facts: list[tuple[str, Fact]] = []
        records = []
        dead_letters = []
        for item in batch:
            parsed = item.parsed
            if isinstance(parsed, Rejected):
                outcome.rejections.append(Rejection(item.source, item.position, parsed.reason))
                dead_letters.append(DeadLetter(item.source, item.locator, parsed.reason, item.raw))
            else:
                facts.append((item.source, parsed))
                records.append(
                    NewRecord("fact", parsed.event_id, parsed.type, item.raw, item.source)
                )
        with self.store.transaction() as tx:
            _fence(tx, expected)
            stored = tx.append(records)
            decided: list[NewRecord] = []
            for (source, fact), kept in zip(facts, stored, strict=True):
                if kept is None:
                    outcome.duplicates += 1
                    continue
                outcome.facts_appended += 1
                for decision in self._shard(source).decide(fact):
                    outcome.decisions.append(decision)
                    decided.append(
                        NewRecord(
                            "decision",
                            decision.decision_id,
                            decision.type,
                            encode_decision(decision),
                            source,
                        )
                    )
            outcome.recorded = [kept for kept in tx.append(decided) if kept is not None]
            if dead_letters:
                tx.add_dead_letters(dead_letters)
            if positions:
                tx.set_positions(positions)
        return outcome

    def _shard(self, source: str) -> Decider:
        decider = self._shards.get(source)
        if decider is None:
            decider = self._new_shard(source)
        return decider

    def _new_shard(self, source: str) -> Decider:
        """An empty state for `source`, with its cold tier if asked; any old one is closed."""
        self.forget(source)
        state = State() if self.cold_after is None else State(archive=OrderArchive(self.cold_after))
        decider = self._shards[source] = Decider(self.rules, state)
        return decider


def _fence(tx: LogTransaction, expected: Mapping[str, int]) -> None:
    """Refuse a batch that starts behind what the log already holds for its input."""
    for name, batch_start in expected.items():
        stored = tx.position(name)
        if stored is not None and stored > batch_start:
            raise StaleBatchError(name, batch_start, stored)


def encode_decision(decision: AnyDecision) -> bytes:
    """Decisions are stored as their JSON, which a replay compares byte for byte."""
    return decision.model_dump_json().encode()
