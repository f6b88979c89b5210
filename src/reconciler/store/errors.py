# Copyright 2026 The reconciler authors. SPDX-License-Identifier: Apache-2.0
"""Driver errors turned into eventsourcing's error classes, once, where they leave the store.

eventsourcing translates errors when they leave its datastores' transaction and
connection contexts; a unit of work's operations run inside those contexts, so they
translate on their own, the same way, for a caller that handles an error inside its
transaction block. An error translated here passes the outer contexts untouched.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from typing import TYPE_CHECKING

import psycopg
from eventsourcing.persistence import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

# Subclasses before their bases: the first match wins.
_PERSISTENCE_ERRORS: tuple[type[PersistenceError], ...] = (
    InterfaceError,
    DataError,
    OperationalError,
    IntegrityError,
    InternalError,
    ProgrammingError,
    NotSupportedError,
    DatabaseError,
    PersistenceError,
)
_SQLITE_ERRORS: tuple[type[sqlite3.Error], ...] = (
    sqlite3.InterfaceError,
    sqlite3.DataError,
    sqlite3.OperationalError,
    sqlite3.IntegrityError,
    sqlite3.InternalError,
    sqlite3.ProgrammingError,
    sqlite3.NotSupportedError,
    sqlite3.DatabaseError,
    sqlite3.Error,
)
_PSYCOPG_ERRORS: tuple[type[psycopg.Error], ...] = (
    psycopg.InterfaceError,
    psycopg.DataError,
    psycopg.OperationalError,
    psycopg.IntegrityError,
    psycopg.InternalError,
    psycopg.ProgrammingError,
    psycopg.NotSupportedError,
    psycopg.DatabaseError,
    psycopg.Error,
)


@contextmanager
def sqlite_errors_translated() -> Iterator[None]:
    """Raise sqlite3 errors as eventsourcing's, chained to the original."""
    try:
        yield
    except sqlite3.Error as error:
        raise _translated(error, _SQLITE_ERRORS) from error


@contextmanager
def psycopg_errors_translated() -> Iterator[None]:
    """Raise psycopg errors as eventsourcing's, chained to the original."""
    try:
        yield
    except psycopg.Error as error:
        raise _translated(error, _PSYCOPG_ERRORS) from error


def _translated(error: Exception, driver_errors: tuple[type[Exception], ...]) -> PersistenceError:
    for driver_error, persistence_error in zip(driver_errors, _PERSISTENCE_ERRORS, strict=True):
        if isinstance(error, driver_error):
            return persistence_error(str(error))
    return PersistenceError(str(error))
