# Copyright 2026 The reconciler authors. SPDX-License-Identifier: Apache-2.0
"""The log store on SQLite, through eventsourcing's `SQLiteDatastore`.

We use eventsourcing's datastore (its connection pool, WAL for files, one writer at
a time per process, and `SQLiteTransaction`, which rolls back on error and turns
sqlite3 errors into eventsourcing's `PersistenceError` family) with our own tables.
Its recorders store aggregate events keyed by originator id and version, and track
one position per upstream application; our log is keyed by (kind, record_id), is
hash-chained, and tracks many input positions, so the recorders' tables do not fit.

Writers begin with `BEGIN IMMEDIATE`: it takes SQLite's write lock at once, so a
second process waits for it (up to `lock_timeout`) before reading the chain head,
instead of failing when a read transaction tries to become a write one.

Construction does not connect; `create_tables()` creates the tables (idempotent).
`":memory:"` becomes a named shared-cache in-memory database, so that every pooled
connection of this store sees the same data (and no other store does).
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from functools import cache
from itertools import chain
from typing import TYPE_CHECKING

from eventsourcing.sqlite import SQLiteConnection, SQLiteCursor, SQLiteDatastore, SQLiteTransaction

from reconciler.store.batch import ChainHead, RecordKey
from reconciler.store.chain import ChainRow
from reconciler.store.common import PagedLogStore, records_page_query
from reconciler.store.errors import sqlite_errors_translated
from reconciler.store.paging import check_limit
from reconciler.store.records import StoredDeadLetter, StoredRecord
from reconciler.store.unit import UnitOfWork

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from reconciler.store.batch import InsertRow
    from reconciler.store.records import DeadLetter, Kind

_CREATE_TABLES = (
    """
    CREATE TABLE IF NOT EXISTS records (
        position INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('fact', 'decision')),
        record_id TEXT NOT NULL,
        type TEXT NOT NULL,
        payload BLOB NOT NULL,
        source TEXT NOT NULL,
        recorded_hash BLOB NOT NULL,
        prev_hash BLOB NOT NULL,
        UNIQUE (kind, record_id)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS input_positions (
        source TEXT PRIMARY KEY,
        position INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        source TEXT NOT NULL,
        locator TEXT NOT NULL,
        reason TEXT NOT NULL,
        raw BLOB NOT NULL
    )
    """,
)
_INSERT_RECORD = (
    "INSERT INTO records"
    " (position, kind, record_id, type, payload, source, recorded_hash, prev_hash)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
# Rows per INSERT: one statement of many rows costs SQLite less than as many single-row
# steps of `executemany` (about a fifth less a row in the benchmark), and 100 rows of 8
# parameters stay under the variable limit of older SQLite builds (999).
_ROWS_PER_INSERT = 100
_SELECT_HEAD = "SELECT position, recorded_hash FROM records ORDER BY position DESC LIMIT 1"
_UPSERT_POSITION = (
    "INSERT INTO input_positions (source, position) VALUES (?, ?)"
    " ON CONFLICT (source) DO UPDATE SET position = excluded.position"
)
_INSERT_DEAD_LETTER = "INSERT INTO dead_letters (source, locator, reason, raw) VALUES (?, ?, ?, ?)"
_SELECT_POSITION = "SELECT position FROM input_positions WHERE source = ?"


# No index on source here, unlike on PostgreSQL (where partitions move between
# processes): a filtered page walks the primary key from `after` and skips the rows
# that do not match, so a whole filtered read visits each later row once, and
# inserts, the hot path of a file run, pay for no second index.
# Keyed by (filtered by source, filtered by kind).
_SELECT_RECORDS = {
    (by_source, by_kind): records_page_query("records", "?", by_source=by_source, by_kind=by_kind)
    for by_source in (False, True)
    for by_kind in (False, True)
}
_SELECT_CHAIN_ROWS = (
    "SELECT position, kind, record_id, type, payload, source, recorded_hash, prev_hash"
    " FROM records WHERE position > ? ORDER BY position LIMIT ?"
)
_SELECT_DEAD_LETTERS = (
    "SELECT id, source, locator, reason, raw FROM dead_letters WHERE id > ? ORDER BY id LIMIT ?"
)
# Keeps the bound parameters of one lookup well under SQLite's variable limit.
_KEYS_PER_LOOKUP = 800


class SQLiteLogStore(PagedLogStore):
    """The hash-chained log, input positions and dead letters in one SQLite database."""

    def __init__(self, path: str | Path, *, lock_timeout: int = 5) -> None:
        """Prepare a store at `path` (or `":memory:"`); nothing is opened yet."""
        self._datastore = SQLiteDatastore(_database_name(str(path)), lock_timeout=lock_timeout)

    @property
    def datastore(self) -> SQLiteDatastore:
        """The eventsourcing datastore under this store, for read models kept beside the log."""
        return self._datastore

    def create_tables(self) -> None:
        """Create the tables if they are missing; safe to call again."""
        with self._cursor(write=True) as cursor:
            for statement in _CREATE_TABLES:
                cursor.execute(statement)

    @contextmanager
    def _open_unit(self) -> Iterator[UnitOfWork]:
        with self._cursor(write=True) as cursor:
            yield _SQLiteUnit(cursor)

    def last_position(self) -> int:
        """Return the last stored position, 0 for an empty log."""
        with self._cursor(write=False) as cursor:
            row = cursor.execute(_SELECT_HEAD).fetchone()
        return 0 if row is None else int(row[0])

    def positions(self) -> dict[str, int]:
        """Return the input positions stored by `set_positions`."""
        with self._cursor(write=False) as cursor:
            rows = cursor.execute("SELECT source, position FROM input_positions").fetchall()
        return dict(rows)

    def dead_letters(self, after_id: int = 0, limit: int | None = None) -> list[StoredDeadLetter]:
        """Return the dead letters with id greater than `after_id`, in recorded order.

        At most `limit` of them; with no arguments, all of them.
        """
        check_limit(limit)
        with self._cursor(write=False) as cursor:
            # SQLite reads a negative LIMIT as no limit.
            parameters = (after_id, -1 if limit is None else limit)
            rows = cursor.execute(_SELECT_DEAD_LETTERS, parameters).fetchall()
        return [StoredDeadLetter(*row) for row in rows]

    def close(self) -> None:
        """Close the pooled connections (an in-memory database is gone after this)."""
        self._datastore.close()

    def _record_page(
        self, after: int, size: int, *, source: str | None, kind: Kind | None
    ) -> list[StoredRecord]:
        query = _SELECT_RECORDS[source is not None, kind is not None]
        filters = [value for value in (source, kind) if value is not None]
        with self._cursor(write=False) as cursor:
            rows = cursor.execute(query, (after, *filters, size)).fetchall()
        return [StoredRecord(*row) for row in rows]

    def _chain_page(self, after: int, size: int) -> list[ChainRow]:
        with self._cursor(write=False) as cursor:
            rows = cursor.execute(_SELECT_CHAIN_ROWS, (after, size)).fetchall()
        return [ChainRow(*row) for row in rows]

    @contextmanager
    def _cursor(self, *, write: bool) -> Iterator[sqlite3.Cursor]:
        # Readers get a plain BEGIN and a rollback: a consistent snapshot, no lock held.
        with (
            self._datastore.get_connection(commit=write) as connection,
            _Transaction(connection, commit=write, immediate=write) as cursor,
            cursor as sqlite_cursor,
        ):
            yield sqlite_cursor


class _Transaction(SQLiteTransaction):
    """eventsourcing's transaction (rollback and error translation), begun IMMEDIATE."""

    def __init__(self, connection: SQLiteConnection, *, commit: bool, immediate: bool) -> None:
        super().__init__(connection, commit=commit)
        self._begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    def __enter__(self) -> SQLiteCursor:
        cursor: SQLiteCursor = self.connection.cursor()
        cursor.execute(self._begin)
        return cursor


class _SQLiteUnit(UnitOfWork):
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        super().__init__(sqlite_errors_translated)
        self._cursor = cursor

    def _read_head(self) -> ChainHead:
        row = self._cursor.execute(_SELECT_HEAD).fetchone()
        return ChainHead() if row is None else ChainHead(row[0], row[1])

    def _stored_keys(self, keys: set[RecordKey]) -> set[RecordKey]:
        ids_by_kind: dict[str, list[str]] = {}
        for kind, record_id in keys:
            ids_by_kind.setdefault(kind, []).append(record_id)
        stored: set[RecordKey] = set()
        for kind, ids in ids_by_kind.items():
            for start in range(0, len(ids), _KEYS_PER_LOOKUP):
                chunk = ids[start : start + _KEYS_PER_LOOKUP]
                rows = self._cursor.execute(_lookup_ids(len(chunk)), [kind, *chunk])
                stored.update((kind, record_id) for (record_id,) in rows)
        return stored

    def _insert_rows(self, rows: Sequence[InsertRow]) -> None:
        for start in range(0, len(rows), _ROWS_PER_INSERT):
            chunk = rows[start : start + _ROWS_PER_INSERT]
            if len(chunk) == 1:
                self._cursor.execute(_INSERT_RECORD, chunk[0])
            else:
                self._cursor.execute(_insert_many(len(chunk)), list(chain.from_iterable(chunk)))

    def _upsert_positions(self, positions: Sequence[tuple[str, int]]) -> None:
        self._cursor.executemany(_UPSERT_POSITION, positions)

    def _read_position(self, name: str) -> int | None:
        row = self._cursor.execute(_SELECT_POSITION, (name,)).fetchone()
        return None if row is None else int(row[0])

    def _insert_dead_letters(self, dead_letters: Sequence[DeadLetter]) -> None:
        self._cursor.executemany(
            _INSERT_DEAD_LETTER,
            [(letter.source, letter.locator, letter.reason, letter.raw) for letter in dead_letters],
        )


@cache
def _lookup_ids(count: int) -> str:
    """The query for which of `count` record ids of one kind are stored."""
    placeholders = ", ".join(["?"] * count)
    # A literal IN list is planned as one probe of the (kind, record_id) index per id.
    query = "SELECT record_id FROM records WHERE kind = ? AND record_id IN"
    return f"{query} ({placeholders})"


@cache
def _insert_many(rows: int) -> str:
    """One INSERT of `rows` records (the same string each time, so sqlite3 reuses it)."""
    return _INSERT_RECORD + ", (?, ?, ?, ?, ?, ?, ?, ?)" * (rows - 1)


def _database_name(path: str) -> str:
    if path == ":memory:":
        return f"file:reconciler-{uuid.uuid4().hex}?mode=memory&cache=shared"
    return path
