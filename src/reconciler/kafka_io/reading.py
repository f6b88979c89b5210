"""The true end of a partition's log, and its last records.

`KafkaConsumer.end_offsets()` asks the broker (ListOffsets, latest). Kafka answers
with the log end; the Tansu broker answers with the first offset of the last record
batch plus one, which is less than the log end whenever that batch holds more than one
record. So the answer is only a lower bound here: a dedicated consumer, in no group,
seeks to it and fetches. A fetch from inside a batch returns that whole batch, so the
first records fetched for a partition reach the end it had when it was asked; a
partition that gives nothing for `idle_ms` ends at the bound. The result is exact on
both brokers, and the wait is bounded even while producers keep writing.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

from reconciler.kafka_io._kafka import KafkaConsumer, TopicPartition

if TYPE_CHECKING:
    from collections.abc import Iterable

IDLE_MS = 500
REQUEST_TIMEOUT_MS = 15_000
# A poll returns everything fetched for a partition, so a partially returned batch
# never makes a partition look settled.
_MAX_RECORDS = 1_000_000
# Client settings copied from a consumer given instead of a bootstrap string, so the
# dedicated reader connects the same way (TLS, SASL).
_CONNECTION_KEYS = ("bootstrap_servers", "security_protocol", "client_id", "api_version")
_CONNECTION_PREFIXES = ("ssl_", "sasl_")


class ConsumerRecord(Protocol):
    """The fields of kafka-python's `ConsumerRecord` the helpers return (as typed reads)."""

    @property
    def topic(self) -> str:
        """The topic the record was read from."""

    @property
    def partition(self) -> int:
        """The partition the record was read from."""

    @property
    def offset(self) -> int:
        """The record's offset in its partition."""

    @property
    def timestamp(self) -> int:
        """The record's timestamp, milliseconds since the epoch."""

    @property
    def key(self) -> bytes | None:
        """The record's key, if it has one."""

    @property
    def value(self) -> bytes | None:
        """The record's value (None for a tombstone)."""

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        """The record's headers, in order."""


def log_end(
    consumer_or_bootstrap: str | Any,  # noqa: ANN401 - or a kafka-python KafkaConsumer (untyped)
    topic_partitions: Iterable[TopicPartition],
    *,
    idle_ms: int = IDLE_MS,
) -> dict[TopicPartition, int]:
    """The true next offset (log end) of each partition: its last record's offset + 1.

    Give a bootstrap string, or a `KafkaConsumer` whose connection settings to reuse;
    the consumer itself is not used, so its positions and group are left alone.
    An empty partition ends at 0 (or at its first offset, after retention).
    """
    partitions = list(dict.fromkeys(topic_partitions))
    if not partitions:
        return {}
    reader = _reader(consumer_or_bootstrap)
    try:
        return _true_ends(reader, partitions, idle_ms)
    finally:
        reader.close()


def read_tail(
    bootstrap: str, topic: str, partition: int, count: int, *, idle_ms: int = IDLE_MS
) -> list[ConsumerRecord]:
    """Up to the last `count` records of a partition, oldest first (fewer if it is shorter)."""
    if count <= 0:
        return []
    tp = TopicPartition(topic, partition)
    reader = _reader(bootstrap)
    try:
        end = _true_ends(reader, [tp], idle_ms)[tp]
        beginning: int = reader.beginning_offsets([tp], timeout_ms=REQUEST_TIMEOUT_MS)[tp]
        start = max(end - count, beginning)
        if start >= end:
            return []
        reader.seek(tp, start)
        tail: list[ConsumerRecord] = []
        while True:
            records = reader.poll(timeout_ms=idle_ms, max_records=_MAX_RECORDS).get(tp, [])
            if not records:
                return tail
            tail.extend(r for r in records if start <= r.offset < end)
            if records[-1].offset >= end - 1:
                return tail
    finally:
        reader.close()


def _reader(consumer_or_bootstrap: str | Any) -> Any:  # noqa: ANN401 - kafka-python is untyped
    """A consumer in no group that commits nothing: it only seeks and fetches."""
    if isinstance(consumer_or_bootstrap, str):
        connection: dict[str, Any] = {"bootstrap_servers": consumer_or_bootstrap}
    else:
        config: dict[str, Any] = consumer_or_bootstrap.config
        connection = {
            key: value
            for key, value in config.items()
            if key in _CONNECTION_KEYS or key.startswith(_CONNECTION_PREFIXES)
        }
    return KafkaConsumer(
        **connection,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=REQUEST_TIMEOUT_MS,
    )


def _true_ends(reader: Any, partitions: list[TopicPartition], idle_ms: int) -> dict[Any, int]:  # noqa: ANN401 - kafka-python is untyped
    """Seek `reader` to each partition's reported end, and read on to the true end."""
    ends: dict[Any, int] = dict(reader.end_offsets(partitions, timeout_ms=REQUEST_TIMEOUT_MS))
    reader.assign(partitions)
    for tp in partitions:
        reader.seek(tp, ends[tp])
    unsettled = set(partitions)
    deadline = time.monotonic() + idle_ms / 1000
    while unsettled:
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0:
            break
        fetched = reader.poll(timeout_ms=remaining_ms, max_records=_MAX_RECORDS)
        for tp, records in fetched.items():
            if records:
                ends[tp] = max(ends[tp], records[-1].offset + 1)
                unsettled.discard(tp)
    return ends
