"""The consumer loop: Kafka records into the log, exactly once, one transaction per poll.

Each partition of the input topics is a source with its own decider state. Its Kafka
position (`topic:partition` -> next offset) is stored in the same transaction as the
facts it produced, and each batch is fenced against that position, so a process that
lost its partition cannot write it after the new owner did. On assignment, and after any
failure, a partition's state is rebuilt from its facts in the log and the consumer is
moved to the position the log holds: the database decides where to resume, and Kafka's
committed offsets are only a hint for tools.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from eventsourcing.persistence import PersistenceError

from reconciler.domain.decisions import Case, CaseEscalated, CaseResolved
from reconciler.domain.state import Refund, RefundStatus
from reconciler.engine import StaleBatchError
from reconciler.ingest.source import InputRecord
from reconciler.kafka_io._kafka import (
    ConsumerRebalanceListener,
    KafkaError,
    OffsetAndMetadata,
    TopicPartition,
)

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from kafka import KafkaConsumer
    from kafka.consumer.fetcher import ConsumerRecord

    from reconciler.engine import BatchOutcome, Engine
    from reconciler.service.metrics import ServiceMetrics
    from reconciler.store import LogStore

log = structlog.get_logger("reconciler.ingest")

# The writer hands the GIL over at each of a batch's database round trips and must win
# it back from the polling thread after each: with Python's default 5 ms interval, a
# batch's write took about 1.4 times as long (measured on 2 busy cores).
WRITER_SWITCH_INTERVAL_S = 0.001
KAFKA_RETRY_S = 0.5  # pause after a poll that could not reach the broker


def source_of(partition: TopicPartition) -> str:
    """The log's name for a partition: `topic:partition`."""
    return f"{partition.topic}:{partition.partition}"


@dataclass(frozen=True, slots=True)
class _Batch:
    """One poll's records of ready partitions, validated, with where each partition ends."""

    records: list[InputRecord]
    next_offsets: dict[TopicPartition, int]
    # Each source's first offset in the batch: the log must not have passed it.
    expected: dict[str, int]
    # How far each partition's broker end is past the batch.
    lag: dict[TopicPartition, int]


class IngestLoop:
    """Polls, logs and decides until stopped; survives store outages and rebalances.

    One batch is written at a time, by a writer thread, while this loop polls and
    validates the next: PostgreSQL's COPY and commit of one batch overlap Kafka's fetch
    and decoding of the next (psycopg lets go of the GIL while it waits). Batches are
    still written one after another in poll order, and Kafka hears of a batch only
    after its transaction committed.
    """

    def __init__(  # noqa: PLR0913 - the loop's collaborators and limits
        self,
        engine: Engine,
        store: LogStore,
        consumer: KafkaConsumer,
        metrics: ServiceMetrics,
        *,
        max_records: int = 2000,
        poll_timeout_ms: int = 200,
        retry_max_s: float = 30.0,
        on_decided: Callable[[], object] | None = None,
    ) -> None:
        """Consume with `consumer` into `engine` over `store`; call `on_decided` on decisions."""
        self._engine = engine
        self._store = store
        self._consumer = consumer
        self._metrics = metrics
        self._max_records = max_records
        self._poll_timeout_ms = poll_timeout_ms
        self._retry_max_s = retry_max_s
        self._on_decided = on_decided
        self._ready: set[TopicPartition] = set()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer")
        self._in_flight: tuple[_Batch, Future[None]] | None = None
        self._store_down = False

    def run(self, topics: Sequence[str], stop: threading.Event) -> None:
        """Subscribe to `topics` and process batches until `stop` is set."""
        self._consumer.subscribe(list(topics), listener=_Listener(self))
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(switch_interval, WRITER_SWITCH_INTERVAL_S))
        try:
            while not stop.is_set():
                self._step(stop)
        finally:
            try:
                self._commit_hint(self._settle())
            finally:
                self._writer.shutdown()
                sys.setswitchinterval(switch_interval)

    def close(self) -> None:
        """Free the engine's states and their archives' temporary files, once `run` is done."""
        self._engine.close()

    def _step(self, stop: threading.Event) -> None:
        """Resync what needs it, poll, and hand the batch to the writer once it is free."""
        assignment = set(self._consumer.assignment())
        if lost := self._ready - assignment:
            # Taken away with no revocation callback (the group dropped this member while
            # the broker was unreachable): forget them, as `revoked` would have.
            self._commit_hint(self._settle())
            self._forget(lost)
            log.info("partitions_lost", sources=sorted(map(source_of, lost)))
        if pending := assignment - self._ready:
            # A resync reads the log and resets states: nothing may be in flight.
            self._commit_hint(self._settle())
            if not self._store_down:
                self._resync_or_note_outage(sorted(pending))
        batch, written = None, {}
        if not self._store_down:
            polled = self._poll(stop, self._poll_timeout_ms)
            batch = self._decode(polled) if polled else None
            written = self._settle()
        if self._store_down:
            # Whatever was polled meanwhile is dropped: the recovery seeks back to the log.
            self._store_down = False
            self._recover(stop)
        elif batch is not None:
            if all(partition in self._ready for partition in batch.next_offsets):
                self._in_flight = (batch, self._writer.submit(self._write, batch))
            else:
                self._drop(batch)
        # Only now, so that the writer does not wait for Kafka's answer.
        self._commit_hint(written)

    def _poll(
        self, stop: threading.Event, timeout_ms: int
    ) -> Mapping[TopicPartition, list[ConsumerRecord]]:
        """Poll Kafka; nothing if the broker cannot be reached (retried at the next step).

        kafka-python raises when it cannot reach the group coordinator (a broker
        restarting, a cut network). Nothing is lost: the batch in flight settles as usual
        and fetching resumes from the consumer's positions once the broker answers.
        """
        try:
            polled: Mapping[TopicPartition, list[ConsumerRecord]] = self._consumer.poll(
                timeout_ms=timeout_ms, max_records=self._max_records
            )
        except KafkaError as error:
            self._metrics.kafka_errors.inc()
            log.warning("poll_failed", error=str(error), retry_in_s=KAFKA_RETRY_S)
            stop.wait(KAFKA_RETRY_S)
            return {}
        return polled

    def _resync_or_note_outage(self, partitions: list[TopicPartition]) -> None:
        """Resync `partitions`; if the store does not answer, the loop recovers next."""
        try:
            self._resync(partitions)
        except (PersistenceError, OSError) as error:
            self._metrics.store_errors.inc()
            log.warning("store_unavailable", error=str(error))
            self._store_down = True

    # -- partitions -------------------------------------------------------------------

    def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        """New partitions are rebuilt from the log by the loop, before its next poll."""
        log.info("partitions_assigned", sources=sorted(map(source_of, partitions)))

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop the state of partitions another process takes over, once the writer is done.

        Runs in kafka-python's network thread: it waits for the batch in flight but
        leaves its outcome (and the offset commit) to the loop.
        """
        if self._in_flight is not None:
            wait([self._in_flight[1]])
        self._forget(partitions)

    def _forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop the states of partitions this process no longer holds (none in flight)."""
        for partition in partitions:
            self._ready.discard(partition)
            self._engine.forget(source_of(partition))

    def _resync(self, partitions: list[TopicPartition]) -> None:
        positions = self._store.positions()
        for partition in partitions:
            source = source_of(partition)
            replayed = self._engine.restore(source)
            stored = positions.get(source)
            if stored is None:
                self._consumer.seek_to_beginning(partition)
            else:
                self._consumer.seek(partition, stored)
            self._ready.add(partition)
            log.info("partition_ready", source=source, replayed_facts=replayed, resume_at=stored)

    # -- batches ----------------------------------------------------------------------

    def _decode(self, polled: Mapping[TopicPartition, list[ConsumerRecord]]) -> _Batch | None:
        """Validate the records of ready partitions into a batch; None if there are none."""
        records: list[InputRecord] = []
        next_offsets: dict[TopicPartition, int] = {}
        expected: dict[str, int] = {}
        lag: dict[TopicPartition, int] = {}
        for partition, polled_records in polled.items():
            if partition not in self._ready or not polled_records:
                continue
            source = source_of(partition)
            raws = [r.value or b"" for r in polled_records]
            offsets = [r.offset for r in polled_records]
            records += InputRecord.from_raws(source, offsets, raws)
            next_offset = next_offsets[partition] = polled_records[-1].offset + 1
            expected[source] = polled_records[0].offset
            # Read here, not in the writer: the consumer belongs to this thread.
            highwater = self._consumer.highwater(partition)
            lag[partition] = max(0, highwater - next_offset) if highwater is not None else 0
            self._metrics.records_in.labels(topic=partition.topic).inc(len(polled_records))
        if not records:
            return None
        return _Batch(records, next_offsets, expected, lag)

    def _write(self, batch: _Batch) -> None:
        """In the writer thread: log and decide one batch, then count what it did."""
        positions = {source_of(p): offset for p, offset in batch.next_offsets.items()}
        started = time.perf_counter()
        outcome = self._engine.process(batch.records, positions, batch.expected)
        if outcome.decisions and self._on_decided is not None:
            self._on_decided()  # the relay publishes them now, not at its next poll
        # Counted here, as the transaction commits, so the metrics never lag the log.
        self._record(outcome, len(batch.records), time.perf_counter() - started, batch.lag)

    def _settle(self) -> dict[TopicPartition, int]:
        """Wait for the batch in flight; its offsets to tell Kafka, or none if it failed."""
        if self._in_flight is None:
            return {}
        batch, future = self._in_flight
        self._in_flight = None
        try:
            future.result()
        except StaleBatchError as error:
            log.warning("stale_batch", error=str(error))
            # Rebuilt from the log and sought back to it before the next poll.
            self._ready.difference_update(batch.next_offsets)
            return {}
        except (PersistenceError, OSError) as error:
            self._metrics.store_errors.inc()
            log.warning("store_unavailable", error=str(error))
            self._store_down = True
            return {}
        return {p: offset for p, offset in batch.next_offsets.items() if p in self._ready}

    def _drop(self, batch: _Batch) -> None:
        """Forget a batch polled past a failed one: move its partitions back to its start."""
        for partition in batch.next_offsets:
            if partition in self._ready:
                self._consumer.seek(partition, batch.expected[source_of(partition)])

    def _recover(self, stop: threading.Event) -> None:
        """Pause, retry with backoff until the store answers, then resync everything."""
        assignment = set(self._consumer.assignment())
        partitions = [p for p in self._ready if p in assignment]
        self._consumer.pause(*partitions)
        delay = 0.1
        while not stop.is_set():
            # Polling while paused keeps this process in its group without fetching.
            self._poll(stop, int(delay * 1000))
            try:
                self._resync(list(self._consumer.assignment()))
            except (PersistenceError, OSError) as error:
                log.warning("store_still_unavailable", error=str(error), retry_in_s=delay)
                delay = min(delay * 2, self._retry_max_s)
                continue
            log.info("store_recovered")
            break
        # A rebalance during the outage may have taken some away; resume what is ours.
        self._consumer.resume(*(p for p in partitions if p in self._consumer.assignment()))

    def _record(
        self,
        outcome: BatchOutcome,
        received: int,
        seconds: float,
        lag: Mapping[TopicPartition, int],
    ) -> None:
        metrics = self._metrics
        metrics.facts_appended.inc(outcome.facts_appended)
        metrics.duplicates.inc(outcome.duplicates)
        metrics.dead_letters.inc(len(outcome.rejections))
        metrics.batch_seconds.observe(seconds)
        for decision_type, count in Counter(d.type for d in outcome.decisions).items():
            metrics.decisions.labels(type=decision_type).inc(count)
        self._watch_refund_floods(outcome)
        for partition, behind in lag.items():
            labels = {"topic": partition.topic, "partition": str(partition.partition)}
            metrics.consumer_lag.labels(**labels).set(behind)
        log.info(
            "batch",
            records=received,
            facts=outcome.facts_appended,
            duplicates=outcome.duplicates,
            dead_letters=len(outcome.rejections),
            decisions=len(outcome.decisions),
            seconds=round(seconds, 4),
            lag=sum(lag.values()),
        )

    def _watch_refund_floods(self, outcome: BatchOutcome) -> None:
        """Say loudly when a refund flood is held or released; gauge what is held."""
        for decision in outcome.decisions:
            if isinstance(decision, CaseEscalated) and decision.reason is Case.REFUND_FLOOD:
                self._metrics.refund_flood_incidents.inc()
                log.warning(
                    "refund_flood_incident_opened",
                    incident_id=decision.command_id,
                    first_amount=decision.amount,
                    limit=self._engine.rules.refund_flood_limit,
                    window_s=self._engine.rules.refund_flood_window.total_seconds(),
                )
            elif isinstance(decision, CaseResolved) and decision.reason is Case.REFUND_FLOOD:
                log.warning(
                    "refund_flood_incident_closed",
                    incident_id=decision.escalation_id,
                    outcome=decision.outcome,
                    operator=decision.operator,
                )
        # Held refunds all sit under a shard's open incident, and stay in memory with a cold
        # tier: a HELD refund, which also carries the incident's escalation, keeps its whole
        # order out of the archive (archive.py `_settled_refunds`), the incident's orders are
        # busy (`_busy`), and a refund with no order hangs off an orphan debit, never archived.
        # A refund that left HELD but is still listed may be archived: the lookup brings it
        # back, so the count is right either way.
        held: list[Refund] = []
        for source in self._engine.sources():
            state = self._engine.state(source)
            if state.incident is not None:
                refunds = (state.refunds[refund_id] for refund_id in state.incident.held)
                held += [r for r in refunds if r.status is RefundStatus.HELD]
        self._metrics.refunds_held.set(len(held))
        self._metrics.refunds_held_rupiah.set(sum(refund.amount for refund in held))

    def _commit_hint(self, next_offsets: Mapping[TopicPartition, int]) -> None:
        """Tell Kafka how far we got, after the database did; a failure here is harmless."""
        if not next_offsets:
            return
        offsets = {p: OffsetAndMetadata(offset, "", -1) for p, offset in next_offsets.items()}
        try:
            self._consumer.commit(offsets)
        except KafkaError as error:
            log.info("offset_commit_skipped", error=str(error))


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python is untyped
    def __init__(self, loop: IngestLoop) -> None:
        self._loop = loop

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self._loop.revoked(revoked)

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._loop.assigned(assigned)
