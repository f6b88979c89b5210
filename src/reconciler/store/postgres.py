# Copyright 2026 The reconciler authors. SPDX-License-Identifier: Apache-2.0
"""The log store on PostgreSQL, through eventsourcing's `PostgresDatastore`.

We use eventsourcing's datastore (its psycopg connection pool in autocommit mode and
its `get_connection()`, which turns psycopg errors into eventsourcing's
`PersistenceError` family, chained) with our own tables in our own schema. Its
recorders store aggregate events keyed by originator id and version; our log is
keyed by (kind, record_id), hash-chained, and tracks many input positions, so their
tables do not fit.

Appenders from any number of processes are serialised by `LOCK TABLE ... IN
EXCLUSIVE MODE`, taken first thing in every write transaction, the way eventsourcing
serialises its own inserts: it blocks other writers but not readers, so the chain
head read under it is the real head, positions are assigned gaplessly in commit
order, and a reader tailing the log never sees a later position before an earlier
one commits.

Rows go in with one binary COPY per batch, tried first as if no key were stored yet
(under a savepoint) and planned again after a set-based lookup of the batch's keys
only if the unique index refuses it. Each append is thus a subtransaction: keep to
a few appends per transaction, since past 64 subtransactions in one, PostgreSQL's
snapshots overflow and every session slows down.

Each record names its `source` (the shard it belongs to, e.g. a Kafka partition);
an index on (source, kind, position) lets a process that takes over a partition read
that shard's facts back in position order without walking the rest of the log.

Construction does not connect; `create_tables()` creates the schema and tables
(idempotent, and safe to race: it takes a transaction-scoped advisory lock).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg.errors
from eventsourcing.postgres import PostgresDatastore
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import args_row, tuple_row
from psycopg.sql import SQL, Identifier

from reconciler.store.batch import ChainHead, RecordKey, plan_append
from reconciler.store.chain import ChainRow
from reconciler.store.common import PagedLogStore, records_page_query
from reconciler.store.errors import psycopg_errors_translated
from reconciler.store.paging import check_limit
from reconciler.store.records import StoredDeadLetter, StoredRecord
from reconciler.store.unit import UnitOfWork

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from psycopg import Cursor

    from reconciler.store.batch import InsertRow, Plan
    from reconciler.store.records import DeadLetter, Kind, NewRecord

_CREATE_TABLES = (
    "SELECT pg_advisory_xact_lock(hashtext('reconciler.store.create_tables'))",
    "CREATE SCHEMA IF NOT EXISTS {schema}",
    """
    CREATE TABLE IF NOT EXISTS {schema}.records (
        position bigint PRIMARY KEY,
        kind text NOT NULL CHECK (kind IN ('fact', 'decision')),
        record_id text NOT NULL,
        type text NOT NULL,
        payload bytea NOT NULL,
        source text NOT NULL,
        recorded_hash bytea NOT NULL,
        prev_hash bytea NOT NULL,
        UNIQUE (kind, record_id)
    )
    """,
    # Serves `read(source=..., kind=...)`, a shard's rebuild, as one ordered range even
    # under a generic plan; on (source, position) alone, PostgreSQL's generic plan walked
    # the primary key and filtered instead. A read by source alone is not one range of it.
    """
    CREATE INDEX IF NOT EXISTS records_source_kind_position
        ON {schema}.records (source, kind, position)
    """,
    """
    CREATE TABLE IF NOT EXISTS {schema}.input_positions (
        source text PRIMARY KEY,
        position bigint NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS {schema}.dead_letters (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        source text NOT NULL,
        locator text NOT NULL,
        reason text NOT NULL,
        raw bytea NOT NULL
    )
    """,
)
_COPY_TYPES = ("int8", "text", "text", "text", "bytea", "text", "bytea", "bytea")
_CONNECTION_KEYS = ("dbname", "host", "port", "user", "password")


class _Statements:
    """The store's SQL, bound once to its schema."""

    def __init__(self, schema: str) -> None:
        # Rendered once: psycopg would otherwise compose the query on every execute.
        def bind(text: str) -> bytes:
            return SQL(text).format(schema=Identifier(schema)).as_bytes(None)

        self.create_tables = [bind(text) for text in _CREATE_TABLES]
        self.positions_all = bind("SELECT source, position FROM {schema}.input_positions")
        self.lock = bind("LOCK TABLE {schema}.records IN EXCLUSIVE MODE")
        self.head = bind(
            "SELECT position, recorded_hash FROM {schema}.records ORDER BY position DESC LIMIT 1"
        )
        # What a writer reads first, sent as one round trip: the lock, then under it the
        # chain head and the input positions (a unit that only appends reads no position).
        self.open_unit = b"; ".join((self.lock, self.head, self.positions_all))
        self.stored_keys = bind(
            "SELECT kind, record_id FROM {schema}.records WHERE (kind, record_id) IN"
            " (SELECT * FROM unnest(%s::text[], %s::text[]))"
        )
        self.copy_records = bind(
            "COPY {schema}.records"
            " (position, kind, record_id, type, payload, source, recorded_hash, prev_hash)"
            " FROM STDIN (FORMAT BINARY)"
        )
        self.upsert_position = bind(
            "INSERT INTO {schema}.input_positions (source, position) VALUES (%s, %s)"
            " ON CONFLICT (source) DO UPDATE SET position = excluded.position"
        )
        self.insert_dead_letter = bind(
            "INSERT INTO {schema}.dead_letters (source, locator, reason, raw)"
            " VALUES (%s, %s, %s, %s)"
        )
        # Keyed by (filtered by source, filtered by kind).
        self.records_pages = {
            (by_source, by_kind): bind(
                records_page_query("{schema}.records", "%s", by_source=by_source, by_kind=by_kind)
            )
            for by_source in (False, True)
            for by_kind in (False, True)
        }
        self.chain_page = bind(
            "SELECT position, kind, record_id, type, payload, source, recorded_hash, prev_hash"
            " FROM {schema}.records WHERE position > %s ORDER BY position LIMIT %s"
        )
        self.last_position = bind("SELECT coalesce(max(position), 0) FROM {schema}.records")
        self.dead_letters = bind(
            "SELECT id, source, locator, reason, raw FROM {schema}.dead_letters"
            " WHERE id > %s ORDER BY id LIMIT %s"
        )


class PostgresLogStore(PagedLogStore):
    """The hash-chained log, input positions and dead letters in one PostgreSQL schema."""

    def __init__(self, dsn: str, schema: str = "reconciler", *, pool_size: int = 2) -> None:
        """Prepare a store for `dsn` (URL or conninfo string); nothing is connected yet."""
        self._sql = _Statements(schema)
        self._datastore = _datastore(dsn, schema, pool_size)

    @property
    def datastore(self) -> PostgresDatastore:
        """The eventsourcing datastore under this store (its `schema` is the log's schema)."""
        return self._datastore

    def create_tables(self) -> None:
        """Create the schema and tables if they are missing; safe to call again."""
        with self._cursor() as cursor, cursor.connection.transaction():
            for statement in self._sql.create_tables:
                cursor.execute(statement)

    @contextmanager
    def _open_unit(self) -> Iterator[UnitOfWork]:
        with self._cursor() as cursor, cursor.connection.transaction():
            cursor.execute(self._sql.open_unit)
            cursor.nextset()
            head_row = cursor.fetchone()
            cursor.nextset()
            positions: dict[str, int] = dict(cursor.fetchall())
            head = ChainHead() if head_row is None else ChainHead(head_row[0], head_row[1])
            yield _PostgresUnit(cursor, self._sql, head, positions)

    def last_position(self) -> int:
        """Return the last stored position, 0 for an empty log."""
        with self._cursor() as cursor:
            row = cursor.execute(self._sql.last_position).fetchone()
        return 0 if row is None else int(row[0])

    def positions(self) -> dict[str, int]:
        """Return the input positions stored by `set_positions`."""
        with self._cursor() as cursor:
            return dict(cursor.execute(self._sql.positions_all))

    def dead_letters(self, after_id: int = 0, limit: int | None = None) -> list[StoredDeadLetter]:
        """Return the dead letters with id greater than `after_id`, in recorded order.

        At most `limit` of them; with no arguments, all of them.
        """
        check_limit(limit)
        with self._cursor() as cursor:
            # LIMIT NULL is no limit.
            parameters = (after_id, limit)
            rows = cursor.execute(self._sql.dead_letters, parameters, binary=True).fetchall()
        return [StoredDeadLetter(*row) for row in rows]

    def close(self) -> None:
        """Close the connection pool."""
        self._datastore.close()

    def _record_page(
        self, after: int, size: int, *, source: str | None, kind: Kind | None
    ) -> list[StoredRecord]:
        query = self._sql.records_pages[source is not None, kind is not None]
        filters = [value for value in (source, kind) if value is not None]
        with self._cursor() as cursor:
            records = cursor.connection.cursor(row_factory=args_row(StoredRecord))
            return records.execute(query, (after, *filters, size), binary=True).fetchall()

    def _chain_page(self, after: int, size: int) -> list[ChainRow]:
        with self._cursor() as cursor:
            rows = cursor.connection.cursor(row_factory=args_row(ChainRow))
            return rows.execute(self._sql.chain_page, (after, size), binary=True).fetchall()

    @contextmanager
    def _cursor(self) -> Iterator[Cursor[tuple[Any, ...]]]:
        with (
            self._datastore.get_connection() as connection,
            connection.cursor(row_factory=tuple_row) as cursor,
        ):
            yield cursor


class _PostgresUnit(UnitOfWork):
    def __init__(
        self,
        cursor: Cursor[tuple[Any, ...]],
        statements: _Statements,
        head: ChainHead,
        positions: dict[str, int],
    ) -> None:
        """Work in `cursor`'s transaction, which read `head` and `positions` under the lock."""
        super().__init__(psycopg_errors_translated)
        self._cursor = cursor
        self._sql = statements
        self._stored_head = head
        # Nobody else can move them before this transaction ends: writers take the lock.
        self._positions = positions

    def _insert_new(self, records: Sequence[NewRecord], head: ChainHead) -> Plan:
        # Most batches hold no duplicate, and the unique index probes every key on
        # insert anyway, so try the batch as if all were new: that saves a lookup
        # costing a quarter of an append. A duplicate rolls the attempt back to the
        # savepoint, and the batch is planned again from the same head after the lookup.
        optimistic = plan_append(records, (), head)
        try:
            with self._cursor.connection.transaction():
                self._insert_rows(optimistic.rows)
        except psycopg.errors.UniqueViolation:
            return super()._insert_new(records, head)
        return optimistic

    def _read_head(self) -> ChainHead:
        return self._stored_head

    def _stored_keys(self, keys: set[RecordKey]) -> set[RecordKey]:
        kinds = [kind for kind, _ in keys]
        record_ids = [record_id for _, record_id in keys]
        self._cursor.execute(self._sql.stored_keys, (kinds, record_ids))
        return {(kind, record_id) for kind, record_id in self._cursor}

    def _insert_rows(self, rows: Sequence[InsertRow]) -> None:
        with self._cursor.copy(self._sql.copy_records) as copy:
            copy.set_types(_COPY_TYPES)
            for row in rows:
                copy.write_row(row)

    def _upsert_positions(self, positions: Sequence[tuple[str, int]]) -> None:
        self._cursor.executemany(self._sql.upsert_position, positions)
        self._positions.update(positions)

    def _read_position(self, name: str) -> int | None:
        # Read under the lock when the unit opened (READ COMMITTED: every transaction
        # committed before), and none can commit a position meanwhile: all take the lock.
        return self._positions.get(name)

    def _insert_dead_letters(self, dead_letters: Sequence[DeadLetter]) -> None:
        self._cursor.executemany(
            self._sql.insert_dead_letter,
            [(letter.source, letter.locator, letter.reason, letter.raw) for letter in dead_letters],
        )


def _datastore(dsn: str, schema: str, pool_size: int) -> PostgresDatastore:
    params = conninfo_to_dict(dsn)
    named = {key: str(params.pop(key, "")) for key in _CONNECTION_KEYS}
    datastore = PostgresDatastore(
        dbname=named["dbname"],
        host=named["host"],
        port=named["port"],
        user=named["user"],
        password=named["password"],
        schema=schema,
        pool_size=pool_size,
        max_overflow=pool_size,
        # Check a pooled connection before use: after the server restarts or cuts
        # connections, the pool would otherwise hand out dead ones one by one.
        pre_ping=True,
    )
    # The datastore names only five connection parameters; the rest of the DSN
    # (sslmode, options, ...) must still reach libpq.
    pool_kwargs = datastore.pool.kwargs
    if not isinstance(pool_kwargs, dict):
        msg = "eventsourcing's pool no longer takes connection kwargs as a dict"
        raise TypeError(msg)
    pool_kwargs.update(params)
    return datastore
