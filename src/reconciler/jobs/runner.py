"""The jobs' Kafka loop: commands in, provider calls, result facts out, then the commit.

A consumer group (default "reconciler-jobs") reads the commands topic. For each command
record, in partition order, the runner:

1. handles it (the provider calls, with their retries, see `handlers`);
2. produces the result fact to the input topic, keyed by the command's order id (its
   payment id when it has none), with acks from all in-sync replicas, and waits;
3. commits the record's offset.

A runner killed between 1 and 3 handles the command again after its restart (or another
runner of the group does): the provider's idempotency key makes the second call return
the first answer, and the result's `event_id` is the same, so the engine keeps one.
If producing or committing fails, the partition is rewound to the record, and the
runner tries again after a backoff: a command is never skipped.
Records that are not commands (not JSON, missing fields) are logged and committed:
nothing could ever handle them.

After each poll, the runner asks the dispatcher to `recover` issuances whose outcome was
unknown (see `handlers`): each late `StampIssued` found is produced to the input topic
like a result, keyed by its order id, and acknowledged only once the broker has it; one
that could not be produced is offered again later. With nothing parked this costs
nothing. Parked commands live in this process's memory: see `handlers` for what a
restart forgets.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from reconciler.jobs.handlers import Dispatched, InvalidCommandError
from reconciler.kafka_io import consumer_config, producer_config
from reconciler.kafka_io._kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    from reconciler.jobs.handlers import Dispatcher
    from reconciler.kafka_io import ConsumerRecord

log = structlog.get_logger("reconciler.jobs")

DEFAULT_GROUP = "reconciler-jobs"
PRODUCE_TIMEOUT_S = 30.0
POLL_TIMEOUT_MS = 500
MAX_POLL_RECORDS = 10
_FAILURE_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)


@dataclass(frozen=True)
class RunnerHooks:
    """Test seams: called after the provider call (before producing) and before the commit.

    A hook that raises stops the runner right there, as a crash would: nothing after it
    happens, the offset is not committed.
    """

    after_handle: Callable[[ConsumerRecord, Dispatched], None] | None = None
    before_commit: Callable[[ConsumerRecord, Dispatched], None] | None = None


class JobRunner:
    """Consumes commands, dispatches them, publishes their results, commits; one at a time."""

    def __init__(  # noqa: PLR0913 - the loop's collaborators, each injectable
        self,
        consumer: Any,  # noqa: ANN401 - kafka-python's KafkaConsumer is untyped
        producer: Any,  # noqa: ANN401 - kafka-python's KafkaProducer is untyped
        dispatcher: Dispatcher,
        input_topic: str,
        *,
        hooks: RunnerHooks | None = None,
        produce_timeout_s: float = PRODUCE_TIMEOUT_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """Read with `consumer` (subscribed), write results to `input_topic` with `producer`."""
        self._consumer = consumer
        self._producer = producer
        self._dispatcher = dispatcher
        self._input_topic = input_topic
        self._hooks = hooks or RunnerHooks()
        self._produce_timeout_s = produce_timeout_s
        self._monotonic = monotonic
        self._failures = 0
        self.handled = 0
        self.recovered = 0

    @classmethod
    def connect(  # noqa: PLR0913 - where to read and write, and how
        cls,
        bootstrap: str,
        commands_topic: str,
        input_topic: str,
        dispatcher: Dispatcher,
        *,
        group_id: str = DEFAULT_GROUP,
        hooks: RunnerHooks | None = None,
        max_poll_records: int = MAX_POLL_RECORDS,
        command_budget_s: float = 60.0,
    ) -> JobRunner:
        """A runner with its own consumer (in `group_id`) and durable producer.

        `command_budget_s` is the longest one command may take (the retry deadline plus
        a call's timeout); the group's poll interval allows a whole poll of them.
        """
        config = consumer_config(bootstrap, group_id)
        config["max_poll_records"] = max_poll_records
        config["max_poll_interval_ms"] = max(
            300_000, int(2_000 * command_budget_s * max_poll_records)
        )
        consumer = KafkaConsumer(**config)
        consumer.subscribe([commands_topic])
        try:
            producer = KafkaProducer(**producer_config(bootstrap))
        except BaseException:
            consumer.close(autocommit=False)
            raise
        return cls(consumer, producer, dispatcher, input_topic, hooks=hooks)

    def poll_once(self, timeout_ms: int = POLL_TIMEOUT_MS) -> int:
        """Handle one poll's records; the number of records handled and committed.

        A record whose result could not be produced or committed is not lost: its
        partition is rewound to it, and `failed` (the number of such partitions this
        poll) grows the backoff `run` waits.
        """
        batch: dict[Any, list[ConsumerRecord]] = self._consumer.poll(timeout_ms=timeout_ms)
        done = 0
        failed = 0
        for tp, records in batch.items():
            for record in records:
                try:
                    self._process(tp, record)
                except Exception:
                    log.exception(
                        "command_retry_later",
                        topic=record.topic,
                        partition=record.partition,
                        offset=record.offset,
                    )
                    self._rewind(tp, record.offset)
                    failed += 1
                    break
                done += 1
        self._failures = self._failures + 1 if failed else 0
        self.handled += done
        self.recover()
        return done

    def recover(self) -> int:
        """Produce the late results of issuances whose outcome was unknown; how many.

        A late fact that could not be produced stays with the dispatcher, offered again
        on a later call. Never raises: a failure is logged, and tried again later.
        """
        try:
            found = self._dispatcher.recover()
        except Exception:
            log.exception("issuance_recovery_failed")
            return 0
        published = 0
        for dispatched in found:
            fact = dispatched.fact
            assert fact is not None  # noqa: S101 - recover gives facts
            try:
                self._publish(dispatched)
            except Exception:
                log.exception("issuance_recovery_retry_later", command_id=dispatched.command_id)
                continue
            self._dispatcher.acknowledge(dispatched)
            published += 1
            log.info(
                "issuance_recovered",
                command_id=dispatched.command_id,
                order_id=dispatched.key,
                event_id=fact.event_id,
                serials=len(getattr(fact, "serial_numbers", ())),
                inquiries=dispatched.attempts,
            )
        self.recovered += published
        return published

    def run(self, stop: threading.Event, *, poll_timeout_ms: int = POLL_TIMEOUT_MS) -> None:
        """Poll and handle until `stop` is set, then close the clients."""
        log.info("jobs_started", input_topic=self._input_topic)
        try:
            while not stop.is_set():
                try:
                    self.poll_once(poll_timeout_ms)
                except Exception:
                    log.exception("poll_failed")
                    self._failures += 1
                if self._failures:
                    step = min(self._failures, len(_FAILURE_BACKOFF_S)) - 1
                    stop.wait(_FAILURE_BACKOFF_S[step])
        finally:
            self.close()
            log.info(
                "jobs_stopped",
                handled=self.handled,
                recovered=self.recovered,
                counts=dict(self._dispatcher.counts),
            )
            if self._dispatcher.parked:
                log.warning("issuance_parked_forgotten", command_ids=list(self._dispatcher.parked))

    def close(self) -> None:
        """Close the consumer (without committing anything) and the producer."""
        try:
            self._consumer.close(autocommit=False)
        finally:
            self._producer.close()

    def _process(self, tp: Any, record: ConsumerRecord) -> None:  # noqa: ANN401 - kafka's TopicPartition
        started = self._monotonic()
        where = {"partition": record.partition, "offset": record.offset}
        try:
            command = _decode(record.value)
            dispatched = self._dispatcher.dispatch(command)
        except InvalidCommandError as error:
            self._commit(tp, record)
            log.error("command_invalid", reason=str(error), **where)  # noqa: TRY400 - expected
            return
        if dispatched.fact is None:
            self._commit(tp, record)
            log.info(
                "command_ignored",
                command_id=dispatched.command_id,
                type=dispatched.command_type,
                **where,
            )
            return
        if self._hooks.after_handle is not None:
            self._hooks.after_handle(record, dispatched)
        self._publish(dispatched)
        if self._hooks.before_commit is not None:
            self._hooks.before_commit(record, dispatched)
        self._commit(tp, record)
        log.info(
            "command_handled",
            **dispatched.log_fields(),
            ms=round((self._monotonic() - started) * 1000),
            **where,
        )

    def _publish(self, dispatched: Dispatched) -> None:
        """Produce a result fact to the input topic, keyed by order, and wait for the ack."""
        fact = dispatched.fact
        assert fact is not None  # noqa: S101 - only results are published
        future = self._producer.send(
            self._input_topic,
            key=(dispatched.key or fact.event_id).encode(),
            value=fact.model_dump_json().encode(),
            headers=[("command_id", (dispatched.command_id or "").encode())],
        )
        future.get(timeout=self._produce_timeout_s)

    def _commit(self, tp: Any, record: ConsumerRecord) -> None:  # noqa: ANN401 - kafka's TopicPartition
        self._consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})

    def _rewind(self, tp: Any, offset: int) -> None:  # noqa: ANN401 - kafka's TopicPartition
        """Go back to `offset`, if the partition is still ours (a rebalance may have moved it)."""
        try:
            if tp in self._consumer.assignment():
                self._consumer.seek(tp, offset)
        except Exception:
            log.exception("rewind_failed", partition=getattr(tp, "partition", None), offset=offset)


def _decode(value: bytes | None) -> dict[str, Any]:
    """The record's JSON object, or `InvalidCommandError`."""
    if value is None:
        message = "empty record (tombstone)"
        raise InvalidCommandError(message)
    try:
        data = json.loads(value)
    except (ValueError, RecursionError) as error:
        message = f"not JSON: {str(error)[:120]}"
        raise InvalidCommandError(message) from error
    if not isinstance(data, dict):
        message = f"not a JSON object but {type(data).__name__}"
        raise InvalidCommandError(message)
    return data
