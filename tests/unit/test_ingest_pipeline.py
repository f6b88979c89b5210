"""The ingest loop's pipeline, with a scripted consumer and engine: order, commits, failures."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from eventsourcing.persistence import PersistenceError
from kafka.errors import KafkaConnectionError

from reconciler.engine import BatchOutcome, StaleBatchError
from reconciler.kafka_io._kafka import TopicPartition
from reconciler.service.ingest import IngestLoop
from reconciler.service.metrics import ServiceMetrics

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from reconciler.ingest.source import InputRecord

TP0 = TopicPartition("in", 0)
TP1 = TopicPartition("in", 1)


class _Record(NamedTuple):
    offset: int
    value: bytes


def _records(first: int, count: int) -> list[_Record]:
    return [_Record(offset, b"{not json") for offset in range(first, first + count)]


# A scripted poll: records, an error kafka-python raises, or a change of assignment.
Poll = dict[TopicPartition, list[_Record]] | Exception | set[TopicPartition]


@dataclass
class _Consumer:
    """Answers polls from a script and notes seeks and commits; sets `stop` when done."""

    polls: list[Poll]
    stop: threading.Event
    events: list[tuple[str, Any]] = field(default_factory=list)
    assigned: set[TopicPartition] = field(default_factory=lambda: {TP0, TP1})

    def subscribe(self, topics: list[str], listener: object) -> None:
        """Subscribed to everything at once: both partitions are assigned."""

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def poll(self, **_: int) -> dict[TopicPartition, list[_Record]]:
        if not self.polls:
            self.stop.set()
            return {}
        polled = self.polls.pop(0)
        if isinstance(polled, Exception):
            raise polled
        if isinstance(polled, set):  # the group moved partitions, with no callback
            self.assigned = polled
            return {}
        return polled

    def pause(self, *partitions: TopicPartition) -> None:
        for partition in partitions:
            if partition not in self.assigned:  # as kafka-python's subscription state does
                raise KeyError(partition)
        self.events.append(("pause", sorted(p.partition for p in partitions)))

    def resume(self, *partitions: TopicPartition) -> None:
        self.events.append(("resume", sorted(p.partition for p in partitions)))

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.events.append(("seek", (partition.partition, offset)))

    def seek_to_beginning(self, partition: TopicPartition) -> None:
        self.events.append(("seek", (partition.partition, 0)))

    def highwater(self, _partition: TopicPartition) -> int | None:
        return None

    def commit(self, offsets: Mapping[TopicPartition, Any]) -> None:
        committed = {tp.partition: meta.offset for tp, meta in offsets.items()}
        self.events.append(("commit", committed))


@dataclass
class _Engine:
    """Notes each batch it is given; fails the ones listed in `stale` (by first offset)."""

    events: list[tuple[str, Any]]
    stale: set[int] = field(default_factory=set)
    down: set[int] = field(default_factory=set)  # first offsets whose batch finds no store
    rules: object = None

    def process(self, batch: Sequence[InputRecord], *_: Mapping[str, int]) -> BatchOutcome:
        first = batch[0]
        if first.position in self.down:
            self.down.discard(first.position)
            self.events.append(("store down", first.locator))
            msg = "connection refused"
            raise PersistenceError(msg)
        if first.position in self.stale:
            self.events.append(("stale", first.locator))
            raise StaleBatchError(first.source, first.position, first.position + 1)
        self.events.append(("logged", [record.locator for record in batch]))
        return BatchOutcome()

    def restore(self, source: str) -> int:
        self.events.append(("restore", source))
        return 0

    def forget(self, source: str) -> None:
        self.events.append(("forget", source))

    def sources(self) -> list[str]:
        return []


class _Store:
    def positions(self) -> dict[str, int]:
        return {}


def _run(
    polls: Sequence[Poll], stale: set[int] | None = None, down: set[int] | None = None
) -> list[tuple[str, Any]]:
    stop = threading.Event()
    consumer = _Consumer(list(polls), stop)
    engine = _Engine(consumer.events, stale or set(), down or set())
    loop = IngestLoop(engine, _Store(), consumer, ServiceMetrics())  # type: ignore[arg-type]
    loop.run(["in"], stop)
    return consumer.events


def test_batches_are_logged_in_poll_order_and_committed_to_kafka_after_the_log() -> None:
    """Each batch is logged before Kafka hears its offsets, and batches keep their poll order."""
    events = _run([{TP0: _records(0, 2)}, {TP0: _records(2, 1), TP1: _records(0, 1)}])
    logged = [event for event in events if event[0] == "logged"]
    commits = [event for event in events if event[0] == "commit"]
    assert logged == [("logged", ["in:0:0", "in:0:1"]), ("logged", ["in:0:2", "in:1:0"])]
    assert commits == [("commit", {0: 2}), ("commit", {0: 3, 1: 1})]
    # The next batch may be written before Kafka hears of the one before, never after.
    assert events.index(logged[0]) < events.index(commits[0])
    assert events.index(logged[1]) < events.index(commits[1])


def test_a_stale_batch_drops_the_batch_polled_after_it_and_seeks_back() -> None:
    """After a stale batch, the next one is not logged: its partitions go back to where it began."""
    polls = [{TP0: _records(5, 2)}, {TP0: _records(7, 1), TP1: _records(3, 2)}, {}]
    events = _run(polls, stale={5})
    after_stale = events[events.index(("stale", "in:0:5")) :]
    assert not [event for event in after_stale if event[0] in {"logged", "commit"}]
    # partition 1 is sought back to its first dropped record; partition 0 is rebuilt
    assert after_stale[1:] == [("seek", (1, 3)), ("restore", "in:0"), ("seek", (0, 0))]


def test_a_poll_that_cannot_reach_the_broker_is_retried_and_loses_nothing() -> None:
    """kafka-python raising on an unreachable broker pauses the loop; it then goes on."""
    unreachable = KafkaConnectionError("111 ECONNREFUSED")
    events = _run([{TP0: _records(0, 2)}, unreachable, unreachable, {TP0: _records(2, 1)}])
    logged = [locators for kind, locators in events if kind == "logged"]
    commits = [offsets for kind, offsets in events if kind == "commit"]
    assert logged == [["in:0:0", "in:0:1"], ["in:0:2"]]
    assert commits == [{0: 2}, {0: 3}]


def test_partitions_lost_without_a_callback_are_forgotten_and_never_paused() -> None:
    """A partition the group took away silently leaves the loop; a later outage spares it."""
    # The recovery's own poll (paused) takes the empty one.
    events = _run([{TP0: _records(0, 1)}, {TP1}, {}, {TP1: _records(0, 1)}], down={0})
    assert ("forget", "in:0") in events
    assert ("pause", [1]) in events  # the store outage pauses what this process still holds
    assert ("pause", [0]) not in events
    assert ["in:1:0"] in [locators for kind, locators in events if kind == "logged"]
