from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING

import pytest
from psycopg.conninfo import conninfo_to_dict

from reconciler.store import NewRecord, PostgresLogStore, SQLiteLogStore, open_store

if TYPE_CHECKING:
    from pathlib import Path

    from reconciler.store import LogStore


def _round_trip(store: LogStore) -> list[str]:
    try:
        with store.transaction() as tx:
            tx.append([NewRecord("fact", "event-1", "ClockTicked", b"{}")])
        return [r.record_id for r in store.read()]
    finally:
        store.close()


def test_sqlite_url_with_three_slashes_is_a_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sqlite:///data.sqlite` opens data.sqlite in the working directory, tables made."""
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///data.sqlite")
    assert isinstance(store, SQLiteLogStore)
    assert _round_trip(store) == ["event-1"]
    assert (tmp_path / "data.sqlite").exists()


def test_sqlite_url_with_four_slashes_is_an_absolute_path(tmp_path: Path) -> None:
    """`sqlite:////abs/path` opens the absolute path."""
    store = open_store(f"sqlite:///{tmp_path / 'abs.sqlite'}")
    assert _round_trip(store) == ["event-1"]
    assert (tmp_path / "abs.sqlite").exists()


@pytest.mark.parametrize("url", ["sqlite://:memory:", "sqlite:///:memory:"])
def test_sqlite_memory_url(url: str) -> None:
    """Both spellings of an in-memory SQLite URL give a working store."""
    assert _round_trip(open_store(url)) == ["event-1"]


@pytest.mark.postgres
def test_postgres_conninfo_string(pg_dsn: str, pg_schema: str) -> None:
    """A psycopg conninfo string or URL opens PostgreSQL, tables made in the given schema."""
    store = open_store(pg_dsn, schema=pg_schema)
    assert isinstance(store, PostgresLogStore)
    assert _round_trip(store) == ["event-1"]


@pytest.mark.postgres
def test_postgres_url(pg_dsn: str, pg_schema: str) -> None:
    """A postgresql:// URL opens PostgreSQL, with every connection parameter honoured."""
    query = urllib.parse.urlencode(conninfo_to_dict(pg_dsn))
    assert _round_trip(open_store(f"postgresql:///?{query}", schema=pg_schema)) == ["event-1"]


@pytest.mark.parametrize("url", ["mysql://localhost/db", "sqlite://", "log.sqlite"])
def test_unsupported_url_is_refused(url: str) -> None:
    """A URL naming no supported store raises ValueError before anything is opened."""
    with pytest.raises(ValueError, match="sqlite"):
        open_store(url)
