"""The jobs' runner loop, with fake Kafka clients: produce first, commit after, never skip.

After each poll, the late results of issuances whose outcome was unknown are produced too,
and kept until the broker has them.

The providers are stood in for by `httpx.MockTransport`; the real simulators are tested
separately, and the runner against a real broker in tests/integration/test_jobs_runner.py.
"""

from __future__ import annotations

import json
import random
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from reconciler.jobs.clients import IssuerClient, PspClient
from reconciler.jobs.handlers import Dispatched, Dispatcher, IssuanceJob, RefundJob
from reconciler.jobs.retry import BackoffPolicy, Retrier
from reconciler.jobs.runner import JobRunner, RunnerHooks
from reconciler.kafka_io import ConsumerRecord, TopicPartition

NOW = datetime(2024, 9, 4, 5, 0, tzinfo=UTC)
TP = TopicPartition("commands", 0)


def _rng(seed: int) -> random.Random:
    """A seeded random source: jitter in tests is reproducible."""
    return random.Random(seed)  # noqa: S311 - jitter, not security


@dataclass(frozen=True)
class Record:
    """A consumer record as kafka-python gives it, for the fields the runner reads."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    timestamp: int = 0
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class FakeFuture:
    """A send's future: acknowledged, or failing with the given error."""

    def __init__(self, error: Exception | None) -> None:
        """Fail with `error` if it is not None."""
        self.error = error

    def get(self, timeout: float) -> None:
        """Wait for the acknowledgement (at once), or raise."""
        assert timeout > 0
        if self.error is not None:
            raise self.error


class FakeProducer:
    """A producer that logs each acknowledged send; `fail_next` fails the next one.

    `fail_once` names event ids whose first send fails.
    """

    def __init__(self, log: list[tuple[str, Any]]) -> None:
        """Log sends to `log`."""
        self.log = log
        self.fail_next: Exception | None = None
        self.fail_once: set[str] = set()
        self.closed = False

    def send(self, topic: str, *, key: bytes, value: bytes, headers: Any) -> FakeFuture:
        """Log the record unless this send is to fail."""
        event_id = json.loads(value)["event_id"]
        if event_id in self.fail_once:
            self.fail_once.discard(event_id)
            self.fail_next = RuntimeError("broker gone")
        error, self.fail_next = self.fail_next, None
        if error is None:
            self.log.append(("produce", (topic, key, json.loads(value), headers)))
        return FakeFuture(error)

    def close(self) -> None:
        """Remember the close."""
        self.closed = True


class FakeConsumer:
    """A consumer of one partition that gives scripted batches and logs commits and seeks."""

    def __init__(self, log: list[tuple[str, Any]], batches: list[list[Record]]) -> None:
        """Give `batches` in turn, log to `log`."""
        self.log = log
        self.batches = batches
        self.closed = False

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[Record]]:
        """The next batch, or nothing."""
        assert timeout_ms > 0
        return {TP: self.batches.pop(0)} if self.batches else {}

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        """Log the committed offset."""
        ((tp, meta),) = offsets.items()
        self.log.append(("commit", (tp.partition, meta.offset)))

    def assignment(self) -> set[TopicPartition]:
        """The one partition."""
        return {TP}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Log the rewind."""
        self.log.append(("seek", (tp.partition, offset)))

    def close(self, *, autocommit: bool) -> None:
        """Remember the close (which must not commit)."""
        assert autocommit is False
        self.closed = True


def _record(offset: int, command: object) -> Record:
    value = command if isinstance(command, bytes) else json.dumps(command).encode()
    return Record("commands", 0, offset, value)


ISSUE = {"command_id": "A1/issue/1", "type": "IssueStamps", "order_id": "A1", "quantity": 1}
REFUND = {
    "command_id": "P9/ORPHAN_DEBIT/1",
    "type": "RefundPayment",
    "refund_id": "P9/ORPHAN_DEBIT",
    "order_id": None,
    "payment_id": "P9",
    "amount": 12500,
    "reason": "ORPHAN_DEBIT",
}


def _provider(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/v1/stamps/issue":
        return httpx.Response(200, json={"result": "issued", "serial_numbers": ["S1"]})
    return httpx.Response(200, json={"result": "succeeded", "psp_refund_ref": "R", "amount": 12500})


def _runner(
    batches: list[list[Record]], hooks: RunnerHooks | None = None
) -> tuple[JobRunner, list[tuple[str, Any]], FakeProducer, FakeConsumer]:
    log: list[tuple[str, Any]] = []
    http = httpx.Client(transport=httpx.MockTransport(_provider))
    retrier = Retrier(BackoffPolicy(), rng=_rng(1), sleep=lambda _s: None)
    dispatcher = Dispatcher(
        IssuanceJob(IssuerClient(http, "http://issuer"), retrier, clock=lambda: NOW),
        RefundJob(PspClient(http, "http://psp"), retrier, clock=lambda: NOW),
    )
    consumer = FakeConsumer(log, batches)
    producer = FakeProducer(log)
    runner = JobRunner(consumer, producer, dispatcher, "events", hooks=hooks)
    return runner, log, producer, consumer


def test_each_result_is_produced_before_its_offset_is_committed() -> None:
    """Per command: produce the fact (keyed by order, else payment), then commit offset+1."""
    runner, log, _, _ = _runner([[_record(5, ISSUE), _record(6, REFUND)]])
    assert runner.poll_once() == 2
    assert [entry[0] for entry in log] == ["produce", "commit", "produce", "commit"]
    (_, (topic, key, value, headers)), (_, commit) = log[0], log[1]
    assert (topic, key) == ("events", b"A1")
    assert value["type"] == "StampIssued"
    assert value["event_id"] == "A1/issue/1/result"
    assert headers == [("command_id", b"A1/issue/1")]
    assert commit == (0, 6)
    assert log[2][1][1] == b"P9"
    assert log[3][1] == (0, 7)


def test_a_failed_produce_rewinds_and_commits_nothing() -> None:
    """If the result is not acknowledged, the offset is not committed and the record re-read."""
    runner, log, producer, _ = _runner([[_record(5, ISSUE), _record(6, ISSUE)]])
    producer.fail_next = RuntimeError("broker gone")
    assert runner.poll_once() == 0
    assert log == [("seek", (0, 5))]


def test_invalid_records_and_escalations_are_committed_without_a_result() -> None:
    """Not-JSON, a tombstone, a malformed command and an Escalate: committed, nothing sent."""
    escalate = {"command_id": "A1/OVER_ISSUED", "type": "Escalate", "order_id": "A1"}
    records = [
        _record(0, b"{not json"),
        Record("commands", 0, 1, None),
        _record(2, [1, 2]),
        _record(3, {"type": "IssueStamps", "command_id": "A2/issue/1"}),
        _record(4, escalate),
    ]
    runner, log, _, _ = _runner([records])
    assert runner.poll_once() == 5
    assert log == [("commit", (0, n)) for n in range(1, 6)]


def test_a_crash_hook_after_the_call_stops_before_produce_and_commit() -> None:
    """A hook raising after the provider call leaves nothing produced or committed."""

    class Crash(BaseException):
        pass

    seen: list[Dispatched] = []

    def crash(_record: ConsumerRecord, dispatched: Dispatched) -> None:
        seen.append(dispatched)
        raise Crash

    runner, log, _, _ = _runner([[_record(5, ISSUE)]], RunnerHooks(after_handle=crash))
    with pytest.raises(Crash):
        runner.poll_once()
    assert log == []
    assert seen[0].command_id == "A1/issue/1"


def test_run_stops_on_the_event_and_closes_its_clients() -> None:
    """`run` handles what arrives until stopped, then closes consumer and producer."""
    stop = threading.Event()

    def stop_after_commit(_record: ConsumerRecord, _dispatched: Dispatched) -> None:
        stop.set()

    runner, log, producer, consumer = _runner(
        [[_record(0, ISSUE)]], RunnerHooks(before_commit=stop_after_commit)
    )
    runner.run(stop, poll_timeout_ms=10)
    assert [entry[0] for entry in log] == ["produce", "commit"]
    assert runner.handled == 1
    assert consumer.closed
    assert producer.closed


def _late_issuer(request: httpx.Request) -> httpx.Response:
    """An issuer that times out every issue but has the stamps when asked afterwards."""
    if request.method == "POST":
        message = "slow"
        raise httpx.ReadTimeout(message, request=request)
    return httpx.Response(200, json={"result": "issued", "serial_numbers": ["S1"]})


def _parking_runner(
    batches: list[list[Record]],
) -> tuple[JobRunner, list[tuple[str, Any]], FakeProducer]:
    """A runner whose issuance job gives up at once and inquires with no interval."""
    log: list[tuple[str, Any]] = []
    http = httpx.Client(transport=httpx.MockTransport(_late_issuer))
    retrier = Retrier(BackoffPolicy(attempts=1), rng=_rng(1), sleep=lambda _s: None)
    dispatcher = Dispatcher(
        IssuanceJob(
            IssuerClient(http, "http://issuer"), retrier, clock=lambda: NOW, inquiry_interval_s=0
        ),
        RefundJob(PspClient(http, "http://psp"), retrier, clock=lambda: NOW),
    )
    producer = FakeProducer(log)
    runner = JobRunner(FakeConsumer(log, batches), producer, dispatcher, "events")
    return runner, log, producer


def test_a_late_issue_is_produced_keyed_by_order_after_the_poll() -> None:
    """Unknown outcome: the failure is produced and committed, then the late stamps too."""
    runner, log, _ = _parking_runner([[_record(5, ISSUE)]])
    with capture_logs() as lines:
        assert runner.poll_once() == 1
    assert [entry[0] for entry in log] == ["produce", "commit", "produce"]
    failed, late = log[0][1], log[2][1]
    assert failed[2]["type"] == "StampIssuanceFailed"
    assert (late[0], late[1]) == ("events", b"A1")
    assert late[2]["type"] == "StampIssued"
    assert late[2]["event_id"] == "A1/issue/1/late/result"
    assert late[2]["command_id"] == "A1/issue/1"
    assert late[3] == [("command_id", b"A1/issue/1")]
    assert runner.recovered == 1
    recovered = [line for line in lines if line["event"] == "issuance_recovered"]
    assert [(line["command_id"], line["serials"]) for line in recovered] == [("A1/issue/1", 1)]
    assert runner.poll_once() == 0
    assert len(log) == 3  # acknowledged: never produced again


def test_a_late_issue_not_acknowledged_by_the_broker_is_produced_later() -> None:
    """The late fact's produce fails: it stays parked and goes out on a later poll."""
    runner, log, producer = _parking_runner([[_record(5, ISSUE)]])
    producer.fail_once.add("A1/issue/1/late/result")
    assert runner.poll_once() == 1
    assert [entry[0] for entry in log] == ["produce", "commit"]
    assert runner.recovered == 0
    assert runner.poll_once() == 0
    assert [entry[0] for entry in log] == ["produce", "commit", "produce"]
    assert log[2][1][2]["event_id"] == "A1/issue/1/late/result"
    assert runner.recovered == 1
