"""The ingest loop's pipeline, with a scripted consumer and engine: order, commits, failures."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

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


@dataclass
class _Consumer:
    """Answers polls from a script and notes seeks and commits; sets `stop` when done."""

    polls: list[dict[TopicPartition, list[_Record]]]
    stop: threading.Event
    events: list[tuple[str, Any]] = field(default_factory=list)

    def subscribe(self, topics: list[str], listener: object) -> None:
        """Subscribed to everything at once: both partitions are assigned."""

    def assignment(self) -> set[TopicPartition]:
        return {TP0, TP1}

    def poll(self, **_: int) -> dict[TopicPartition, list[_Record]]:
        if not self.polls:
            self.stop.set()
            return {}
        return self.polls.pop(0)

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
    rules: object = None

    def process(self, batch: Sequence[InputRecord], *_: Mapping[str, int]) -> BatchOutcome:
        first = batch[0]
        if first.position in self.stale:
            self.events.append(("stale", first.locator))
            raise StaleBatchError(first.source, first.position, first.position + 1)
        self.events.append(("logged", [record.locator for record in batch]))
        return BatchOutcome()

    def restore(self, source: str) -> int:
        self.events.append(("restore", source))
        return 0

    def forget(self, source: str) -> None:
        """Nothing is held per source here."""

    def sources(self) -> list[str]:
        return []


class _Store:
    def positions(self) -> dict[str, int]:
        return {}


def _run(
    polls: list[dict[TopicPartition, list[_Record]]], stale: set[int] | None = None
) -> list[tuple[str, Any]]:
    stop = threading.Event()
    consumer = _Consumer(polls, stop)
    engine = _Engine(consumer.events, stale or set())
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
