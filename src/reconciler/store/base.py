# Copyright 2026 The reconciler authors. SPDX-License-Identifier: Apache-2.0
"""The interfaces every log store backend satisfies."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from contextlib import AbstractContextManager

    from reconciler.store.chain import VerifyReport
    from reconciler.store.records import (
        DeadLetter,
        Kind,
        NewRecord,
        StoredDeadLetter,
        StoredRecord,
    )


class LogTransaction(Protocol):
    """One unit of work: everything done through it commits together, or not at all."""

    def append(self, records: Sequence[NewRecord]) -> list[StoredRecord | None]:
        """Store the records whose key is new; `None` in place of each duplicate."""
        ...

    def set_positions(self, positions: Mapping[str, int]) -> None:
        """Record how far each input source has been read (e.g. `topic:0` -> next offset)."""
        ...

    def position(self, name: str) -> int | None:
        """Return the input position stored for `name` as of now, `None` if there is none.

        Read under the appender lock, so it includes what other processes committed
        before this transaction began and what this one set: a writer can refuse a batch
        that starts behind it (fencing a process that lost its partition).
        """
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

    def read(
        self,
        after: int = 0,
        limit: int | None = None,
        *,
        source: str | None = None,
        kind: Kind | None = None,
    ) -> Iterator[StoredRecord]:
        """Stream stored records in position order, starting after position `after`.

        `source` and `kind`, when given, keep only the records that match; `limit`
        counts the records yielded, not the positions passed over.
        """
        ...

    def last_position(self) -> int:
        """Return the last stored position, 0 for an empty log."""
        ...

    def positions(self) -> dict[str, int]:
        """Return the input positions stored by `LogTransaction.set_positions`."""
        ...

    def dead_letters(self, after_id: int = 0, limit: int | None = None) -> list[StoredDeadLetter]:
        """Return the dead letters with id greater than `after_id`, in recorded order.

        At most `limit` of them; with no arguments, all of them.
        """
        ...

    def verify(self) -> VerifyReport:
        """Walk the whole log and check its hash chain."""
        ...

    def close(self) -> None:
        """Release the store's connections."""
        ...
