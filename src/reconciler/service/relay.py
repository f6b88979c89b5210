"""The outbox relay: the log's commands and dead letters, published to Kafka once each.

The decisions in the log are the outbox. One process relays at a time (a leader lock).
It publishes in log order with acks from all replicas, then records how far it got in
the store. A relay killed between the two would publish some commands again, so when it
starts leading it reads the tail of every output partition: each published record
carries its log position in a header, and anything a partition already holds is skipped.
Every command's partition follows from its key, so that check is exact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from reconciler.domain.decisions import DECISION_MODELS
from reconciler.kafka_io import partition_for, read_tail

if TYPE_CHECKING:
    from kafka import KafkaProducer

    from reconciler.service.leader import LeaderLock
    from reconciler.service.metrics import ServiceMetrics
    from reconciler.store import LogStore, StoredRecord

log = structlog.get_logger("reconciler.relay")

COMMANDS_POSITION = "relay:commands"
DEAD_LETTERS_POSITION = "relay:dead-letters"
POSITION_HEADER = "log_position"
DEAD_LETTER_HEADER = "dead_letter_id"
TAIL = 500  # records per partition read back at start; more than one relay batch


@dataclass(frozen=True)
class RelayTopics:
    """Where commands and dead letters go."""

    bootstrap: str
    commands: str
    dead_letters: str


class Relay:
    """Publishes what the log holds beyond what Kafka holds, while it leads."""

    def __init__(
        self,
        store: LogStore,
        producer: KafkaProducer,
        topics: RelayTopics,
        lock: LeaderLock,
        metrics: ServiceMetrics,
    ) -> None:
        """Relay from `store` to `topics` with `producer`, leading under `lock`."""
        self._store = store
        self._producer = producer
        self._topics = topics
        self._lock = lock
        self._metrics = metrics
        self._published: dict[int, int] | None = None  # commands partition -> last position
        self._dead_letters_published = 0

    def relay_once(self, limit: int = 1000) -> int:
        """Publish the next commands and dead letters; returns how many were sent."""
        if not self._lock.try_acquire():
            self._published = None  # another process may publish meanwhile: re-read
            return 0
        if self._published is None:
            self._resume()
        return self._relay_commands(limit) + self._relay_dead_letters(limit)

    def close(self) -> None:
        """Stop leading: release the lock so another process can relay at once."""
        self._lock.release()
        self._published = None

    def _resume(self) -> None:
        partitions = sorted(self._producer.partitions_for(self._topics.commands) or ())
        published = {}
        for partition in partitions:
            tail = read_tail(self._topics.bootstrap, self._topics.commands, partition, TAIL)
            published[partition] = max((_header_int(r, POSITION_HEADER) for r in tail), default=0)
        self._published = published
        dead = read_tail(self._topics.bootstrap, self._topics.dead_letters, 0, TAIL)
        stored = self._store.positions().get(DEAD_LETTERS_POSITION, 0)
        self._dead_letters_published = max(
            [stored, *(_header_int(r, DEAD_LETTER_HEADER) for r in dead)]
        )
        log.info("relay_resumed", commands=published, dead_letters=self._dead_letters_published)

    def _relay_commands(self, limit: int) -> int:
        published = self._published
        assert published is not None  # noqa: S101 - _resume ran first
        after = self._store.positions().get(COMMANDS_POSITION, 0)
        if published:
            after = max(after, min(published.values()))
        records = list(self._store.read(after=after, limit=limit, kind="decision"))
        sends: list[Any] = []
        for record in records:
            sends.extend(self._publish_command(record, published))
        self._confirm(sends)
        if records:
            with self._store.transaction() as tx:
                tx.set_positions({COMMANDS_POSITION: records[-1].position})
        return len(sends)

    def _confirm(self, sends: list[Any]) -> None:
        """Wait for every send's acknowledgement; on any failure, forget what was assumed.

        The next round then reads the output partitions' tails again, so a record whose
        send failed is sent again and one that did arrive is not.
        """
        self._producer.flush()
        try:
            for send in sends:
                send.get(timeout=30)
        except Exception:
            self._published = None
            raise

    def _publish_command(self, record: StoredRecord, published: dict[int, int]) -> list[Any]:
        decision = DECISION_MODELS[record.type].model_validate_json(record.payload)
        command = decision.command()
        if command is None:
            return []
        key = str(command.get("order_id") or command.get("payment_id") or command["command_id"])
        partition = partition_for(key.encode(), len(published)) if published else 0
        if published.get(partition, 0) >= record.position:
            return []  # this partition holds it already: published before a restart
        send = self._producer.send(
            self._topics.commands,
            key=key.encode(),
            value=json.dumps(command, separators=(",", ":")).encode(),
            partition=partition,
            headers=[
                (POSITION_HEADER, str(record.position).encode()),
                ("command_id", command["command_id"].encode()),
            ],
        )
        published[partition] = record.position
        self._metrics.commands_published.labels(type=command["type"]).inc()
        return [send]

    def _relay_dead_letters(self, limit: int) -> int:
        letters = self._store.dead_letters(after_id=self._dead_letters_published, limit=limit)
        sends = []
        for letter in letters:
            send = self._producer.send(
                self._topics.dead_letters,
                key=letter.source.encode(),
                value=letter.raw,
                partition=0,
                headers=[
                    (DEAD_LETTER_HEADER, str(letter.id).encode()),
                    ("reason", letter.reason.encode()),
                    ("source", letter.source.encode()),
                    ("locator", letter.locator.encode()),
                ],
            )
            sends.append(send)
        self._confirm(sends)
        if letters:
            self._dead_letters_published = letters[-1].id
            with self._store.transaction() as tx:
                tx.set_positions({DEAD_LETTERS_POSITION: letters[-1].id})
        return len(letters)


def _header_int(record: object, name: str) -> int:
    """An integer header of a consumed record, 0 when absent."""
    for key, value in getattr(record, "headers", None) or ():
        if key == name:
            return int(value)
    return 0
