"""The service's parts against a real broker and PostgreSQL: dead letters, clock, metrics."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from structlog.testing import capture_logs

from reconciler.domain.rules import Rules
from reconciler.kafka_io import consumer_config, partition_for, produce_all, read_tail
from reconciler.kafka_io._kafka import (
    KafkaConsumer,
    KafkaProducer,
    OffsetAndMetadata,
    TopicPartition,
)
from reconciler.service.leader import PostgresLeaderLock
from reconciler.service.metrics import ServiceMetrics
from reconciler.service.ticker import Ticker
from reconciler.store import PostgresLogStore
from tests.builders import DEBIT_RECORD
from tests.kafka_broker import free_port
from tests.service_support import service_in_thread, service_settings, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.postgres

ORDER = {
    "event_id": "o1",
    "type": "OrderPlaced",
    "version": 1,
    "occurred_at": "2024-09-04T10:00:00+07:00",
    "order_id": "A1",
    "customer_ref": "c",
    "quantity": 1,
    "unit_price": 10000,
    "unit_fee": 2500,
    "total": 12500,
    "expires_at": "2024-09-04T10:30:00+07:00",
    "channel": "web",
}
TICK = {
    "event_id": "t1",
    "type": "ClockTicked",
    "version": 1,
    "occurred_at": "2024-09-04T10:00:00+07:00",
    "at": "2024-09-04T10:00:00+07:00",
}


def test_bad_records_go_to_the_dead_letter_table_and_topic(
    pg_dsn: str,
    pg_schema: str,
    kafka_bootstrap: str,
    kafka_topic_factory: Callable[[str, int], str],
) -> None:
    """Rejected records keep their reason and bytes in the table and topic; the rest flows."""
    topic = kafka_topic_factory("dlq", 1)
    bad = [b"{not json", json.dumps(ORDER | {"quantity": "1"}).encode(), b'{"type": "Nope"}']
    good = [json.dumps(TICK).encode(), json.dumps(ORDER).encode()]
    records = [(None, value, None) for value in [good[0], *bad, good[1]]]
    produce_all(kafka_bootstrap, topic, records, partition=0)
    settings = service_settings(pg_dsn, pg_schema, kafka_bootstrap, topic, input_partitions=1)
    store = PostgresLogStore(pg_dsn, schema=pg_schema)
    with service_in_thread(settings) as service:
        wait_until(lambda: store.positions().get(f"{topic}:0") == 5, 60, "all five records")
        wait_until(
            lambda: store.positions().get("relay:dead-letters", 0) >= 3, 30, "dead letters relayed"
        )
        assert service.metrics.dead_letters._value.get() == 3  # noqa: SLF001 - reading a metric
    letters = store.dead_letters()
    facts = [record.record_id for record in store.read(kind="fact")]
    store.close()
    assert [letter.raw for letter in letters] == bad
    assert [letter.locator for letter in letters] == [f"{topic}:0:{n}" for n in (1, 2, 3)]
    assert "not JSON" in letters[0].reason
    assert "field 'quantity'" in letters[1].reason
    assert "unknown type 'Nope'" in letters[2].reason
    assert facts == ["t1", "o1"]
    published = read_tail(kafka_bootstrap, settings.dead_letter_topic, 0, 100)
    assert [record.value for record in published] == bad
    reasons = [dict(record.headers)["reason"].decode() for record in published]
    assert reasons == [letter.reason for letter in letters]


def test_ticker_ticks_every_partition_and_only_one_leads(
    pg_dsn: str, kafka_bootstrap: str, kafka_topic_factory: Callable[[str, int], str]
) -> None:
    """One tick per partition per interval, ids naming both; a second ticker stays idle."""
    topic = kafka_topic_factory("ticks", 3)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    moment = datetime(2024, 9, 4, 3, 0, 0, 700_000, tzinfo=UTC)
    lock_name = f"test-ticker/{topic}"
    first_lock = PostgresLeaderLock(pg_dsn, lock_name)
    second_lock = PostgresLeaderLock(pg_dsn, lock_name)
    first = Ticker(producer, [topic], first_lock, ServiceMetrics(), now=lambda: moment)
    second = Ticker(producer, [topic], second_lock, ServiceMetrics(), now=lambda: moment)
    try:
        assert first.tick_once() == 3
        assert second.tick_once() == 0
        first_lock.release()  # the leader goes away
        assert second.tick_once() == 3
    finally:
        second_lock.release()
        producer.close()
    for partition in range(3):
        ticks = [
            json.loads(r.value or b"") for r in read_tail(kafka_bootstrap, topic, partition, 10)
        ]
        expected_id = f"tick/{topic}/{partition}/2024-09-04T03:00:00+00:00"
        assert [tick["event_id"] for tick in ticks] == [expected_id, expected_id]
        assert ticks[0]["at"] == "2024-09-04T03:00:00Z"


def test_metrics_are_served_for_prometheus(
    pg_dsn: str,
    pg_schema: str,
    kafka_bootstrap: str,
    kafka_topic_factory: Callable[[str, int], str],
) -> None:
    """/metrics shows records in, facts, decisions, dead letters and lag; one log line a batch."""
    topic = kafka_topic_factory("metrics", 1)
    later = dict(TICK, event_id="t2", at="2024-09-04T10:10:00+07:00")
    debit = DEBIT_RECORD | {"event_id": "d1", "payer_ref": "p"}
    values = [TICK, ORDER, debit, later]
    records = [(None, json.dumps(v).encode(), None) for v in values] + [(None, b"oops", None)]
    produce_all(kafka_bootstrap, topic, records, partition=0)
    port = free_port()
    settings = service_settings(
        pg_dsn, pg_schema, kafka_bootstrap, topic, input_partitions=1, metrics_port=port
    )
    store = PostgresLogStore(pg_dsn, schema=pg_schema)
    with capture_logs() as logs, service_in_thread(settings):
        wait_until(lambda: store.positions().get(f"{topic}:0") == 5, 60, "all records")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    store.close()
    expected_lines = [
        f'reconciler_records_in_total{{topic="{topic}"}} 5.0',
        "reconciler_facts_appended_total 4.0",
        "reconciler_dead_letters_total 1.0",
        'reconciler_decisions_total{type="IssuanceCommanded"} 1.0',
        f'reconciler_consumer_lag{{partition="0",topic="{topic}"}} 0.0',
    ]
    for line in expected_lines:
        assert line in text
    assert "reconciler_batch_seconds_count" in text
    batches = [entry for entry in logs if entry["event"] == "batch"]
    assert sum(entry["records"] for entry in batches) == 5
    assert sum(entry["dead_letters"] for entry in batches) == 1
    assert {"facts", "decisions", "duplicates", "seconds", "lag"} <= batches[0].keys()


def test_restart_resumes_from_the_logs_positions_not_kafkas(
    pg_dsn: str,
    pg_schema: str,
    kafka_bootstrap: str,
    kafka_topic_factory: Callable[[str, int], str],
) -> None:
    """With the group's Kafka offset rewound to 0, a restart still reads nothing twice."""
    topic = kafka_topic_factory("resume", 1)
    first = [dict(TICK, event_id=f"t{n}", at=f"2024-09-04T10:00:{n:02d}+07:00") for n in range(5)]
    produce_all(kafka_bootstrap, topic, [(None, json.dumps(v).encode(), None) for v in first], 0)
    settings = service_settings(pg_dsn, pg_schema, kafka_bootstrap, topic, input_partitions=1)
    store = PostgresLogStore(pg_dsn, schema=pg_schema)
    with service_in_thread(settings):
        wait_until(lambda: store.positions().get(f"{topic}:0") == 5, 60, "the first records")
    rewind = KafkaConsumer(**consumer_config(kafka_bootstrap, settings.group_id))
    partition = TopicPartition(topic, 0)
    rewind.assign([partition])
    rewind.commit({partition: OffsetAndMetadata(0, "", -1)})
    rewind.close()
    later = [dict(TICK, event_id=f"u{n}", at=f"2024-09-04T10:01:{n:02d}+07:00") for n in range(3)]
    produce_all(kafka_bootstrap, topic, [(None, json.dumps(v).encode(), None) for v in later], 0)
    with service_in_thread(settings) as service:
        wait_until(lambda: store.positions().get(f"{topic}:0") == 8, 60, "the later records")
        records_in = service.metrics.records_in.labels(topic=topic)._value.get()  # noqa: SLF001
        duplicates = service.metrics.duplicates._value.get()  # noqa: SLF001
    facts = [record.record_id for record in store.read(kind="fact")]
    store.close()
    assert records_in == 3
    assert duplicates == 0
    assert facts == [f"t{n}" for n in range(5)] + [f"u{n}" for n in range(3)]


def test_live_clock_moves_deadlines_in_every_partition(
    pg_dsn: str,
    pg_schema: str,
    kafka_bootstrap: str,
    kafka_topic_factory: Callable[[str, int], str],
) -> None:
    """With the ticker on, wall-clock ticks reach every partition and deadlines fall due."""
    topic = kafka_topic_factory("live", 2)
    now = datetime.now(UTC).isoformat()
    order = dict(ORDER, occurred_at=now, expires_at=now)
    debit = {
        "event_id": "d1",
        "type": "PaymentDebited",
        "version": 1,
        "occurred_at": now,
        "payment_id": "P1",
        "order_id": "A1",
        "amount": 12500,
        "method": "QRIS",
        "payer_ref": "p",
        "source": "callback",
    }
    settings = service_settings(
        pg_dsn,
        pg_schema,
        kafka_bootstrap,
        topic,
        input_partitions=2,
        ticker=True,
        tick_interval_s=0.2,
    )
    rules = Rules(issue_sla=timedelta(seconds=1))
    store = PostgresLogStore(pg_dsn, schema=pg_schema)
    with service_in_thread(settings, rules):
        key = b"A1"
        produce_all(
            kafka_bootstrap,
            topic,
            [(key, json.dumps(order).encode(), None), (key, json.dumps(debit).encode(), None)],
            partition=partition_for(key, 2),
        )
        wait_until(
            lambda: any(r.record_id == "A1/issue/1" for r in store.read(kind="decision")),
            60,
            "the issuance command after ISSUE_SLA of wall-clock ticks",
        )
    ticks = {record.source for record in store.read(kind="fact") if record.type == "ClockTicked"}
    store.close()
    assert ticks == {f"{topic}:0", f"{topic}:1"}
