from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from reconciler.kafka_io import (
    TopicMismatchError,
    TopicPartition,
    consumer_config,
    create_topics,
    log_end,
    murmur2,
    partition_for,
    produce_all,
    read_tail,
)
from reconciler.kafka_io._kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

if TYPE_CHECKING:
    from collections.abc import Callable

    TopicFactory = Callable[[str, int], str]


def _partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(topics)}
    finally:
        admin.close()


def _consume(consumer: Any, expected: int, timeout_polls: int = 60) -> list[Any]:
    records: list[Any] = []
    for _ in range(timeout_polls):
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
        if len(records) >= expected:
            break
    return records


def test_create_topics_is_idempotent(kafka_bootstrap: str) -> None:
    """Creating existing topics again is fine, and new ones in the same call are created."""
    first, second = f"io-a-{uuid.uuid4().hex[:8]}", f"io-b-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, {first: 3})
    create_topics(kafka_bootstrap, {first: 3, second: 2})
    assert _partition_counts(kafka_bootstrap, [first, second]) == {first: 3, second: 2}


def test_create_topics_refuses_another_partition_count(
    kafka_bootstrap: str, kafka_topic_factory: TopicFactory
) -> None:
    """An existing topic with another partition count is an error, not silently kept."""
    topic = kafka_topic_factory("io-mismatch", 2)
    with pytest.raises(TopicMismatchError, match="has 2 partitions, not 4"):
        create_topics(kafka_bootstrap, {topic: 4})


@given(st.binary(max_size=64))
def test_murmur2_matches_kafka_python(key: bytes) -> None:
    """Our murmur2 is kafka-python's, byte for byte, for any key."""
    assert murmur2(key) == kafka_python_murmur2(key)


def test_partition_for_matches_the_producer(
    kafka_bootstrap: str, kafka_topic_factory: TopicFactory
) -> None:
    """For keyed records without a partition, kafka-python's producer picks partition_for(key)."""
    partitions = 7
    topic = kafka_topic_factory("io-route", partitions)
    keys = [f"payment-{i}".encode() for i in range(60)] + [b"", b"a", b"ab", b"abc"]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        futures = [producer.send(topic, key=key, value=b"x") for key in keys]
        producer.flush()
        chosen = [future.get(timeout=10).partition for future in futures]
    finally:
        producer.close()
    assert chosen == [partition_for(key, partitions) for key in keys]
    assert len(set(chosen)) == partitions


def test_partition_for_rejects_no_partitions() -> None:
    """A topic has at least one partition; asking for zero is a caller's error."""
    with pytest.raises(ValueError, match="at least one partition"):
        partition_for(b"key", 0)


def test_produce_all_then_consume_in_a_group_and_commit(
    kafka_bootstrap: str, kafka_topic_factory: TopicFactory
) -> None:
    """Records produced with headers are consumed by a group, and its commit is kept."""
    topic = kafka_topic_factory("io-group", 3)
    sent = [(f"k{i}".encode(), f"v{i}".encode(), [("n", str(i).encode())]) for i in range(30)]
    assert produce_all(kafka_bootstrap, topic, sent) == 30

    group = f"io-group-{uuid.uuid4().hex[:8]}"
    consumer = KafkaConsumer(topic, **consumer_config(kafka_bootstrap, group))
    try:
        records = _consume(consumer, 30)
        consumer.commit()
        positions = {tp: consumer.position(tp) for tp in consumer.assignment()}
    finally:
        consumer.close()
    got = sorted((r.key, r.value, r.headers) for r in records)
    assert got == sorted((k, v, h) for k, v, h in sent)
    assert all(r.partition == partition_for(r.key, 3) for r in records)

    # A new member of the group reads the commits back without joining.
    member = KafkaConsumer(**consumer_config(kafka_bootstrap, group))
    try:
        committed = {tp: member.committed(tp) for tp in positions}
    finally:
        member.close()
    assert committed == positions
    assert sum(committed.values()) == 30


def test_consumer_config_joins_fast_and_commits_explicitly() -> None:
    """Consumers use a 6 s session (fast joins), commit explicitly, and start at the earliest."""
    config = consumer_config("broker:9092", "g")
    assert config == {
        "bootstrap_servers": "broker:9092",
        "group_id": "g",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 1000,
    }


def test_log_end_is_exact_after_several_batches(
    kafka_bootstrap: str, kafka_topic_factory: TopicFactory
) -> None:
    """log_end is last offset + 1 after multi-record and single-record batches, 0 when empty."""
    topic = kafka_topic_factory("io-end", 3)
    p0, p1, p2 = (TopicPartition(topic, p) for p in range(3))
    for size in (5, 1, 7, 3):  # each produce_all call flushes, so each is a batch of its own
        produce_all(kafka_bootstrap, topic, [(None, b"x", None)] * size, partition=0)
    for size in (4, 1):
        produce_all(kafka_bootstrap, topic, [(None, b"y", None)] * size, partition=1)

    assert log_end(kafka_bootstrap, [p0, p1, p2]) == {p0: 16, p1: 5, p2: 0}

    consumer = KafkaConsumer(**consumer_config(kafka_bootstrap, f"io-end-{uuid.uuid4().hex}"))
    try:
        assert log_end(consumer, [p0]) == {p0: 16}
        assert consumer.assignment() == set()
    finally:
        consumer.close()
    assert log_end(kafka_bootstrap, []) == {}


def test_read_tail_gives_the_last_records_oldest_first(
    kafka_bootstrap: str, kafka_topic_factory: TopicFactory
) -> None:
    """read_tail returns the last `count` records with their headers, or all if fewer."""
    topic = kafka_topic_factory("io-tail", 2)
    for batch in range(3):
        produce_all(
            kafka_bootstrap,
            topic,
            (
                (
                    None,
                    f"r{batch * 10 + i}".encode(),
                    [("command-id", f"c{batch * 10 + i}".encode())],
                )
                for i in range(10)
            ),
            partition=1,
        )

    tail = read_tail(kafka_bootstrap, topic, 1, 12)
    assert [r.offset for r in tail] == list(range(18, 30))
    assert [r.value for r in tail] == [f"r{i}".encode() for i in range(18, 30)]
    assert [r.headers for r in tail] == [[("command-id", f"c{i}".encode())] for i in range(18, 30)]
    assert {(r.topic, r.partition) for r in tail} == {(topic, 1)}

    assert [r.offset for r in read_tail(kafka_bootstrap, topic, 1, 100)] == list(range(30))
    assert read_tail(kafka_bootstrap, topic, 1, 0) == []
    assert read_tail(kafka_bootstrap, topic, 0, 5) == []
