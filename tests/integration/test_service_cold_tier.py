"""The service with a tiny cold tier: the same logged decisions as with every order in memory."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg import sql

from reconciler.store import PostgresLogStore
from tests.fault_support import demo_events
from tests.service_support import produce_lines, service_in_thread, service_settings, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from pathlib import Path

    from reconciler.store import StoredRecord

pytestmark = pytest.mark.postgres

PARTITIONS = 2
COLD_AFTER = 5


@pytest.fixture
def schemas(pg_dsn: str, pg_schema: str) -> Iterator[tuple[str, str]]:
    """Two fresh schemas for one test (pg_schema and another), dropped afterwards."""
    second = f"test_{uuid.uuid4().hex[:16]}"
    yield pg_schema, second
    with psycopg.connect(pg_dsn, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(second))
        )


@pytest.fixture
def demo_day(tmp_path: Path) -> list[bytes]:
    """A small demo day's events as JSONL lines."""
    return demo_events(tmp_path / "events.jsonl", orders=120)


def serve(  # noqa: PLR0913 - where, what, and how cold
    pg_dsn: str,
    schema: str,
    bootstrap: str,
    topic: str,
    lines: Sequence[bytes],
    *,
    cold_after: int,
) -> tuple[dict[str, list[tuple[str, str, str, bytes]]], int]:
    """Serve `lines` until all are logged: each partition's records by kind, orders archived."""
    settings = service_settings(
        pg_dsn,
        schema,
        bootstrap,
        topic,
        input_partitions=PARTITIONS,
        state_cold_after=cold_after,
        relay=False,
    )
    produced = produce_lines(bootstrap, topic, lines, partitions=PARTITIONS)
    store = PostgresLogStore(pg_dsn, schema=schema)
    sources = [f"{topic}:{n}" for n in range(PARTITIONS)]
    try:
        with service_in_thread(settings) as service:
            wait_until(
                lambda: sum(store.positions().get(s, 0) for s in sources) == produced,
                60,
                "every record logged",
            )
            engine = service.ingest._engine  # noqa: SLF001 - how much the cold tier holds
            archived = 0
            for source in sources:
                archive = engine.state(source).archive
                archived += 0 if archive is None else archive.archived_orders
        # Per partition and kind: how facts and decisions interleave depends on batching.
        by_source: dict[str, list[tuple[str, str, str, bytes]]] = {}
        for record in store.read():
            where = f"{record.source.removeprefix(topic)}/{record.kind}"
            by_source.setdefault(where, []).append(_key(record))
    finally:
        store.close()
    return by_source, archived


def _key(record: StoredRecord) -> tuple[str, str, str, bytes]:
    """What a record says, without where the log put it."""
    return record.kind, record.record_id, record.type, record.payload


def test_a_tiny_cold_tier_logs_the_decisions_of_an_all_in_memory_service(
    pg_dsn: str,
    schemas: tuple[str, str],
    kafka_bootstrap: str,
    kafka_topic_factory: Callable[[str, int], str],
    demo_day: list[bytes],
) -> None:
    """A demo day served with state_cold_after=5 logs every decision as with 0, per partition."""
    cold_schema, plain_schema = schemas
    cold_topic = kafka_topic_factory("cold", PARTITIONS)
    cold, archived = serve(
        pg_dsn, cold_schema, kafka_bootstrap, cold_topic, demo_day, cold_after=COLD_AFTER
    )
    plain_topic = kafka_topic_factory("plain", PARTITIONS)
    plain, none_archived = serve(
        pg_dsn, plain_schema, kafka_bootstrap, plain_topic, demo_day, cold_after=0
    )
    assert archived > 0
    assert none_archived == 0
    kinds = sorted(f":{n}/{kind}" for n in range(PARTITIONS) for kind in ("decision", "fact"))
    assert sorted(cold) == sorted(plain) == kinds
    for where, records in plain.items():
        assert cold[where] == records, where
