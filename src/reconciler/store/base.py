# Copyright 2026 The reconciler authors. SPDX-License-Identifier: Apache-2.0
"""The interfaces every log store backend satisfies."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from contextlib import AbstractContextManager

    from reconciler.store.chain import VerifyReport
    from reconciler.store.records import DeadLetter, NewRecord, StoredDeadLetter, StoredRecord


class LogTransaction(Protocol):
    """One unit of work: everything done through it commits together, or not at all."""

    def append(self, records: Sequence[NewRecord]) -> list[StoredRecord | None]:
        """Store the records whose key is new; `None` in place of each duplicate."""
        ...

    def set_positions(self, positions: Mapping[str, int]) -> None:
        """Record how far each input source has been read (e.g. `topic:0` -> next offset)."""
        ...

    def add_dead_letters(self, dead_letters: Sequence[DeadLetter]) -> None:
        """Keep input that could not be used, with the reason."""
        ...


class LogStore(Protocol):
    """The append-only, hash-chained log of facts and decisions."""

    def create_tables(self) -> None:
        """Create the store's tables if they are missing; safe to call again."""
        ...

    def transaction(self) -> AbstractContextManager[LogTransaction]:
        """Open a unit of work, committed when the block ends and rolled back if it raises."""
        ...

    def read(self, after: int = 0, limit: int | None = None) -> Iterator[StoredRecord]:
        """Stream stored records in position order, starting after position `after`."""
        ...

    def last_position(self) -> int:
        """Return the last stored position, 0 for an empty log."""
        ...

    def positions(self) -> dict[str, int]:
        """Return the input positions stored by `LogTransaction.set_positions`."""
        ...

    def dead_letters(self) -> list[StoredDeadLetter]:
        """Return every dead letter in recorded order."""
        ...

    def verify(self) -> VerifyReport:
        """Walk the whole log and check its hash chain."""
        ...

    def close(self) -> None:
        """Release the store's connections."""
        ...
