"""What every input source hands the engine: raw bytes, their origin, what they parsed to.

JSONL files, Kafka partitions and the demo all produce these.
"""

from __future__ import annotations

from functools import partial
from itertools import repeat
from typing import TYPE_CHECKING, NamedTuple

from reconciler.ingest.validation import Rejected, parse_record, parse_records

if TYPE_CHECKING:
    from collections.abc import Sequence

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
    def from_raws(
        cls, source: str, positions: Sequence[int], raws: Sequence[bytes]
    ) -> list[InputRecord]:
        """`from_raw` of each record of one source, validated many per pydantic call."""
        return cls.many(source, positions, raws, parse_records(raws))

    @classmethod
    def many(
        cls,
        source: str,
        positions: Sequence[int],
        raws: Sequence[bytes],
        parsed: Sequence[Fact | Rejected],
    ) -> list[InputRecord]:
        """Records of one source from three columns of equal length."""
        if not len(positions) == len(raws) == len(parsed):
            msg = f"columns of {len(positions)}, {len(raws)} and {len(parsed)} records"
            raise ValueError(msg)
        # Built by tuple.__new__ from C: the named tuple's own __new__ is a Python call.
        build = partial(tuple.__new__, cls)
        return list(map(build, zip(repeat(source), positions, raws, parsed, strict=False)))

    @classmethod
    def from_fact(cls, source: str, position: int, fact: Fact) -> InputRecord:
        """Wrap a fact made in-process (a tick, a simulator's answer)."""
        return cls(source, position, fact.model_dump_json().encode(), fact)
