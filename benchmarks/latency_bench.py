"""Tick to command: how long after a tick its commands reach the commands topic, under load.

The service runs as in production (`build_service`: ticker ON, relay ON, 2,000 records
per poll) in a thread of this process, on a fresh topic (4 partitions), group and
PostgreSQL schema, with ISSUE_SLA set to 2 s. A producer thread sends a steady load of
orders paid and never issued (an `OrderPlaced` and a `PaymentDebited`, keyed by order),
1,000 facts/s for 60 s by default, so every tick of every partition makes the `IssueStamps`
of the orders paid two seconds before it due. A consumer thread reads the commands topic
(assigned, not a group, so no join delays the first records; the project's consumer
settings otherwise).

What is measured, per `IssueStamps` command: the wall time the benchmark's consumer
received its record, minus the wall time the ticker sent the tick that made it due (the
tick record's producer timestamp, CreateTime). The tick is found through the log: the
command's `log_position` header names its decision, whose source is the input partition
and whose `at` is the clock of that partition's tick (SPEC, Time). Also reported: the part
up to the relay's send (the command record's own CreateTime), which leaves out the
measuring consumer's fetch. The commands a tick makes due in one partition (about 125)
reach the consumer together, so the p99 of ~30,000 commands is about the third-worst of
the ~240 partition ticks: a second of the machine's worst contention shows in it.

The baseline, in the same run and process on the same broker before the service starts:
a bare kafka-python round trip, one small record every 20 ms for 15 s sent with the
project's producer settings and received by a consumer with the same settings as the
commands consumer; its latency is the receipt time minus the record's CreateTime. A
tick's command needs at least two such hops (the tick to the service, the command to the
consumer), plus a PostgreSQL transaction and the relay's polling.

`python benchmarks/latency_bench.py [--rate FACTS_PER_S] [--seconds N]` runs it alone.
Kafka and PostgreSQL come from `servers.py`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.service_support

from tests.service_support import service_in_thread, service_settings

from reconciler.bootstrap import service_topics
from reconciler.domain.events import OrderPlaced, PaymentDebited
from reconciler.domain.rules import Rules
from reconciler.kafka_io import (
    TopicPartition,
    consumer_config,
    create_topics,
    log_end,
    producer_config,
)
from reconciler.kafka_io._kafka import KafkaConsumer, KafkaProducer
from reconciler.logging import configure_logging
from reconciler.runtime import tune_for_throughput
from reconciler.service.relay import POSITION_HEADER
from reconciler.service.settings import ServiceSettings
from reconciler.store import PostgresLogStore
from servers import fresh_schema, kafka_bootstrap, postgres_dsn
from terminal import progress
from workload import one_stamp_order

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

PARTITIONS = 4
RATE = 1_000  # facts per second: 500 orders, so 500 IssueStamps a second once due
SECONDS = 60.0
ISSUE_SLA = timedelta(seconds=2)
BASELINE_INTERVAL_S = 0.02
BASELINE_SECONDS = 15.0
READY_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 60.0
POLL_MS = 100
TARGET_MS = 1_000.0


@dataclass(frozen=True)
class Distribution:
    """Latencies in milliseconds: how many, and their percentiles (nearest rank)."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Distribution:
        """The distribution of `values` (at least one)."""
        ordered = sorted(values)

        def rank(share: float) -> float:
            return ordered[max(0, math.ceil(len(ordered) * share) - 1)]

        return cls(len(ordered), rank(0.50), rank(0.95), rank(0.99), ordered[-1])

    def line(self) -> str:
        """`p50 … ms, p95 …, p99 …, max …, n = …`."""
        return (
            f"p50 {self.p50:,.0f} ms, p95 {self.p95:,.0f}, p99 {self.p99:,.0f},"
            f" max {self.max:,.0f} (n = {self.count:,})"
        )


@dataclass(frozen=True)
class Latency:
    """Tick to command under load, beside the bare round trip measured in the same run."""

    commands: Distribution  # the tick's send to the command's receipt
    to_relay_send: Distribution  # the tick's send to the relay's send of the command
    bare: Distribution  # produce to receipt, bare kafka-python
    facts_per_s: float  # the load as produced
    seconds: float
    issue_sla_s: float
    cpu_share: float  # this process's CPU time over the load's wall time (2 = both cores)
    unmatched: int  # commands whose tick could not be found (should be 0)

    @property
    def ratio(self) -> float:
        """p99 over the bare round trip's p99 (lower is better)."""
        return self.commands.p99 / self.bare.p99

    def as_json(self) -> dict[str, Any]:
        """For results.json."""
        return asdict(self) | {"ratio": self.ratio, "target_ms": TARGET_MS}


@dataclass(frozen=True)
class Received:
    """A record as the measuring consumer got it."""

    received_ms: float
    created_ms: float
    position: int


class Watcher:
    """A thread that reads every partition of a topic from its start, stamping each record."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        """Assign every partition of `topic`; start with `start()`."""
        config = consumer_config(bootstrap, f"bench-latency-{uuid.uuid4().hex}")
        self._consumer = KafkaConsumer(**config)
        assigned = [TopicPartition(topic, number) for number in range(partitions)]
        self._consumer.assign(assigned)
        self._consumer.seek_to_beginning(*assigned)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch {topic}", daemon=True)
        self.received: list[Received] = []

    def start(self) -> None:
        """Start reading."""
        self._thread.start()

    def stop(self) -> None:
        """Stop reading and close the consumer."""
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                polled = self._consumer.poll(timeout_ms=POLL_MS)
                received_ms = time.time() * 1000  # wall clock, as the producers' CreateTime
                for records in polled.values():
                    self.received.extend(
                        Received(received_ms, r.timestamp, _position(r)) for r in records
                    )
        finally:
            self._consumer.close()


def _position(record: Any) -> int:  # noqa: ANN401 - kafka-python's records are untyped
    """The relay's log position header, 0 when absent."""
    for key, value in record.headers or ():
        if key == POSITION_HEADER:
            return int(value)
    return 0


def paced(interval_s: float, seconds: float) -> Iterator[int]:
    """Yield 0, 1, 2, … at a steady `interval_s`, for `seconds`; late steps are not skipped."""
    started = time.perf_counter()
    step = 0
    while (due := step * interval_s) < seconds:
        if (wait := started + due - time.perf_counter()) > 0:
            time.sleep(wait)
        yield step
        step += 1


def bare_round_trip(bootstrap: str) -> Distribution:
    """Produce to receipt of small records, kafka-python alone, with our settings."""
    topic = f"bench-rt-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, {topic: PARTITIONS})
    watcher = Watcher(bootstrap, topic, PARTITIONS)
    watcher.start()
    producer = KafkaProducer(**producer_config(bootstrap))
    sent = 0
    try:
        for step in paced(BASELINE_INTERVAL_S, BASELINE_SECONDS):
            producer.send(topic, key=str(step).encode(), value=b"{}")
            sent += 1
        producer.flush()
        _wait_for(lambda: len(watcher.received) >= sent, DRAIN_TIMEOUT_S, "the round trips")
    finally:
        producer.close()
        watcher.stop()
    return Distribution.of([r.received_ms - r.created_ms for r in watcher.received])


def order_facts(run: str, number: int) -> tuple[bytes, list[bytes]]:
    """An order paid in full and never issued: its key, its OrderPlaced and PaymentDebited."""
    now = datetime.now(UTC)
    order_id = f"LAT-{run}-{number:08d}"
    placed = OrderPlaced.model_validate(one_stamp_order(order_id, now))
    paid = PaymentDebited(
        event_id=f"p-{order_id}",
        version=1,
        occurred_at=now,
        payment_id=f"PAY-{run}-{number:08d}",
        order_id=order_id,
        amount=12_500,
        method="QRIS",
        payer_ref="p",
        source="callback",
    )
    return order_id.encode(), [placed.model_dump_json().encode(), paid.model_dump_json().encode()]


def produce_load(
    bootstrap: str, topic: str, facts_per_s: float, seconds: float
) -> tuple[int, float]:
    """Send paid, never issued orders at a steady rate; the orders sent and the seconds taken."""
    run = uuid.uuid4().hex[:6]
    producer = KafkaProducer(**producer_config(bootstrap))
    orders = 0
    started = time.perf_counter()
    try:
        for number in paced(2 / facts_per_s, seconds):
            key, values = order_facts(run, number)
            for value in values:
                producer.send(topic, key=key, value=value)
            orders += 1
            if number % 500 == 0:
                progress(f"load: {orders:,} orders ({2 * orders:,} facts)")
        producer.flush()
    finally:
        producer.close()
    return orders, time.perf_counter() - started


def tick_times(bootstrap: str, topic: str) -> dict[tuple[int, datetime], float]:
    """Each tick in the input topic: (partition, at) -> its producer timestamp, ms."""
    partitions = [TopicPartition(topic, number) for number in range(PARTITIONS)]
    ends = log_end(bootstrap, partitions)
    consumer = KafkaConsumer(**consumer_config(bootstrap, f"bench-ticks-{uuid.uuid4().hex}"))
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    ticks: dict[tuple[int, datetime], float] = {}
    try:
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            for tp, records in consumer.poll(timeout_ms=1_000, max_records=2_000).items():
                for record in records:
                    if record.key is not None:
                        continue  # producers key their facts; the ticker's ticks have no key
                    event = json.loads(record.value)
                    if event.get("type") == "ClockTicked":
                        key = (tp.partition, datetime.fromisoformat(event["at"]))
                        ticks[key] = min(ticks.get(key, record.timestamp), record.timestamp)
    finally:
        consumer.close()
    return ticks


def decision_clocks(dsn: str, schema: str) -> dict[int, tuple[int, datetime]]:
    """Each IssuanceCommanded in the log: position -> (input partition, engine clock)."""
    store = PostgresLogStore(dsn, schema=schema)
    try:
        return {
            record.position: (
                int(record.source.rsplit(":", 1)[1]),
                datetime.fromisoformat(json.loads(record.payload)["at"]),
            )
            for record in store.read(kind="decision")
            if record.type == "IssuanceCommanded"
        }
    finally:
        store.close()


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `condition` every 0.1 s; fail naming `what` after `timeout_s`."""
    deadline = time.perf_counter() + timeout_s
    while not condition():
        if time.perf_counter() > deadline:
            message = f"timed out after {timeout_s:g} s waiting for {what}"
            raise TimeoutError(message)
        time.sleep(0.1)


@dataclass
class ServiceRun:
    """What one run of the service under load left to correlate."""

    commands: list[Received]
    orders: int
    seconds: float
    cpu_seconds: float  # this process's, while the load ran
    ticks: dict[tuple[int, datetime], float]
    decisions: dict[int, tuple[int, datetime]]


def run_service(
    bootstrap: str, dsn: str, schema: str, facts_per_s: float, seconds: float
) -> ServiceRun:
    """Run the service under the load; the commands received, and the ticks and decisions."""
    topic = f"bench-latency-{uuid.uuid4().hex[:8]}"
    settings = service_settings(
        dsn,
        schema,
        bootstrap,
        topic,
        input_partitions=PARTITIONS,
        batch_max_records=ServiceSettings.model_fields["batch_max_records"].default,
        ticker=True,
        relay=True,
    )
    # The topics as build_service makes them, made first so the watcher can be assigned.
    create_topics(bootstrap, service_topics(settings))
    watcher = Watcher(bootstrap, settings.commands_topic, PARTITIONS)
    watcher.start()
    store = PostgresLogStore(dsn, schema=schema)
    store.create_tables()
    rules = Rules(issue_sla=ISSUE_SLA, issue_attempt_timeout=timedelta(hours=1))
    try:
        with service_in_thread(settings, rules):
            progress("service joining its group; waiting for a tick logged in every partition")
            _wait_for(
                lambda: sum(s.startswith(f"{topic}:") for s in store.positions()) == PARTITIONS,
                READY_TIMEOUT_S,
                "the service",
            )
            cpu_started = time.process_time()
            orders, took = produce_load(bootstrap, topic, facts_per_s, seconds)
            cpu_seconds = time.process_time() - cpu_started
            progress(f"load sent: {orders:,} orders in {took:.1f} s; waiting for their commands")
            _wait_for(
                lambda: len(watcher.received) >= orders, DRAIN_TIMEOUT_S, f"{orders:,} commands"
            )
    finally:
        watcher.stop()
        store.close()
    progress(f"service done: {len(watcher.received):,} commands received\n")
    return ServiceRun(
        watcher.received,
        orders,
        took,
        cpu_seconds,
        tick_times(bootstrap, topic),
        decision_clocks(dsn, schema),
    )


def correlate(run: ServiceRun) -> tuple[list[float], list[float], int]:
    """Per IssueStamps command: tick to receipt and tick to relay send, ms; and how many missed."""
    to_receipt: list[float] = []
    to_send: list[float] = []
    unmatched = 0
    seen: set[int] = set()
    for command in run.commands:
        if command.position in seen:
            continue  # published again (a relay restart): the first copy counts
        seen.add(command.position)
        clock = run.decisions.get(command.position)
        tick_ms = run.ticks.get(clock) if clock is not None else None
        if tick_ms is None:
            unmatched += 1
            continue
        to_receipt.append(command.received_ms - tick_ms)
        to_send.append(command.created_ms - tick_ms)
    return to_receipt, to_send, unmatched


def measure(
    bootstrap: str, dsn: str, facts_per_s: float = RATE, seconds: float = SECONDS
) -> Latency:
    """The bare round trip, then the service under load; both distributions."""
    progress(f"bare kafka-python round trips for {BASELINE_SECONDS:g} s")
    bare = bare_round_trip(bootstrap)
    progress(f"bare round trip: {bare.line()}\n")
    with fresh_schema(dsn, "bench_latency") as schema:
        run = run_service(bootstrap, dsn, schema, facts_per_s, seconds)
    to_receipt, to_send, unmatched = correlate(run)
    if not to_receipt:
        message = f"no command matched its tick ({len(run.commands)} received)"
        raise RuntimeError(message)
    return Latency(
        Distribution.of(to_receipt),
        Distribution.of(to_send),
        bare,
        2 * run.orders / run.seconds,
        run.seconds,
        ISSUE_SLA.total_seconds(),
        run.cpu_seconds / run.seconds,
        unmatched,
    )


def report(result: Latency) -> str:
    """The figures, as printed by main and under make bench's table."""
    return (
        f"tick to command, under {result.facts_per_s:,.0f} facts/s of paid, never issued orders"
        f" for {result.seconds:.0f} s (ISSUE_SLA {result.issue_sla_s:g} s), ticker and relay on:\n"
        f"  tick sent -> command received: {result.commands.line()}\n"
        f"  tick sent -> relay's send:     {result.to_relay_send.line()}\n"
        f"  bare kafka-python round trip:  {result.bare.line()}\n"
        f"  p99 {result.commands.p99:,.0f} ms against the target {TARGET_MS:,.0f} ms;"
        f" {result.ratio:.1f}x the bare round trip's p99; {result.unmatched} unmatched.\n"
        f"  This process (service, load, consumer) used {result.cpu_share:.0%} of one core."
    )


def main() -> None:
    """Measure on the configured or started broker and PostgreSQL, and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=RATE, help="facts per second")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="how long the load runs")
    arguments = parser.parse_args()
    tune_for_throughput()
    configure_logging(level=logging.WARNING)  # no line per batch among the progress
    with kafka_bootstrap() as bootstrap, postgres_dsn() as dsn:
        result = measure(bootstrap, dsn, arguments.rate, arguments.seconds)
    print(report(result))


if __name__ == "__main__":
    main()
