# Copyright 2026 The reconciler authors. SPDX-License-Identifier: Apache-2.0
"""The writer's unit of work, shared by the backends: they supply the SQL, it the rules.

A unit lives inside one database transaction that already holds the appender lock
(the backend takes it when the transaction begins). An operation that fails leaves
the unit unable to commit even if the caller swallows the error: SQLite keeps the
rows an `executemany` wrote before it failed, and the chain head held here would no
longer match the table.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import TYPE_CHECKING

from reconciler.store.batch import ChainHead, RecordKey, batch_keys, plan_append

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from contextlib import AbstractContextManager

    from reconciler.store.batch import InsertRow, Plan
    from reconciler.store.records import DeadLetter, NewRecord, StoredRecord


class TransactionStateError(RuntimeError):
    """A unit of work was used after its block ended, or committed after a failure."""


class UnitOfWork(ABC):
    """Append records, input positions and dead letters in one transaction."""

    def __init__(self, errors_translated: Callable[[], AbstractContextManager[None]]) -> None:
        """Start open; driver errors raised by operations go through `errors_translated`."""
        self._errors_translated = errors_translated
        self._head: ChainHead | None = None
        self._open = True
        self._failed = False

    def append(self, records: Sequence[NewRecord]) -> list[StoredRecord | None]:
        """Store the records whose key is new; `None` in place of each duplicate."""
        with self._operation():
            if not records:
                return []
            if self._head is None:
                self._head = self._read_head()
            plan = self._insert_new(records, self._head)
            self._head = plan.head
            return plan.results

    def set_positions(self, positions: Mapping[str, int]) -> None:
        """Record how far each input source has been read (e.g. `topic:0` -> next offset)."""
        with self._operation():
            if positions:
                # A fixed order keeps concurrent writers from locking rows crosswise.
                self._upsert_positions(sorted(positions.items()))

    def position(self, name: str) -> int | None:
        """Return the input position stored for `name` as of now, `None` if there is none.

        The backend holds the appender lock from the start of the transaction, so no
        other writer can move the position between this read and the commit.
        """
        with self._operation():
            return self._read_position(name)

    def add_dead_letters(self, dead_letters: Sequence[DeadLetter]) -> None:
        """Keep input that could not be used, with the reason."""
        with self._operation():
            if dead_letters:
                self._insert_dead_letters(dead_letters)

    def finish(self) -> None:
        """Close the unit; raise if it must not commit, so the backend rolls back."""
        was_open, self._open = self._open, False
        if not was_open:
            msg = "the unit of work was already finished"
            raise TransactionStateError(msg)
        if self._failed:
            msg = "an operation of this unit of work failed; its transaction is rolled back"
            raise TransactionStateError(msg)

    def abandon(self) -> None:
        """Close the unit because its block raised; the backend rolls back."""
        self._open = False

    @contextmanager
    def _operation(self) -> Iterator[None]:
        if not self._open:
            msg = "the unit of work is used outside its transaction block"
            raise TransactionStateError(msg)
        try:
            with self._errors_translated():
                yield
        except BaseException:
            self._failed = True
            raise

    def _insert_new(self, records: Sequence[NewRecord], head: ChainHead) -> Plan:
        """Insert the records whose key is new, after one lookup of the batch's keys."""
        plan = plan_append(records, self._stored_keys(batch_keys(records)), head)
        if plan.rows:
            self._insert_rows(plan.rows)
        return plan

    @abstractmethod
    def _read_head(self) -> ChainHead:
        """Return the last stored position and hash (the lock is already held)."""

    @abstractmethod
    def _stored_keys(self, keys: set[RecordKey]) -> set[RecordKey]:
        """Return which of `keys` are stored already, in one set-based query."""

    @abstractmethod
    def _insert_rows(self, rows: Sequence[InsertRow]) -> None:
        """Insert the planned rows in as few round trips as the backend allows."""

    @abstractmethod
    def _upsert_positions(self, positions: Sequence[tuple[str, int]]) -> None:
        """Insert or overwrite the input positions."""

    @abstractmethod
    def _read_position(self, name: str) -> int | None:
        """Return the stored input position for `name` (the lock is already held)."""

    @abstractmethod
    def _insert_dead_letters(self, dead_letters: Sequence[DeadLetter]) -> None:
        """Insert the dead letters in order."""
