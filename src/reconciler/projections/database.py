"""Where the read models live: the log's own database, through the log store's datastore.

The views sit beside the log (the same SQLite file, or the log's PostgreSQL schema), so
a page of view rows and the projection's position (`projection:finance`, in the log's
`input_positions` like the relay's positions) commit in one transaction. Connections
come from eventsourcing's datastore under the store, the pool the log already uses.

Statements are written once, for both dialects: `?` marks every value (always passed
as a parameter, so no statement holds a literal `?` or `%`) and `{schema}.` prefixes
every table; `bind` turns that into the dialect's text. SQLite keeps times as
fixed-width UTC text; `to_time` reads either back as an aware datetime.

Writers are serialised with one another but never take the log's appender lock: a
SQLite writer begins IMMEDIATE (SQLite has one writer anyway), a PostgreSQL writer
takes a transaction-scoped advisory lock on the projection's name. Readers get one
consistent snapshot per `read()` block.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from eventsourcing.sqlite import SQLiteCursor, SQLiteTransaction
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from reconciler.projections.sql import TABLES, VIEWS, Dialect, ddl_statements
from reconciler.store import PostgresLogStore, SQLiteLogStore
from reconciler.store.errors import psycopg_errors_translated, sqlite_errors_translated

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterator, Sequence
    from contextlib import AbstractContextManager

    from eventsourcing.postgres import PostgresDatastore
    from eventsourcing.sqlite import SQLiteDatastore
    from psycopg import Cursor

    from reconciler.store import LogStore

COPY_FROM = 100
"""Rows from which a PostgreSQL upsert goes by COPY rather than a statement per row."""

TRACKING = "projection:finance"
"""The projection's position among the log's input positions."""

_SELECT_TRACKING = "SELECT position FROM {schema}.input_positions WHERE source = ?"
_UPSERT_TRACKING = (
    "INSERT INTO {schema}.input_positions (source, position) VALUES (?, ?)"
    " ON CONFLICT (source) DO UPDATE SET position = excluded.position"
)
_DELETE_TRACKING = "DELETE FROM {schema}.input_positions WHERE source = ?"


def to_time(value: object) -> datetime | None:
    """A stored time as an aware UTC datetime (SQLite gives text, PostgreSQL datetimes)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        msg = f"not a stored time: {value!r}"
        raise TypeError(msg)
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Upsert:
    """An `INSERT ... ON CONFLICT` into a read-model table (aliased `t`), in both dialects."""

    table: str
    columns: tuple[str, ...]
    on_conflict: str  # what follows ON CONFLICT: the key, then DO NOTHING or DO UPDATE

    @property
    def insert(self) -> str:
        """`INSERT INTO` the table with its columns: what the rows come after."""
        return f"INSERT INTO {{schema}}.{self.table} AS t ({', '.join(self.columns)})"

    @property
    def statement(self) -> str:
        """The statement for one row of values."""
        values = ", ".join("?" * len(self.columns))
        return f"{self.insert} VALUES ({values}) ON CONFLICT {self.on_conflict}"


class Session(ABC):
    """The statements of one database transaction; values always go as parameters."""

    @abstractmethod
    def run(self, statement: str, parameters: Sequence[object] = ()) -> None:
        """Execute one statement."""

    @abstractmethod
    def run_many(self, statement: str, rows: Sequence[Sequence[object]]) -> None:
        """Execute one statement for each row of parameters."""

    @abstractmethod
    def rows(self, statement: str, parameters: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Execute a query and return every row."""

    def upsert(self, upsert: Upsert, rows: Sequence[Sequence[object]]) -> None:
        """Insert rows with their table's conflict rule; no two rows may share a key."""
        self.run_many(upsert.statement, rows)

    def tracked(self) -> int:
        """The projection's committed position (0 before its first page)."""
        found = self.rows(_SELECT_TRACKING, (TRACKING,))
        return int(found[0][0]) if found else 0

    def track(self, position: int) -> None:
        """Move the projection's position, in this transaction."""
        self.run(_UPSERT_TRACKING, (TRACKING, position))


class ViewDatabase(ABC):
    """The read models' tables in the log's database, and transactions over them."""

    dialect: Dialect
    overlaps_writes: bool
    """Whether a page may be written on another thread while the next one is applied."""

    def create_tables(self) -> None:
        """Create the tables and the view if they are missing; safe to call again."""
        with self._transaction(write=True) as session:
            for statement in ddl_statements(self.dialect):
                session.run(statement)

    def reset(self) -> None:
        """Drop every view row and the position, and create the tables afresh, atomically."""
        with self._transaction(write=True) as session:
            for view in VIEWS:
                session.run(f"DROP VIEW IF EXISTS {{schema}}.{view}")
            for table in TABLES:
                session.run(f"DROP TABLE IF EXISTS {{schema}}.{table}")
            session.run(_DELETE_TRACKING, (TRACKING,))
            for statement in ddl_statements(self.dialect):
                session.run(statement)

    def write(self) -> AbstractContextManager[Session]:
        """A transaction that changes the views; only one projector writes at a time."""
        return self._transaction(write=True)

    def read(self) -> AbstractContextManager[Session]:
        """A read-only transaction: every query in it sees the same committed state."""
        return self._transaction(write=False)

    @abstractmethod
    def _transaction(self, *, write: bool) -> AbstractContextManager[Session]:
        """A session in one transaction; a writer holds the writers' lock until it ends."""


def view_database(store: LogStore) -> ViewDatabase:
    """The read models' database beside this store's log."""
    if isinstance(store, SQLiteLogStore):
        return SQLiteViews(store.datastore)
    if isinstance(store, PostgresLogStore):
        return PostgresViews(store.datastore)
    msg = f"no read models for a {type(store).__name__}"
    raise TypeError(msg)


# -- SQLite ---------------------------------------------------------------------------


class SQLiteViews(ViewDatabase):
    """The views in the log's SQLite database."""

    dialect: Dialect = "sqlite"
    overlaps_writes = False  # the writing is this process's own work: no server to overlap

    def __init__(self, datastore: SQLiteDatastore) -> None:
        """Use the log store's datastore (and so its connection pool)."""
        self._datastore = datastore

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Session]:
        with (
            self._datastore.get_connection(commit=write) as connection,
            _Begun(connection, commit=write) as cursor,
            cursor as sqlite_cursor,
        ):
            yield _SQLiteSession(sqlite_cursor)


class _Begun(SQLiteTransaction):
    """eventsourcing's transaction (rollback, error translation); writers begin IMMEDIATE."""

    def __enter__(self) -> SQLiteCursor:
        cursor: SQLiteCursor = self.connection.cursor()
        cursor.execute("BEGIN IMMEDIATE" if self.commit else "BEGIN")
        return cursor


class _SQLiteSession(Session):
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    def run(self, statement: str, parameters: Sequence[object] = ()) -> None:
        with sqlite_errors_translated():
            self._cursor.execute(_sqlite_text(statement), _sqlite_values(parameters))

    def run_many(self, statement: str, rows: Sequence[Sequence[object]]) -> None:
        if rows:
            with sqlite_errors_translated():
                self._cursor.executemany(
                    _sqlite_text(statement), [_sqlite_values(row) for row in rows]
                )

    def rows(self, statement: str, parameters: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with sqlite_errors_translated():
            found = self._cursor.execute(_sqlite_text(statement), _sqlite_values(parameters))
            return [tuple(row) for row in found.fetchall()]


def _sqlite_text(statement: str) -> str:
    return statement.replace("{schema}.", "")


def _sqlite_values(parameters: Sequence[object]) -> list[object]:
    return [sqlite_time(value) if type(value) is datetime else value for value in parameters]


def sqlite_time(value: datetime) -> str:
    """A time as SQLite keeps it: UTC, to the microsecond, fixed width (sorts as it compares)."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


# -- PostgreSQL -----------------------------------------------------------------------


class PostgresViews(ViewDatabase):
    """The views in the log's PostgreSQL schema."""

    dialect: Dialect = "postgresql"
    overlaps_writes = True  # the server works while the model applies the next page

    def __init__(self, datastore: PostgresDatastore) -> None:
        """Use the log store's datastore (its pool, and its schema for the tables)."""
        self._datastore = datastore
        self._schema: str = datastore.schema
        self._bound: dict[str, bytes] = {}
        self._types: dict[Upsert, list[int]] = {}

    def bind(self, statement: str) -> bytes:
        """The statement in psycopg's terms, in the log's schema (rendered once)."""
        bound = self._bound.get(statement)
        if bound is None:
            text = SQL(statement.replace("?", "%s"))
            bound = text.format(schema=Identifier(self._schema)).as_bytes(None)
            self._bound[statement] = bound
        return bound

    def column_types(self, cursor: Cursor[tuple[Any, ...]], upsert: Upsert) -> list[int]:
        """The type oids of an upsert's columns, for a binary COPY (looked up once)."""
        types = self._types.get(upsert)
        if types is None:
            found = cursor.execute(
                "SELECT a.attname, a.atttypid FROM pg_attribute AS a"
                " JOIN pg_class AS c ON c.oid = a.attrelid"
                " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0",
                (self._schema, upsert.table),
            ).fetchall()
            oids = dict(found)
            types = self._types[upsert] = [oids[column] for column in upsert.columns]
        return types

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Session]:
        with (
            self._datastore.get_connection() as connection,
            connection.transaction(),
            connection.cursor(row_factory=tuple_row) as cursor,
        ):
            session = _PostgresSession(cursor, self)
            if write:
                key = f"{self._schema}.{TRACKING}"
                session.run("SELECT pg_advisory_xact_lock(hashtext(?))", (key,))
            else:
                session.run("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield session


class _PostgresSession(Session):
    def __init__(self, cursor: Cursor[tuple[Any, ...]], views: PostgresViews) -> None:
        self._cursor = cursor
        self._views = views
        self._staged: set[str] = set()

    def run(self, statement: str, parameters: Sequence[object] = ()) -> None:
        with psycopg_errors_translated():
            self._cursor.execute(self._views.bind(statement), parameters)

    def run_many(self, statement: str, rows: Sequence[Sequence[object]]) -> None:
        if rows:
            with psycopg_errors_translated():
                self._cursor.executemany(self._views.bind(statement), rows)

    def rows(self, statement: str, parameters: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with psycopg_errors_translated():
            return self._cursor.execute(self._views.bind(statement), parameters).fetchall()

    def upsert(self, upsert: Upsert, rows: Sequence[Sequence[object]]) -> None:
        """Many rows go by COPY into a temporary table, then one INSERT ... SELECT from it.

        A statement per row costs the server a round of parsing, planning and locking
        each; COPY and one set-based insert cost a fraction of that.
        """
        if len(rows) < COPY_FROM:
            super().upsert(upsert, rows)
            return
        stage = f"pg_temp.rm_stage_{upsert.table}"
        columns = ", ".join(upsert.columns)
        if stage in self._staged:
            self.run(f"TRUNCATE {stage}")
        else:
            self.run(
                f"CREATE TEMPORARY TABLE {stage} (LIKE {{schema}}.{upsert.table}) ON COMMIT DROP"
            )
            self._staged.add(stage)
        types = self._views.column_types(self._cursor, upsert)
        copy_in = self._views.bind(f"COPY {stage} ({columns}) FROM STDIN (FORMAT BINARY)")
        with psycopg_errors_translated(), self._cursor.copy(copy_in) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)
        select = f"SELECT {columns} FROM {stage}"  # noqa: S608 - our own names
        self.run(f"{upsert.insert} {select} ON CONFLICT {upsert.on_conflict}")
