# Copyright 2026 The reconciler authors. SPDX-License-Identifier: Apache-2.0
"""Opening a log store from a URL, for the composition root and the CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reconciler.store.postgres import PostgresLogStore
from reconciler.store.sqlite import SQLiteLogStore

if TYPE_CHECKING:
    from reconciler.store.base import LogStore

_SQLITE_PREFIX = "sqlite://"


def open_store(url: str, *, schema: str = "reconciler", create: bool = True) -> LogStore:
    """Return a store with its tables created (unless `create` is false: a reader's open).

    `sqlite:///relative/or/absolute/path`, `sqlite://:memory:`, or for PostgreSQL a
    `postgresql://` / `postgres://` URL or a psycopg conninfo string (`host=... dbname=...`),
    whose tables go in `schema`.
    """
    store: LogStore
    if url.startswith(_SQLITE_PREFIX):
        store = SQLiteLogStore(sqlite_path(url.removeprefix(_SQLITE_PREFIX)))
    elif url.startswith(("postgresql://", "postgres://")) or "=" in url:
        store = PostgresLogStore(url, schema=schema)
    else:
        msg = f"unsupported store URL {url!r}: expected sqlite://... or postgresql://..."
        raise ValueError(msg)
    if create:
        store.create_tables()
    return store


def sqlite_path(rest: str) -> str:
    """The file a `sqlite://` URL names (after the prefix), or `:memory:`."""
    # sqlite:///data/log.db means the relative path data/log.db, sqlite:////abs the
    # absolute /abs, as SQLAlchemy reads them; sqlite://:memory: and sqlite:///:memory:
    # both mean memory.
    path = rest.removeprefix("/")
    if not path:
        msg = "sqlite:// URL names no database: use sqlite:///path or sqlite://:memory:"
        raise ValueError(msg)
    return path
