"""End to end through Kafka: records per second through the service, beside bare kafka-python.

One input topic (4 partitions) is filled with ~160,000 registration-peak events
(`workload.peak_facts` as JSON lines), keyed by order as producers key them, with each
tick copied into every partition (`tests.service_support.produce_lines`). Then, in the
same run, on the same broker and records:

- the baseline: a bare kafka-python consumer in a fresh group reads the whole topic and
  does nothing with the records (`kafka_baseline.bare_consume_rate`);
- the service: `reconciler serve` wired as in production (`build_service`), run in a
  thread of this process with a fresh group and a fresh PostgreSQL schema, the ticker
  off and the relay ON (commands go out to Kafka meanwhile), 2,000 records per poll
  and transaction (the service's default). It is timed from the first batch logged
  until the log's stored positions reach the end of every partition.

Both clocks start at the first record, so the group join (~3 s on Tansu) is not counted.

`python benchmarks/service_bench.py` runs it alone (progress on stderr). Kafka and
PostgreSQL come from `servers.py`: configured by RECONCILER_BENCH_KAFKA and
RECONCILER_BENCH_PG_DSN (or RECONCILER_TEST_PG_DSN), else started for the run.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.service_support

from tests.service_support import produce_lines, service_in_thread, service_settings

from kafka_baseline import MAX_RECORDS, bare_consume_rate
from reconciler.kafka_io import TopicPartition, create_topics, log_end
from reconciler.logging import configure_logging
from reconciler.runtime import tune_for_throughput
from reconciler.store import PostgresLogStore
from servers import fresh_schema, kafka_bootstrap, postgres_dsn
from terminal import progress
from workload import peak_facts

RECORDS = 160_000
PARTITIONS = 4
POLL_INTERVAL_S = 0.05
PROGRESS_INTERVAL_S = 1.0
FIRST_RECORD_TIMEOUT_S = 60.0
STALL_TIMEOUT_S = 60.0


class ServiceStalledError(RuntimeError):
    """The service logged nothing for too long before reaching the end of the topic."""


@dataclass(frozen=True)
class EndToEnd:
    """Both rates over the same topic, measured in the same run."""

    records: int
    service_rate: float
    bare_rate: float
    relay: bool

    @property
    def ratio(self) -> float:
        """The service's rate over the bare consumer's (higher is better; target >= 0.7)."""
        return self.service_rate / self.bare_rate


def fill(bootstrap: str, topic: str, records: int) -> dict[str, int]:
    """Fill a new topic with `records` peak events; the end offset of each source."""
    create_topics(bootstrap, {topic: PARTITIONS})
    lines = [fact.model_dump_json().encode() for fact in peak_facts(records)]
    progress(f"filling {topic}: {len(lines):,} events into {PARTITIONS} partitions")
    produced = produce_lines(bootstrap, topic, lines, PARTITIONS)
    partitions = [TopicPartition(topic, number) for number in range(PARTITIONS)]
    ends = {f"{tp.topic}:{tp.partition}": end for tp, end in log_end(bootstrap, partitions).items()}
    if sum(ends.values()) != produced:
        message = f"produced {produced} records but the partitions end at {ends}"
        raise RuntimeError(message)
    progress(f"filled {topic}: {produced:,} records (ticks copied into every partition)\n")
    return ends


def service_rate(  # noqa: PLR0913 - where to run, and how
    bootstrap: str, dsn: str, schema: str, topic: str, ends: dict[str, int], *, relay: bool
) -> float:
    """Records per second the service logs, from its first batch to the end of every partition."""
    settings = service_settings(
        dsn,
        schema,
        bootstrap,
        topic,
        input_partitions=PARTITIONS,
        batch_max_records=MAX_RECORDS,
        relay=relay,
    )
    total = sum(ends.values())
    store = PostgresLogStore(dsn, schema=schema)
    store.create_tables()
    try:
        with service_in_thread(settings):
            started, first = _wait_for_first_batch(store)
            finished = _wait_for_ends(store, ends, (started, first))
    finally:
        store.close()
    progress(f"service logged {total:,} of {total:,} records\n")
    return (total - first) / (finished - started)


def _logged(store: PostgresLogStore, ends: dict[str, int]) -> tuple[int, bool]:
    """How many input records the log holds, and whether every partition is at its end."""
    positions = store.positions()
    stored = [positions.get(source, 0) for source in ends]
    return sum(stored), all(p >= end for p, end in zip(stored, ends.values(), strict=True))


def _wait_for_first_batch(store: PostgresLogStore) -> tuple[float, int]:
    """The time the first batch was seen logged, and how many records it held."""
    deadline = time.perf_counter() + FIRST_RECORD_TIMEOUT_S
    progress("service joining its group")
    while True:
        positions = store.positions()
        now = time.perf_counter()
        logged = sum(positions.values())
        if logged:
            return now, logged
        if now > deadline:
            message = f"the service logged nothing in {FIRST_RECORD_TIMEOUT_S:g} s"
            raise ServiceStalledError(message)
        time.sleep(POLL_INTERVAL_S)


def _wait_for_ends(
    store: PostgresLogStore, ends: dict[str, int], first_batch: tuple[float, int]
) -> float:
    """The time the stored positions were seen at the end of every partition."""
    started, first = first_batch
    total = sum(ends.values())
    last_logged, last_change, last_shown = -1, time.perf_counter(), 0.0
    while True:
        logged, done = _logged(store, ends)
        now = time.perf_counter()
        if done:
            return now
        if logged != last_logged:
            last_logged, last_change = logged, now
        elif now - last_change > STALL_TIMEOUT_S:
            message = f"{logged} of {total} records logged, none for {STALL_TIMEOUT_S:g} s"
            raise ServiceStalledError(message)
        if now - last_shown >= PROGRESS_INTERVAL_S:
            rate = (logged - first) / (now - started) if now > started else 0.0
            progress(f"service logged {logged:,} of {total:,} records (~{rate:,.0f}/s)")
            last_shown = now
        time.sleep(POLL_INTERVAL_S)


def measure(bootstrap: str, dsn: str, records: int = RECORDS, *, relay: bool = True) -> EndToEnd:
    """Fill a topic, then consume it bare and through the service; both rates."""
    topic = f"bench-e2e-{uuid.uuid4().hex[:8]}"
    ends = fill(bootstrap, topic, records)
    total = sum(ends.values())
    progress(f"bare kafka-python consuming {total:,} records")
    bare = bare_consume_rate(bootstrap, topic, total)
    progress(f"bare kafka-python consume: {bare:,.0f} records/s\n")
    with fresh_schema(dsn, "bench_service") as schema:
        through_service = service_rate(bootstrap, dsn, schema, topic, ends, relay=relay)
    return EndToEnd(total, through_service, bare, relay)


def kafka_crc32c() -> str:
    """Which CRC-32C kafka-python checks fetched batches with: it is most of a bare consume."""
    from kafka.record import util  # noqa: PLC0415 - kafka-python's internals, for this note only

    return "pure Python" if util.crc32c_c is None else "C (the crc32c package)"


def main() -> None:
    """Measure on the configured or started broker and PostgreSQL, and print both rates."""
    tune_for_throughput()
    configure_logging(level=logging.WARNING)  # no line per batch among the progress
    relay = "--no-relay" not in sys.argv[1:]
    with kafka_bootstrap() as bootstrap, postgres_dsn() as dsn:
        result = measure(bootstrap, dsn, relay=relay)
    print(
        f"end to end through Kafka (service, relay {'on' if result.relay else 'off'}): "
        f"{result.service_rate:,.0f} records/s\n"
        f"bare kafka-python consume: {result.bare_rate:,.0f} records/s\n"
        f"ratio {result.ratio:.2f} (target >= 0.7), {result.records:,} records; "
        f"kafka-python CRC-32C: {kafka_crc32c()}"
    )


if __name__ == "__main__":
    main()
