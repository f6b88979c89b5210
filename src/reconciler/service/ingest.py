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

import time
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
    from collections.abc import Iterable, Mapping, Sequence

    from kafka import KafkaConsumer
    from kafka.consumer.fetcher import ConsumerRecord

    from reconciler.engine import BatchOutcome, Engine
    from reconciler.service.metrics import ServiceMetrics
    from reconciler.store import LogStore

log = structlog.get_logger("reconciler.ingest")


def source_of(partition: TopicPartition) -> str:
    """The log's name for a partition: `topic:partition`."""
    return f"{partition.topic}:{partition.partition}"


class IngestLoop:
    """Polls, logs and decides until stopped; survives store outages and rebalances."""

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
    ) -> None:
        """Consume with `consumer` into `engine` over `store`."""
        self._engine = engine
        self._store = store
        self._consumer = consumer
        self._metrics = metrics
        self._max_records = max_records
        self._poll_timeout_ms = poll_timeout_ms
        self._retry_max_s = retry_max_s
        self._ready: set[TopicPartition] = set()

    def run(self, topics: Sequence[str], stop: threading.Event) -> None:
        """Subscribe to `topics` and process batches until `stop` is set."""
        self._consumer.subscribe(list(topics), listener=_Listener(self))
        while not stop.is_set():
            if pending := set(self._consumer.assignment()) - self._ready:
                try:
                    self._resync(sorted(pending))
                except (PersistenceError, OSError) as error:
                    self._metrics.store_errors.inc()
                    log.warning("store_unavailable", error=str(error))
                    self._recover(stop)
                    continue
            polled = self._consumer.poll(
                timeout_ms=self._poll_timeout_ms, max_records=self._max_records
            )
            if polled:
                self._handle(polled, stop)

    # -- partitions -------------------------------------------------------------------

    def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        """New partitions are rebuilt from the log by the loop, before its next poll."""
        log.info("partitions_assigned", sources=sorted(map(source_of, partitions)))

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop the state of partitions another process takes over."""
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

    def _handle(
        self, polled: Mapping[TopicPartition, list[ConsumerRecord]], stop: threading.Event
    ) -> None:
        batch: list[InputRecord] = []
        next_offsets: dict[TopicPartition, int] = {}
        expected: dict[str, int] = {}
        for partition, records in polled.items():
            if partition not in self._ready or not records:
                continue
            source = source_of(partition)
            batch.extend(InputRecord.from_raw(source, r.offset, r.value or b"") for r in records)
            next_offsets[partition] = records[-1].offset + 1
            expected[source] = records[0].offset
            self._metrics.records_in.labels(topic=partition.topic).inc(len(records))
        if not batch:
            return
        positions = {source_of(p): offset for p, offset in next_offsets.items()}
        started = time.perf_counter()
        try:
            outcome = self._engine.process(batch, positions, expected)
        except StaleBatchError as error:
            log.warning("stale_batch", error=str(error))
            self._resync([p for p in polled if p in self._ready])
            return
        except (PersistenceError, OSError) as error:
            self._metrics.store_errors.inc()
            log.warning("store_unavailable", error=str(error))
            self._recover(stop)
            return
        self._record(outcome, len(batch), time.perf_counter() - started, next_offsets)
        self._commit_hint(next_offsets)

    def _recover(self, stop: threading.Event) -> None:
        """Pause, retry with backoff until the store answers, then resync everything."""
        partitions = list(self._ready)
        self._consumer.pause(*partitions)
        delay = 0.1
        while not stop.is_set():
            # Polling while paused keeps this process in its group without fetching.
            self._consumer.poll(timeout_ms=int(delay * 1000))
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
        next_offsets: Mapping[TopicPartition, int],
    ) -> None:
        metrics = self._metrics
        metrics.facts_appended.inc(outcome.facts_appended)
        metrics.duplicates.inc(outcome.duplicates)
        metrics.dead_letters.inc(len(outcome.rejections))
        metrics.batch_seconds.observe(seconds)
        for decision in outcome.decisions:
            metrics.decisions.labels(type=decision.type).inc()
        self._watch_refund_floods(outcome)
        lag = 0
        for partition, next_offset in next_offsets.items():
            highwater = self._consumer.highwater(partition)
            behind = max(0, highwater - next_offset) if highwater is not None else 0
            labels = {"topic": partition.topic, "partition": str(partition.partition)}
            metrics.consumer_lag.labels(**labels).set(behind)
            lag += behind
        log.info(
            "batch",
            records=received,
            facts=outcome.facts_appended,
            duplicates=outcome.duplicates,
            dead_letters=len(outcome.rejections),
            decisions=len(outcome.decisions),
            seconds=round(seconds, 4),
            lag=lag,
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
        held: list[Refund] = []  # held refunds all sit under a shard's open incident
        for source in self._engine.sources():
            state = self._engine.state(source)
            if state.incident is not None:
                refunds = (state.refunds[refund_id] for refund_id in state.incident.held)
                held += [r for r in refunds if r.status is RefundStatus.HELD]
        self._metrics.refunds_held.set(len(held))
        self._metrics.refunds_held_rupiah.set(sum(refund.amount for refund in held))

    def _commit_hint(self, next_offsets: Mapping[TopicPartition, int]) -> None:
        """Tell Kafka how far we got, after the database did; a failure here is harmless."""
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
