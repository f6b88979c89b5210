"""Where a replay writes: a shadow schema beside the log, or a database file of its own.

The shadow never is the log: a target that names the log's own schema or file is
refused. By default a PostgreSQL log in schema `S` replays into schema `S_replay` of
the same database, and a SQLite log `x.sqlite` into `x.replay.sqlite` beside it. A
shadow that already holds records is refused unless the caller asks to replace it,
which drops the schema (or deletes the file) first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from reconciler.store import DeadLetter, open_store
from reconciler.store.factory import sqlite_path

if TYPE_CHECKING:
    from reconciler.store import LogStore

SQLITE = "sqlite://"


class ShadowError(ValueError):
    """The shadow target is the log itself, or holds records and may not be replaced."""


@dataclass(frozen=True, slots=True)
class Target:
    """A store URL and, for PostgreSQL, its schema."""

    url: str
    schema: str

    @property
    def is_sqlite(self) -> bool:
        """Whether the target is a SQLite database."""
        return self.url.startswith(SQLITE)

    def describe(self) -> str:
        """For people: the URL without a password, with the schema for PostgreSQL."""
        if self.is_sqlite:
            return self.url
        info = psycopg.conninfo.conninfo_to_dict(self.url)
        info.pop("password", None)
        where = " ".join(f"{key}={value}" for key, value in sorted(info.items()))
        return f"postgresql {where} schema {self.schema}"

    def same_as(self, other: Target) -> bool:
        """Whether both name one database and schema (one file, for SQLite)."""
        if self.is_sqlite != other.is_sqlite:
            return False
        if self.is_sqlite:
            return _file(self) == _file(other)
        return (self.url, self.schema) == (other.url, other.schema)


def default_shadow(log: Target) -> Target:
    """`S_replay` beside a PostgreSQL log; `x.replay.sqlite` beside a SQLite file."""
    if not log.is_sqlite:
        return Target(log.url, f"{log.schema}_replay")
    path = _file(log)
    if path is None:
        return Target(f"{SQLITE}:memory:", log.schema)
    return Target(f"{SQLITE}/{path.with_suffix('.replay' + path.suffix)}", log.schema)


def open_shadow(shadow: Target, log: Target, *, replace: bool) -> LogStore:
    """Open the shadow store empty: refused if it is the log, or holds records unreplaced."""
    if shadow.same_as(log):
        msg = f"the shadow {shadow.describe()} is the log itself; name another"
        raise ShadowError(msg)
    if replace:
        _drop(shadow)
    store = open_store(shadow.url, schema=shadow.schema)
    if held := store.last_position():
        store.close()
        msg = (
            f"the shadow {shadow.describe()} already holds {held} records;"
            " pass --replace to drop it first"
        )
        raise ShadowError(msg)
    return store


def copy_dead_letters(log: LogStore, shadow: LogStore, page: int = 5000) -> int:
    """Copy the log's dead letters into the shadow, so its read models count them too.

    Dead letters are input the engine refused: kept beside the log, not in its chain, and
    with no log position, so a replay as of a moment copies all of them.
    """
    copied = after = 0
    while stored := log.dead_letters(after_id=after, limit=page):
        with shadow.transaction() as tx:
            tx.add_dead_letters(
                [DeadLetter(item.source, item.locator, item.reason, item.raw) for item in stored]
            )
        after = stored[-1].id
        copied += len(stored)
    return copied


def _drop(shadow: Target) -> None:
    if shadow.is_sqlite:
        path = _file(shadow)
        if path is not None:
            for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                leftover.unlink(missing_ok=True)
        return
    with psycopg.connect(shadow.url, autocommit=True) as connection:
        statement = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(shadow.schema)
        )
        connection.execute(statement)


def _file(target: Target) -> Path | None:
    """The SQLite file a target names, resolved; None for an in-memory database."""
    path = sqlite_path(target.url.removeprefix(SQLITE))
    return None if path == ":memory:" else Path(path).resolve()
