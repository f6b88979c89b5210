"""The Kafka baseline: how fast bare kafka-python consumes a filled topic.

A service that consumes from Kafka is compared with this figure, measured on the same
broker and records in the same run: a fresh group, a poll loop of up to 2,000 records
per poll, and nothing done with the records. The clock starts at the first record
received, so the group join (about 3 s on Tansu) is not counted.

`python benchmarks/kafka_baseline.py` uses the broker RECONCILER_TEST_KAFKA names, or
else starts a Tansu broker, fills a topic with 200,000 small JSON records and prints
both rates.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.kafka_io import consumer_config, create_topics, produce_all
from reconciler.kafka_io._kafka import KafkaConsumer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

RECORDS = 200_000
PARTITIONS = 4
MAX_RECORDS = 2_000
STALL_TIMEOUT_S = 30.0


class ConsumeStalledError(RuntimeError):
    """No record arrived for too long before the expected number was consumed."""


def fill_topic(
    bootstrap: str, topic: str, lines: Iterable[bytes], key_of: Callable[[bytes], bytes | None]
) -> int:
    """Produce each line as a record keyed by `key_of(line)`, acks="all"; the number produced."""
    return produce_all(bootstrap, topic, ((key_of(line), line, None) for line in lines))


def bare_consume_rate(bootstrap: str, topic: str, expected: int) -> float:
    """Records per second of a fresh group consuming `expected` records of `topic`.

    Counted from the first record received (the join excluded): the records of every
    poll after the first, over the time since the first returned.
    """
    consumer = KafkaConsumer(topic, **consumer_config(bootstrap, f"bench-{uuid.uuid4().hex}"))
    try:
        received = 0
        started = 0.0
        counted = 0
        last_progress = time.perf_counter()
        while received < expected:
            polled = consumer.poll(timeout_ms=1_000, max_records=MAX_RECORDS)
            now = time.perf_counter()
            batch = sum(len(records) for records in polled.values())
            if batch == 0:
                if now - last_progress > STALL_TIMEOUT_S:
                    message = f"{received} of {expected} records after {STALL_TIMEOUT_S:g} s idle"
                    raise ConsumeStalledError(message)
                continue
            last_progress = now
            if received == 0:
                started = now
            else:
                counted += batch
            received += batch
        elapsed = time.perf_counter() - started
    finally:
        consumer.close()
    return counted / elapsed if elapsed > 0 else float("inf")


def small_json_lines(count: int) -> Iterator[bytes]:
    """`count` small JSON records, about 100 bytes each, over count // 4 order ids."""
    for i in range(count):
        record = {"event_id": f"e-{i}", "order_id": f"o-{i // 4}", "amount": 10_000 + i % 97}
        yield json.dumps(record, separators=(",", ":")).encode()


def order_key(line: bytes) -> bytes:
    """The record key of a small JSON record: its order id."""
    order_id: str = json.loads(line)["order_id"]
    return order_id.encode()


def measure(bootstrap: str) -> None:
    """Fill a new topic on `bootstrap` and print the fill and bare consume rates."""
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, {topic: PARTITIONS})
    started = time.perf_counter()
    produced = fill_topic(bootstrap, topic, small_json_lines(RECORDS), order_key)
    fill_seconds = time.perf_counter() - started
    fill_rate = produced / fill_seconds
    print(f"filled {produced:,} records into {PARTITIONS} partitions: {fill_rate:,.0f}/s")
    rate = bare_consume_rate(bootstrap, topic, produced)
    print(
        f"bare kafka-python consume (fresh group, max_records={MAX_RECORDS}): {rate:,.0f} records/s"
    )


def main() -> None:
    """Measure on the configured broker, or on a Tansu broker started for the run."""
    configured = os.environ.get("RECONCILER_TEST_KAFKA")
    if configured:
        measure(configured)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.kafka_broker import TansuBroker  # noqa: PLC0415 - needs the repository on sys.path

    with TansuBroker() as broker:
        print(f"Tansu broker at {broker.bootstrap}")
        measure(broker.bootstrap)


if __name__ == "__main__":
    main()
