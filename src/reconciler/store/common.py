# Copyright 2026 The reconciler authors. SPDX-License-Identifier: Apache-2.0
"""What both backends share: the unit-of-work block and paged, filtered reads."""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from typing import TYPE_CHECKING

from reconciler.store.chain import verify_chain
from reconciler.store.paging import keyset_pages

if TYPE_CHECKING:
    from collections.abc import Iterator

    from reconciler.store.chain import ChainRow, VerifyReport
    from reconciler.store.records import Kind, StoredRecord
    from reconciler.store.unit import UnitOfWork


def records_page_query(table: str, placeholder: str, *, by_source: bool, by_kind: bool) -> str:
    """One page of records after a position, optionally of one source and kind.

    `placeholder` is the driver's parameter marker (`%s` or `?`); the parameters are
    the position, then the source and kind when filtered, then the page size.
    """
    conditions = [f"position > {placeholder}"]
    if by_source:
        conditions.append(f"source = {placeholder}")
    if by_kind:
        conditions.append(f"kind = {placeholder}")
    where = " AND ".join(conditions)
    return (
        "SELECT position, kind, record_id, type, payload, source, recorded_hash"  # noqa: S608 - fixed text only
        f" FROM {table} WHERE {where} ORDER BY position LIMIT {placeholder}"
    )


class PagedLogStore(ABC):
    """A backend supplies a unit inside a database transaction, and one page of records."""

    @contextmanager
    def transaction(self) -> Iterator[UnitOfWork]:
        """Open a unit of work, committed when the block ends and rolled back if it raises."""
        with self._open_unit() as unit:
            try:
                yield unit
            except BaseException:
                unit.abandon()
                raise
            unit.finish()

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
        counts the records yielded.
        """
        return keyset_pages(partial(self._record_page, source=source, kind=kind), after, limit)

    def verify(self) -> VerifyReport:
        """Walk the whole log and check its hash chain."""
        return verify_chain(keyset_pages(self._chain_page))

    @abstractmethod
    def _open_unit(self) -> AbstractContextManager[UnitOfWork]:
        """A unit of work inside a database transaction that holds the appender lock."""

    @abstractmethod
    def _record_page(
        self, after: int, size: int, *, source: str | None, kind: Kind | None
    ) -> list[StoredRecord]:
        """Up to `size` matching records after position `after`."""

    @abstractmethod
    def _chain_page(self, after: int, size: int) -> list[ChainRow]:
        """Up to `size` rows after position `after`, with what the chain covers."""
