from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from reconciler.store import NewRecord, SQLiteLogStore

if TYPE_CHECKING:
    from pathlib import Path


def _append_one(store: SQLiteLogStore, record_id: str) -> None:
    with store.transaction() as tx:
        tx.append([NewRecord("fact", record_id, "ClockTicked", b"{}")])


def test_memory_store_keeps_records_across_its_connections() -> None:
    """An in-memory store holds its log for its lifetime, whichever pooled connection reads."""
    store = SQLiteLogStore(":memory:")
    try:
        store.create_tables()
        _append_one(store, "event-1")
        _append_one(store, "event-2")
        assert [r.position for r in store.read()] == [1, 2]
        assert store.verify().ok
    finally:
        store.close()


def test_memory_stores_are_independent() -> None:
    """Two in-memory stores do not share a database."""
    first, second = SQLiteLogStore(":memory:"), SQLiteLogStore(":memory:")
    try:
        first.create_tables()
        second.create_tables()
        _append_one(first, "event-1")
        assert second.last_position() == 0
    finally:
        first.close()
        second.close()


def test_file_store_uses_write_ahead_logging(tmp_path: Path) -> None:
    """A file database is switched to WAL, so readers do not block the writer."""
    database = tmp_path / "log.sqlite"
    store = SQLiteLogStore(database)
    try:
        store.create_tables()
    finally:
        store.close()
    with sqlite3.connect(database) as connection:
        (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
    connection.close()
    assert mode == "wal"


def test_construction_does_not_touch_the_file(tmp_path: Path) -> None:
    """Making a store opens nothing: the database file appears only when first used."""
    database = tmp_path / "log.sqlite"
    store = SQLiteLogStore(database)
    assert not database.exists()
    store.close()
