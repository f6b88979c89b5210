"""The jobs runner against a real broker and a stand-in provider over real HTTP.

The stand-in is a small FastAPI app (issuer and PSP in one) served by uvicorn on a free
loopback port, written to the providers' HTTP contract (the issuer's inquiry included);
the real simulators are tested separately.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from structlog.testing import capture_logs

from reconciler.domain.events import StampIssuanceFailed
from reconciler.jobs.clients import IssuerClient, PspClient
from reconciler.jobs.handlers import Dispatched, Dispatcher, IssuanceJob, RefundJob
from reconciler.jobs.retry import BackoffPolicy, Retrier
from reconciler.jobs.runner import JobRunner, RunnerHooks
from reconciler.kafka_io import ConsumerRecord, TopicPartition, partition_for, produce_all
from reconciler.kafka_io._kafka import KafkaConsumer
from tests.kafka_broker import free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    TopicFactory = Callable[[str, int], str]

PARTITIONS = 3


def _rng(seed: int) -> random.Random:
    """A seeded random source: jitter in tests is reproducible."""
    return random.Random(seed)  # noqa: S311 - jitter, not security


@dataclass
class StandIn:
    """What the stand-in provider saw and did."""

    keys: list[str] = field(default_factory=list)
    inquiries: list[str] = field(default_factory=list)
    answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    payouts: Counter[str] = field(default_factory=Counter)
    drop_first_answer: set[str] = field(default_factory=set)


def _stand_in_app(state: StandIn) -> FastAPI:
    app = FastAPI()

    def answer(key: str, decide: Callable[[], tuple[int, dict[str, Any]]]) -> JSONResponse:
        if key not in state.answers:  # idempotent: one decision per key
            state.answers[key] = decide()
            if key in state.drop_first_answer:  # decided (and paid), then the answer is lost
                return JSONResponse({"error": "bad gateway"}, status_code=502)
        status, body = state.answers[key]
        return JSONResponse(body, status_code=status)

    @app.post("/v1/stamps/issue")
    async def issue(request: Request, idempotency_key: Annotated[str, Header()]) -> JSONResponse:
        state.keys.append(idempotency_key)
        body = await request.json()
        if body["order_id"] == "SLOW":
            await asyncio.sleep(1.0)
        serials = [f"{body['order_id']}-S{n}" for n in range(body["quantity"])]
        answered = answer(
            idempotency_key, lambda: (200, {"result": "issued", "serial_numbers": serials})
        )
        if body["order_id"].startswith("LATE"):  # issued, then the answer is slow to leave
            await asyncio.sleep(1.0)
        return answered

    @app.post("/v1/refunds")
    async def refund(request: Request, idempotency_key: Annotated[str, Header()]) -> JSONResponse:
        state.keys.append(idempotency_key)
        body = await request.json()

        def pay() -> tuple[int, dict[str, Any]]:
            state.payouts[idempotency_key] += 1
            ref = f"PSP-{len(state.payouts)}"
            return 200, {"result": "succeeded", "psp_refund_ref": ref, "amount": body["amount"]}

        return answer(idempotency_key, pay)

    _serve_inquiries(app, state)
    return app


def _serve_inquiries(app: FastAPI, state: StandIn) -> None:
    """The issuer's inquiry: the stored answer of a key, or 404 UNKNOWN_KEY; never issues."""

    @app.get("/v1/stamps/issue/{key:path}")
    async def inquire(key: str) -> JSONResponse:
        state.inquiries.append(key)
        if key not in state.answers:
            return JSONResponse({"error": "UNKNOWN_KEY"}, status_code=404)
        status, body = state.answers[key]
        return JSONResponse(body, status_code=status)


@pytest.fixture
def stand_in() -> Iterator[tuple[str, StandIn]]:
    """Serve the stand-in provider on a free loopback port; give its base URL and state."""
    state = StandIn()
    config = uvicorn.Config(
        _stand_in_app(state),
        host="127.0.0.1",
        port=free_port(),
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "stand-in provider did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}", state
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _dispatcher(http: httpx.Client, base_url: str) -> Dispatcher:
    retrier = Retrier(
        BackoffPolicy(attempts=5, base_s=0.01, cap_s=0.05, deadline_s=10.0),
        rng=_rng(3),
    )
    return Dispatcher(
        IssuanceJob(IssuerClient(http, base_url, timeout_s=2.0), retrier),
        RefundJob(PspClient(http, base_url, timeout_s=2.0), retrier),
    )


class Crash(BaseException):
    """A simulated kill: not an Exception, so nothing in the runner catches it."""


def _run_in_thread(
    runner: JobRunner, stop: threading.Event
) -> tuple[threading.Thread, list[BaseException]]:
    crashes: list[BaseException] = []

    def target() -> None:
        try:
            runner.run(stop, poll_timeout_ms=100)
        except Crash as crash:
            crashes.append(crash)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, crashes


def _read_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list[Any]:
    """Every record of `topic` from the start, once `expected` are there (or the timeout)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        # A little longer: anything beyond `expected` would be a bug worth seeing.
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
        return records
    finally:
        consumer.close()


def _commands(bootstrap: str, topic: str, commands: list[dict[str, Any]]) -> None:
    records = [
        (str(c.get("order_id") or c.get("payment_id")).encode(), json.dumps(c).encode(), None)
        for c in commands
    ]
    produce_all(bootstrap, topic, records)


def _refund(payment_id: str, order_id: str | None, attempt: int = 1) -> dict[str, Any]:
    reason = "PAID_NOT_ISSUED" if order_id else "ORPHAN_DEBIT"
    refund_id = f"{payment_id}/{reason}"
    return {
        "command_id": f"{refund_id}/{attempt}",
        "type": "RefundPayment",
        "refund_id": refund_id,
        "order_id": order_id,
        "payment_id": payment_id,
        "amount": 12500,
        "reason": reason,
        "attempt": attempt,
    }


def _issue(order_id: str, quantity: int) -> dict[str, Any]:
    return {
        "command_id": f"{order_id}/issue/1",
        "type": "IssueStamps",
        "order_id": order_id,
        "quantity": quantity,
        "attempt": 1,
    }


def test_commands_become_result_facts_on_the_input_topic(
    kafka_bootstrap: str,
    kafka_topic_factory: TopicFactory,
    stand_in: tuple[str, StandIn],
) -> None:
    """Issue and refund commands -> facts keyed by order (payment if none), deterministic ids.

    The PSP loses its first answer to one refund after paying it (a 502): the job retries
    with the same key, gets the original answer, and the payer is paid once.
    """
    base_url, state = stand_in
    state.drop_first_answer.add("P1/PAID_NOT_ISSUED")
    commands_topic = kafka_topic_factory("jobs-commands", PARTITIONS)
    input_topic = kafka_topic_factory("jobs-input", PARTITIONS)
    commands = [
        _issue("A1", 2),
        _issue("A2", 1),
        _refund("P1", "A3"),
        _refund("P9", None),
        {"command_id": "A4/OVER_ISSUED", "type": "Escalate", "order_id": "A4", "reason": "X"},
    ]
    _commands(kafka_bootstrap, commands_topic, commands)
    stop = threading.Event()
    with httpx.Client() as http:
        runner = JobRunner.connect(
            kafka_bootstrap,
            commands_topic,
            input_topic,
            _dispatcher(http, base_url),
            group_id=f"jobs-{uuid.uuid4().hex[:8]}",
        )
        thread, crashes = _run_in_thread(runner, stop)
        try:
            records = _read_all(kafka_bootstrap, input_topic, expected=4)
        finally:
            stop.set()
            thread.join(timeout=30)
    assert crashes == []
    assert not thread.is_alive()
    facts = {json.loads(r.value)["event_id"]: (r, json.loads(r.value)) for r in records}
    assert sorted(facts) == [
        "A1/issue/1/result",
        "A2/issue/1/result",
        "P1/PAID_NOT_ISSUED/1/result",
        "P9/ORPHAN_DEBIT/1/result",
    ]
    assert len(records) == 4
    expected_keys = {
        "A1/issue/1/result": ("A1", "StampIssued"),
        "A2/issue/1/result": ("A2", "StampIssued"),
        "P1/PAID_NOT_ISSUED/1/result": ("A3", "RefundSucceeded"),
        "P9/ORPHAN_DEBIT/1/result": ("P9", "RefundSucceeded"),
    }
    for event_id, (key, kind) in expected_keys.items():
        record, fact = facts[event_id]
        assert record.key == key.encode()
        assert record.partition == partition_for(key.encode(), PARTITIONS)
        assert fact["type"] == kind
    assert facts["A1/issue/1/result"][1]["serial_numbers"] == ["A1-S0", "A1-S1"]
    assert state.keys.count("P1/PAID_NOT_ISSUED") == 2
    assert state.payouts == {"P1/PAID_NOT_ISSUED": 1, "P9/ORPHAN_DEBIT": 1}
    assert runner.handled == 5  # the Escalate was read, committed, and produced nothing


@pytest.mark.parametrize("crash_point", ["after_handle", "before_commit"])
def test_a_runner_killed_before_commit_handles_the_command_again_safely(
    kafka_bootstrap: str,
    kafka_topic_factory: TopicFactory,
    stand_in: tuple[str, StandIn],
    crash_point: str,
) -> None:
    """Killed after the PSP call, before the commit: a restart re-calls with the same key.

    The PSP pays once; the input topic holds the result once (crash before producing) or
    twice (crash after producing), always with the same event_id.
    """
    base_url, state = stand_in
    commands_topic = kafka_topic_factory("jobs-commands", PARTITIONS)
    input_topic = kafka_topic_factory("jobs-input", PARTITIONS)
    _commands(kafka_bootstrap, commands_topic, [_refund("P5", "A5")])
    group = f"jobs-{uuid.uuid4().hex[:8]}"
    called = threading.Event()

    def crash(_record: ConsumerRecord, _dispatched: Dispatched) -> None:
        called.set()
        raise Crash

    hooks = RunnerHooks(**{crash_point: crash})
    with httpx.Client() as http:
        first = JobRunner.connect(
            kafka_bootstrap,
            commands_topic,
            input_topic,
            _dispatcher(http, base_url),
            group_id=group,
            hooks=hooks,
        )
        thread, crashes = _run_in_thread(first, threading.Event())
        thread.join(timeout=60)
        assert not thread.is_alive()
        assert len(crashes) == 1
        assert called.is_set()
        assert state.keys == ["P5/PAID_NOT_ISSUED"]

        stop = threading.Event()
        second = JobRunner.connect(
            kafka_bootstrap,
            commands_topic,
            input_topic,
            _dispatcher(http, base_url),
            group_id=group,
        )
        thread, crashes = _run_in_thread(second, stop)
        expected = 1 if crash_point == "after_handle" else 2
        try:
            records = _read_all(kafka_bootstrap, input_topic, expected=expected)
        finally:
            stop.set()
            thread.join(timeout=30)
    assert crashes == []
    assert state.keys == ["P5/PAID_NOT_ISSUED", "P5/PAID_NOT_ISSUED"]
    assert state.payouts == {"P5/PAID_NOT_ISSUED": 1}
    assert len(records) == expected
    values = [json.loads(r.value) for r in records]
    assert {v["event_id"] for v in values} == {"P5/PAID_NOT_ISSUED/1/result"}
    assert {v["psp_refund_ref"] for v in values} == {"PSP-1"}
    assert {r.key for r in records} == {b"A5"}
    assert second.handled == 1


def test_a_slow_issuer_is_cut_off_by_the_timeout(stand_in: tuple[str, StandIn]) -> None:
    """Over real HTTP, an issuer slower than the timeout ends in a retryable failure, fast."""
    base_url, state = stand_in
    retrier = Retrier(BackoffPolicy(attempts=2, base_s=0.01, cap_s=0.01), rng=_rng(1))
    started = time.monotonic()
    with httpx.Client() as http:
        job = IssuanceJob(IssuerClient(http, base_url, timeout_s=0.2), retrier)
        fact = job.handle(_issue("SLOW", 1))
    assert time.monotonic() - started < 0.9
    assert isinstance(fact, StampIssuanceFailed)
    assert fact.retryable is True
    assert fact.reason.startswith("ISSUER_UNREACHABLE: issuer timed out after 0.2 s")
    assert state.keys == ["SLOW/issue/1", "SLOW/issue/1"]


def test_a_late_issue_is_found_by_inquiry_and_produced_after_the_failure(
    kafka_bootstrap: str,
    kafka_topic_factory: TopicFactory,
    stand_in: tuple[str, StandIn],
) -> None:
    """The issuer issues but answers after the job's timeout: failure first, then the stamps.

    Both facts are on the input topic, keyed by the order (so in its partition): the
    retryable `StampIssuanceFailed` of the command, then, found by inquiry, a `StampIssued`
    for that same command id with the serials the issuer handed out under it.
    """
    base_url, state = stand_in
    commands_topic = kafka_topic_factory("jobs-commands", PARTITIONS)
    input_topic = kafka_topic_factory("jobs-input", PARTITIONS)
    _commands(kafka_bootstrap, commands_topic, [_issue("LATE1", 2)])
    retrier = Retrier(BackoffPolicy(attempts=2, base_s=0.01, cap_s=0.01), rng=_rng(5))
    stop = threading.Event()
    with httpx.Client() as http, capture_logs() as logs:
        job = IssuanceJob(
            IssuerClient(http, base_url, timeout_s=0.2), retrier, inquiry_interval_s=0
        )
        refunds = RefundJob(PspClient(http, base_url, timeout_s=2.0), retrier)
        runner = JobRunner.connect(
            kafka_bootstrap,
            commands_topic,
            input_topic,
            Dispatcher(job, refunds),
            group_id=f"jobs-{uuid.uuid4().hex[:8]}",
        )
        thread, crashes = _run_in_thread(runner, stop)
        try:
            records = _read_all(kafka_bootstrap, input_topic, expected=2)
        finally:
            stop.set()
            thread.join(timeout=30)
    assert crashes == []
    values = [json.loads(r.value) for r in records]
    assert [(v["event_id"], v["type"]) for v in values] == [
        ("LATE1/issue/1/result", "StampIssuanceFailed"),
        ("LATE1/issue/1/late/result", "StampIssued"),
    ]
    assert {r.key for r in records} == {b"LATE1"}
    assert {r.partition for r in records} == {partition_for(b"LATE1", PARTITIONS)}
    late = values[1]
    assert late["command_id"] == "LATE1/issue/1"
    assert late["serial_numbers"] == ["LATE1-S0", "LATE1-S1"]
    assert state.keys == ["LATE1/issue/1", "LATE1/issue/1"]
    assert state.inquiries == ["LATE1/issue/1"]
    assert runner.recovered == 1
    assert job.parked == ()
    assert [line["command_id"] for line in logs if line["event"] == "issuance_recovered"] == [
        "LATE1/issue/1"
    ]
