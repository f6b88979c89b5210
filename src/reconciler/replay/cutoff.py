"""Where a replay stops: at a log position, or where the engine clock passed a moment.

A position cut keeps every record up to and including it. A clock cut is taken per
source, since each source has its own clock: a source's records are kept up to the
first `ClockTicked` that moves its clock past the moment, and none after it. The facts
kept are exactly those its decider had taken when its clock still read at most that
moment.

The decisions those facts led to are recorded after them, with the rest of the engine's
batch: some of them may lie beyond the cut. The replay still matches those with the
decisions it re-derived (`Cutoff.keeps` says no, the comparison's `late` takes them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reconciler.domain.events import ClockTicked

if TYPE_CHECKING:
    from datetime import datetime

    from reconciler.domain.events import Fact
    from reconciler.store import StoredRecord


@dataclass(frozen=True, slots=True)
class AsOf:
    """The moment a replay rebuilds: a log position, an engine-clock time, or the end."""

    position: int | None = None
    clock: datetime | None = None

    def __post_init__(self) -> None:
        """Refuse a position below 1 and a clock time without a UTC offset."""
        if self.position is not None and self.position < 1:
            msg = f"a log position starts at 1, got {self.position}"
            raise ValueError(msg)
        if self.clock is not None and self.clock.utcoffset() is None:
            msg = f"{self.clock.isoformat()} has no UTC offset"
            raise ValueError(msg)

    def describe(self) -> str:
        """For people and reports: `end of log`, `position 1234`, `clock 2024-09-…`."""
        parts = []
        if self.position is not None:
            parts.append(f"log position {self.position}")
        if self.clock is not None:
            parts.append(f"engine clock {self.clock.isoformat()}")
        return " and ".join(parts) or "end of log"


@dataclass(slots=True)
class Cutoff:
    """Decides, record by record in log order, which records the replay keeps."""

    as_of: AsOf
    closed: set[str] = field(default_factory=set)

    def past_end(self, record: StoredRecord) -> bool:
        """Whether this record and every later one lie beyond a position cut."""
        return self.as_of.position is not None and record.position > self.as_of.position

    def keeps(self, record: StoredRecord, fact: Fact | None) -> bool:
        """Whether the record is in; `fact` is the record parsed, for facts."""
        if self.past_end(record) or record.source in self.closed:
            return False
        moment = self.as_of.clock
        if moment is not None and isinstance(fact, ClockTicked) and fact.at > moment:
            self.closed.add(record.source)
            return False
        return True
