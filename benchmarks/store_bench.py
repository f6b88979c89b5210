"""The PostgreSQL log's append, beside raw psycopg binary COPY of the same rows.

200,000 registration-peak facts (`workload.peak_facts`, as the JSON bytes a producer
sends) are appended in batches of 2,000, one transaction per batch, as the service
does with each poll:

- the store: `PostgresLogStore.transaction()` and `append(batch)`, i.e. the appender
  lock, the chain head, dedupe (optimistic: no duplicate here), positions, SHA-256
  hash chain and one binary COPY per batch under a savepoint;
- the baseline: a bare psycopg connection COPYing (binary) the very rows the store
  writes (positions and hashes computed beforehand, outside the clock) into an
  identical table (`LIKE records INCLUDING ALL`: same keys, index and check), one
  transaction per batch.

Each is run three times, alternately, into fresh tables; the best run of each counts.
`python benchmarks/store_bench.py` runs it alone. PostgreSQL comes from `servers.py`:
RECONCILER_BENCH_PG_DSN, else RECONCILER_TEST_PG_DSN, else an embedded server.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from psycopg import sql

from reconciler.runtime import tune_for_throughput
from reconciler.store import NewRecord, PostgresLogStore
from reconciler.store.batch import ChainHead, plan_append
from servers import fresh_schema, postgres_dsn
from workload import peak_facts

if TYPE_CHECKING:
    from collections.abc import Sequence

    from reconciler.store.batch import InsertRow

FACTS = 200_000
BATCH = 2_000
RUNS = 3
SOURCES = 4
Row = TypeVar("Row")
COPY_TYPES = ("int8", "text", "text", "text", "bytea", "text", "bytea", "bytea")


@dataclass(frozen=True)
class StoreFigure:
    """Both rates over the same rows, measured in the same run."""

    facts: int
    store_rate: float
    copy_rate: float

    @property
    def ratio(self) -> float:
        """The store's rate over raw COPY's (higher is better; target >= 0.4)."""
        return self.store_rate / self.copy_rate


def fact_records(count: int) -> list[NewRecord]:
    """`count` facts as the engine hands them to the store, spread over 4 sources."""
    return [
        NewRecord(
            "fact",
            fact.event_id,
            fact.type,
            fact.model_dump_json().encode(),
            f"bench:{i % SOURCES}",
        )
        for i, fact in enumerate(peak_facts(count))
    ]


def batches(items: Sequence[Row], size: int) -> list[Sequence[Row]]:
    """`items` cut into runs of `size` (the last may be shorter)."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def store_seconds(dsn: str, schema: str, records: Sequence[NewRecord]) -> float:
    """Seconds to append `records` through the store, one transaction per batch."""
    store = PostgresLogStore(dsn, schema=schema)
    try:
        started = time.perf_counter()
        for batch in batches(records, BATCH):
            with store.transaction() as tx:
                tx.append(batch)
        return time.perf_counter() - started
    finally:
        store.close()


def copy_seconds(dsn: str, schema: str, rows: Sequence[InsertRow]) -> float:
    """Seconds to COPY the precomputed `rows` into a table like the store's, per batch."""
    table = sql.Identifier(schema, "raw_records")
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(
            sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
                table, sql.Identifier(schema, "records")
            )
        )
        statement = sql.SQL(
            "COPY {} (position, kind, record_id, type, payload, source, recorded_hash,"
            " prev_hash) FROM STDIN (FORMAT BINARY)"
        ).format(table)
        cursor = connection.cursor()
        started = time.perf_counter()
        for batch in batches(rows, BATCH):
            with connection.transaction(), cursor.copy(statement) as copy:
                copy.set_types(COPY_TYPES)
                for row in batch:
                    copy.write_row(row)
        return time.perf_counter() - started


def create_tables(dsn: str, schema: str) -> None:
    """The store's schema and tables, empty."""
    store = PostgresLogStore(dsn, schema=schema)
    try:
        store.create_tables()
    finally:
        store.close()


def measure(dsn: str, facts: int = FACTS) -> StoreFigure:
    """The best of `RUNS` alternate runs of each, every run into fresh tables."""
    records = fact_records(facts)
    rows = plan_append(records, (), ChainHead()).rows
    best_store = best_copy = float("inf")
    for run in range(1, RUNS + 1):
        with fresh_schema(dsn, "bench_store") as schema:
            create_tables(dsn, schema)
            best_store = min(best_store, store_seconds(dsn, schema, records))
        with fresh_schema(dsn, "bench_copy") as schema:
            create_tables(dsn, schema)
            best_copy = min(best_copy, copy_seconds(dsn, schema, rows))
        sys.stderr.write(
            f"\r\x1b[Kstore append vs raw COPY: run {run} of {RUNS}, {len(records):,} facts each"
        )
        sys.stderr.flush()
    sys.stderr.write("\n")
    return StoreFigure(len(records), len(records) / best_store, len(rows) / best_copy)


def main() -> None:
    """Measure on the configured or embedded PostgreSQL and print both rates."""
    tune_for_throughput()
    with postgres_dsn() as dsn:
        figure = measure(dsn)
    print(
        f"facts appended to PostgreSQL: {figure.store_rate:,.0f} facts/s\n"
        f"raw psycopg binary COPY of the same rows: {figure.copy_rate:,.0f} rows/s\n"
        f"ratio {figure.ratio:.2f} (target >= 0.4), {figure.facts:,} facts in batches of {BATCH:,}"
    )


if __name__ == "__main__":
    main()
