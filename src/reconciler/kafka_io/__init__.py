"""Small typed helpers around kafka-python: topics, routing, log ends, producing.

- `create_topics`: make topics exist (idempotently) and wait until they are usable;
- `partition_for`: the partition kafka-python's default partitioner picks for a key;
- `log_end` / `read_tail`: a partition's true end and its last records, exact on
  Kafka and on the Tansu broker the tests use (whose ListOffsets answer is low);
- `produce_all`: produce records durably (acks="all") and wait for them;
- `consumer_config` / `producer_config`: the settings our consumers and producers use.
"""

from __future__ import annotations

from reconciler.kafka_io._kafka import TopicPartition
from reconciler.kafka_io.errors import (
    KafkaIoError,
    ProduceError,
    TopicMismatchError,
    TopicNotReadyError,
)
from reconciler.kafka_io.partitioning import murmur2, partition_for
from reconciler.kafka_io.producing import (
    Headers,
    OutgoingRecord,
    consumer_config,
    produce_all,
    producer_config,
)
from reconciler.kafka_io.reading import ConsumerRecord, log_end, read_tail
from reconciler.kafka_io.topics import create_topics

__all__ = [
    "ConsumerRecord",
    "Headers",
    "KafkaIoError",
    "OutgoingRecord",
    "ProduceError",
    "TopicMismatchError",
    "TopicNotReadyError",
    "TopicPartition",
    "consumer_config",
    "create_topics",
    "log_end",
    "murmur2",
    "partition_for",
    "produce_all",
    "producer_config",
    "read_tail",
]
