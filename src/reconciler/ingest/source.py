"""What every input source hands the engine: raw bytes, their origin, what they parsed to.

JSONL files, Kafka partitions and the demo all produce these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from reconciler.ingest.validation import Rejected, parse_record

if TYPE_CHECKING:
    from reconciler.domain.events import Fact


class InputRecord(NamedTuple):
    """One record as received: `position` is its line in a file, or offset in a partition."""

    source: str
    position: int
    raw: bytes
    parsed: Fact | Rejected

    @property
    def locator(self) -> str:
        """Where the record came from, for people: `events.jsonl:12`, `payments:0:41`."""
        return f"{self.source}:{self.position}"

    @classmethod
    def from_raw(cls, source: str, position: int, raw: bytes) -> InputRecord:
        """Parse producer bytes; a bad record becomes a rejection, never an exception."""
        return cls(source, position, raw, parse_record(raw))

    @classmethod
    def from_fact(cls, source: str, position: int, fact: Fact) -> InputRecord:
        """Wrap a fact made in-process (a tick, a simulator's answer)."""
        return cls(source, position, fact.model_dump_json().encode(), fact)
