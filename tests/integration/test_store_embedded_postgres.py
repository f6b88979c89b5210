from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from reconciler.store import NewRecord, PostgresLogStore

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager
    from pathlib import Path


@pytest.mark.postgres
def test_embedded_postgres_serves_a_store(
    start_embedded_postgres: Callable[[Path], AbstractContextManager[str]], tmp_path: Path
) -> None:
    """The embedded-PostgreSQL fallback starts, holds a log, and stops, even when CI sets a DSN."""
    with start_embedded_postgres(tmp_path) as dsn:
        store = PostgresLogStore(dsn, schema="embedded")
        try:
            store.create_tables()
            with store.transaction() as tx:
                tx.append([NewRecord("fact", "event-1", "ClockTicked", b"{}")])
            assert [r.record_id for r in store.read()] == ["event-1"]
            assert store.verify().ok
        finally:
            store.close()
    assert not (tmp_path / "pgdata").exists()
