"""The replay: read the log as of a moment, re-derive its decisions, compare them.

The log is read a page at a time in position order and never written: the replay
takes no lock the engine takes, so a live service goes on appending meanwhile (what
it appends after the replay's last page is simply not part of the replay). Each page's
facts go through the rederiver; the page's decision records go to the comparison with
the decisions re-derived, matched by id.

In memory a replay has no shadow log to drop a decision that another source recorded
first, as the engine's log does. Such a decision is left unmatched at the end; a last
pass over the log's decision records tells those (their id is recorded) from real
differences.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reconciler.domain.accounting import Money, total_money
from reconciler.ingest.source import InputRecord
from reconciler.ingest.validation import Rejected, parse_record
from reconciler.replay.compare import DecisionComparison, DecisionDifference, DifferenceKind
from reconciler.replay.cutoff import AsOf, Cutoff

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from reconciler.domain.events import Fact
    from reconciler.domain.state import State
    from reconciler.replay.deciders import Rederiver
    from reconciler.store import LogStore, StoredRecord

PAGE_SIZE = 5000


class CorruptLogError(Exception):
    """A fact in the log no longer validates: the log was altered (run `verify`)."""


@dataclass(slots=True)
class ReplayResult:
    """What a replay read, re-derived and found."""

    as_of: AsOf
    records_read: int = 0  # the records the cut keeps
    facts: int = 0
    decisions_recorded: int = 0
    decisions_rederived: int = 0
    last_position: int = 0
    differences: list[DecisionDifference] = field(default_factory=list)
    states: dict[str, State] = field(default_factory=dict)
    decision_types: Counter[str] = field(default_factory=Counter)
    # The run under other rules beside it (what-if), if any.
    alongside_states: dict[str, State] = field(default_factory=dict)
    alongside_types: Counter[str] = field(default_factory=Counter)

    @property
    def honest(self) -> bool:
        """Whether every recorded decision follows from the facts, and nothing else does."""
        return not self.differences

    @property
    def money(self) -> Money:
        """Where every rupiah the replayed facts debited stands, over all sources."""
        return sum((total_money(state) for state in self.states.values()), Money())

    @property
    def clock(self) -> datetime | None:
        """The latest engine clock among the sources replayed."""
        clocks = [state.clock for state in self.states.values() if state.clock is not None]
        return max(clocks, default=None)

    def open_escalations(self) -> int:
        """Escalations still open as of the replayed moment."""
        return sum(len(state.open_escalations) for state in self.states.values())


def replay_log(
    log: LogStore,
    rederiver: Rederiver,
    *,
    as_of: AsOf | None = None,
    alongside: Rederiver | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Re-derive the decisions of `log` up to `as_of` and compare them with the recorded ones.

    `alongside`, if given, decides the same facts (under other rules, for a what-if);
    its decisions are counted, not compared. `progress` is called after each page with
    the last log position read.
    """
    return _Replay(log, rederiver, alongside, as_of or AsOf()).run(progress)


class _Replay:
    """One pass over the log: pages in, facts to the deciders, decisions to the comparison."""

    def __init__(
        self, log: LogStore, rederiver: Rederiver, alongside: Rederiver | None, as_of: AsOf
    ) -> None:
        self.log = log
        self.rederiver = rederiver
        self.alongside = alongside
        self.result = ReplayResult(as_of)
        self.cutoff = Cutoff(as_of)
        self.comparison = DecisionComparison()

    def run(self, progress: Callable[[int], None] | None) -> ReplayResult:
        after = 0
        while page := list(self.log.read(after=after, limit=PAGE_SIZE)):
            after = page[-1].position
            self.feed(self.take(page))
            if progress is not None:
                progress(after)
            if self.cutoff.past_end(page[-1]) and not self.comparison.awaiting:
                break
        return self.finish()

    def take(self, page: list[StoredRecord]) -> list[InputRecord]:
        """Keep the page's records within the cut: facts to decide, decisions to compare."""
        if self.cutoff.as_of.position is None and self.cutoff.as_of.clock is None:
            return self.take_all(page)
        facts: list[InputRecord] = []
        for record in page:
            is_fact = record.kind == "fact"
            fact = _parse(record) if is_fact and not self.cutoff.past_end(record) else None
            if not self.cutoff.keeps(record, fact):
                if not is_fact:  # the twin of a decision re-derived before the cut, maybe
                    self.feed(facts)
                    facts = []
                    self.comparison.late(record.record_id, record.position, record.payload)
                continue
            self.result.records_read += 1
            self.result.last_position = record.position
            if fact is not None:
                facts.append(InputRecord(record.source, record.position, record.payload, fact))
            else:
                self.comparison.recorded(
                    record.source, record.record_id, record.type, record.position, record.payload
                )
        return facts

    def take_all(self, page: list[StoredRecord]) -> list[InputRecord]:
        """No cut: every fact to decide, every decision to compare."""
        facts: list[InputRecord] = []
        add = facts.append
        recorded = self.comparison.recorded
        for record in page:
            if record.kind == "fact":
                add(InputRecord(record.source, record.position, record.payload, _parse(record)))
            else:
                recorded(
                    record.source, record.record_id, record.type, record.position, record.payload
                )
        self.result.records_read += len(page)
        self.result.last_position = page[-1].position
        return facts

    def feed(self, facts: list[InputRecord]) -> None:
        if not facts:
            return
        for derived in self.rederiver.feed(facts):
            self.comparison.rederived(*derived)
            self.result.decision_types[derived.type] += 1
        if self.alongside is not None:
            types = (derived.type for derived in self.alongside.feed(facts))
            self.result.alongside_types.update(types)
        self.result.facts += len(facts)

    def finish(self) -> ReplayResult:
        result = self.result
        differences = self.comparison.finish()
        result.differences = _without_dropped_duplicates(self.log, differences)
        result.decisions_recorded = self.comparison.recorded_count
        result.decisions_rederived = self.comparison.rederived_count
        result.states = self.rederiver.states()
        if self.alongside is not None:
            result.alongside_states = self.alongside.states()
        return result


def _parse(record: StoredRecord) -> Fact:
    fact = parse_record(record.payload)
    if isinstance(fact, Rejected):
        msg = f"the fact at log position {record.position} no longer validates: {fact.reason}"
        raise CorruptLogError(msg)
    return fact


def _without_dropped_duplicates(
    log: LogStore, differences: list[DecisionDifference]
) -> list[DecisionDifference]:
    """Drop re-derived decisions the log holds under their id: another source recorded them."""
    unmatched = {
        difference.decision_id
        for difference in differences
        if difference.kind is DifferenceKind.UNRECORDED
    }
    if not unmatched:
        return differences
    recorded = set()
    for record in log.read(kind="decision"):
        if record.record_id in unmatched:
            recorded.add(record.record_id)
    return [
        difference
        for difference in differences
        if not (difference.kind is DifferenceKind.UNRECORDED and difference.decision_id in recorded)
    ]
