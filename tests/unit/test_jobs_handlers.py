"""The jobs' HTTP clients and handlers: each provider answer becomes the right fact.

The providers are stood in for by `httpx.MockTransport` scripts written to the HTTP
contract; the real simulators are tested separately, but for the issuer's inquiry, which
is also read here from the issuer app run in process. An issuance whose outcome stays
unknown is parked, and `recover` finds its late stamps by inquiry, on a fake clock.
"""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime, time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from reconciler.domain.events import (
    RefundFailed,
    RefundSucceeded,
    StampIssuanceFailed,
    StampIssued,
)
from reconciler.ingest.validation import parse_record
from reconciler.jobs.clients import (
    IssuedAnswer,
    IssuerClient,
    MalformedAnswerError,
    ProviderUnavailableError,
    PspClient,
    RejectedAnswer,
    retry_after_seconds,
)
from reconciler.jobs.handlers import (
    Dispatcher,
    InvalidCommandError,
    IssuanceJob,
    RefundJob,
    late_event_id,
    result_event_id,
)
from reconciler.jobs.retry import BackoffPolicy, Retrier
from reconciler.providers.config import MINUTES_PER_DAY, DailyWindow, IssuerConfig
from reconciler.providers.issuer import create_issuer_app

if TYPE_CHECKING:
    from collections.abc import Callable

    from fastapi import FastAPI

NOW = datetime(2024, 9, 4, 5, 0, tzinfo=UTC)
ISSUER = "http://issuer.test"
PSP = "http://psp.test"
ISSUE = {
    "command_id": "A1/issue/1",
    "type": "IssueStamps",
    "order_id": "A1",
    "quantity": 2,
    "attempt": 1,
}
REFUND = {
    "command_id": "P1/PAID_NOT_ISSUED/2",
    "type": "RefundPayment",
    "refund_id": "P1/PAID_NOT_ISSUED",
    "order_id": "A1",
    "payment_id": "P1",
    "amount": 25000,
    "reason": "PAID_NOT_ISSUED",
    "attempt": 2,
}

Step = httpx.Response | Exception


def _rng(seed: int) -> random.Random:
    """A seeded random source: jitter in tests is reproducible."""
    return random.Random(seed)  # noqa: S311 - jitter, not security


class Script:
    """A provider stand-in: answers each request with the next step (the last repeats)."""

    def __init__(self, *steps: Step) -> None:
        """Answer with `steps` in turn."""
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        """Record the request; answer (or fail) with the next step."""
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        return step

    @property
    def keys(self) -> list[str | None]:
        """The Idempotency-Key of every request, in order."""
        return [r.headers.get("Idempotency-Key") for r in self.requests]

    def bodies(self) -> list[Any]:
        """The JSON body of every request, in order."""
        return [json.loads(r.content) for r in self.requests]


class Sleeps:
    """A sleep that records and does not wait, with a clock that moves with it."""

    def __init__(self) -> None:
        """Start at 0 s, with no waits."""
        self.now = 0.0
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        """Record the wait and move the clock by it."""
        self.waits.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        """The current fake time."""
        return self.now


def _retrier(sleeps: Sleeps, **policy: Any) -> Retrier:
    settings: dict[str, Any] = {"attempts": 5, "base_s": 0.5, "cap_s": 10.0, "deadline_s": 600.0}
    settings.update(policy)
    return Retrier(
        BackoffPolicy(**settings),
        rng=_rng(11),
        sleep=sleeps.sleep,
        monotonic=sleeps.monotonic,
    )


def _issuance(script: Script, sleeps: Sleeps, **policy: Any) -> IssuanceJob:
    http = httpx.Client(transport=httpx.MockTransport(script))
    client = IssuerClient(http, ISSUER, timeout_s=3.0)
    return IssuanceJob(client, _retrier(sleeps, **policy), clock=lambda: NOW)


def _refunds(script: Script, sleeps: Sleeps, **policy: Any) -> RefundJob:
    http = httpx.Client(transport=httpx.MockTransport(script))
    client = PspClient(http, PSP, timeout_s=3.0)
    return RefundJob(client, _retrier(sleeps, **policy), clock=lambda: NOW)


def _ok(body: object, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def _roundtrip(fact: object) -> object:
    """The fact as the engine's ingest reads it back from its JSON."""
    assert hasattr(fact, "model_dump_json")
    return parse_record(fact.model_dump_json())


# --- issuance ---------------------------------------------------------------------------


def test_issued_answer_becomes_stamp_issued() -> None:
    """200 issued -> StampIssued with the serials, command id, deterministic id and job clock."""
    script = Script(_ok({"result": "issued", "serial_numbers": ["S1", "S2"]}))
    fact = _issuance(script, Sleeps()).handle(ISSUE)
    assert fact == StampIssued(
        event_id="A1/issue/1/result",
        version=1,
        occurred_at=NOW,
        order_id="A1",
        serial_numbers=("S1", "S2"),
        command_id="A1/issue/1",
    )
    assert _roundtrip(fact) == fact


def test_issue_request_follows_the_contract() -> None:
    """POST /v1/stamps/issue, Idempotency-Key = command_id, JSON command_id/order_id/quantity."""
    script = Script(_ok({"result": "issued", "serial_numbers": ["S1", "S2"]}))
    _issuance(script, Sleeps()).handle(ISSUE)
    (request,) = script.requests
    assert request.method == "POST"
    assert str(request.url) == f"{ISSUER}/v1/stamps/issue"
    assert script.keys == ["A1/issue/1"]
    assert script.bodies() == [{"command_id": "A1/issue/1", "order_id": "A1", "quantity": 2}]


def test_partial_answer_becomes_stamp_issued_with_what_was_delivered() -> None:
    """200 partial -> StampIssued with only the delivered serials (the engine counts them)."""
    script = Script(_ok({"result": "partial", "serial_numbers": ["S1"]}))
    fact = _issuance(script, Sleeps()).handle(ISSUE)
    assert isinstance(fact, StampIssued)
    assert fact.serial_numbers == ("S1",)


@pytest.mark.parametrize("retryable", [True, False])
def test_rejection_becomes_issuance_failed_with_its_retryability(*, retryable: bool) -> None:
    """422 rejected -> StampIssuanceFailed with the issuer's reason and retryable flag."""
    body = {"result": "rejected", "reason": "QUOTA_EXHAUSTED", "retryable": retryable}
    script = Script(_ok(body, status=422))
    fact = _issuance(script, Sleeps()).handle(ISSUE)
    assert fact == StampIssuanceFailed(
        event_id="A1/issue/1/result",
        version=1,
        occurred_at=NOW,
        order_id="A1",
        reason="QUOTA_EXHAUSTED",
        retryable=retryable,
        command_id="A1/issue/1",
    )
    assert len(script.requests) == 1  # a decision is not retried by the job
    assert _roundtrip(fact) == fact


def test_transient_then_success_retries_with_the_same_key() -> None:
    """503, timeout, connection refused, then 200 -> StampIssued; every call keyed alike."""
    sleeps = Sleeps()
    script = Script(
        _ok({"error": "busy"}, status=503),
        httpx.ReadTimeout("slow"),
        httpx.ConnectError("refused"),
        _ok({"result": "issued", "serial_numbers": ["S1", "S2"]}),
    )
    fact = _issuance(script, sleeps).handle(ISSUE)
    assert isinstance(fact, StampIssued)
    assert script.keys == ["A1/issue/1"] * 4
    assert len(sleeps.waits) == 3


def test_transient_exhausted_becomes_retryable_issuer_unreachable() -> None:
    """Always 503: after the 5 attempts, StampIssuanceFailed(ISSUER_UNREACHABLE, retryable)."""
    sleeps = Sleeps()
    script = Script(_ok({}, status=503))
    fact = _issuance(script, sleeps).handle(ISSUE)
    assert isinstance(fact, StampIssuanceFailed)
    assert fact.reason == "ISSUER_UNREACHABLE: issuer answered HTTP 503"
    assert fact.retryable is True
    assert fact.command_id == "A1/issue/1"
    assert fact.event_id == "A1/issue/1/result"
    assert len(script.requests) == 5
    assert len(sleeps.waits) == 4


def test_timeouts_are_transient_and_named_in_the_reason() -> None:
    """Every call timing out ends in a retryable failure whose reason says it timed out."""
    script = Script(httpx.ReadTimeout("slow"))
    fact = _issuance(script, Sleeps(), attempts=2).handle(ISSUE)
    assert isinstance(fact, StampIssuanceFailed)
    assert fact.retryable is True
    assert fact.reason.startswith("ISSUER_UNREACHABLE: issuer timed out after 3 s")
    assert len(script.requests) == 2


def test_every_call_is_bounded_by_the_timeout_and_the_deadline_left() -> None:
    """The client's timeout bounds each call; near the deadline, the time left bounds it."""
    script = Script(_ok({"result": "issued", "serial_numbers": ["S1"]}))
    _issuance(script, Sleeps()).handle(ISSUE)
    assert script.requests[0].extensions["timeout"] == {
        "connect": 3.0,
        "read": 3.0,
        "write": 3.0,
        "pool": 3.0,
    }
    short = Script(_ok({"result": "issued", "serial_numbers": ["S1"]}))
    _issuance(short, Sleeps(), deadline_s=1.5).handle(ISSUE)
    assert short.requests[0].extensions["timeout"]["read"] == 1.5


MALFORMED_ISSUER_ANSWERS = [
    httpx.Response(200, content=b"<html>ok</html>"),
    _ok({"result": "issued"}),
    _ok({"result": "issued", "serial_numbers": []}),
    _ok({"result": "issued", "serial_numbers": ["S1", "S1"]}),
    _ok({"result": "issued", "serial_numbers": "S1"}),
    _ok({"result": "issued", "serial_numbers": [1]}),
    _ok({"result": "rejected", "reason": "x", "retryable": False}),
    _ok({"result": "ok", "serial_numbers": ["S1"]}),
    _ok(["S1"]),
    _ok({"result": "issued", "serial_numbers": ["S1"]}, status=422),
    _ok({"result": "rejected", "reason": "x", "retryable": "no"}, status=422),
    _ok({"result": "issued", "serial_numbers": ["S1"]}, status=201),
    _ok({"detail": "not found"}, status=404),
]


@pytest.mark.parametrize("answer", MALFORMED_ISSUER_ANSWERS)
def test_malformed_issuer_answers_are_transient_never_success(answer: httpx.Response) -> None:
    """An answer off the contract is retried and, if it persists, is a retryable failure."""
    script = Script(answer)
    fact = _issuance(script, Sleeps(), attempts=3).handle(ISSUE)
    assert isinstance(fact, StampIssuanceFailed)
    assert fact.retryable is True
    assert fact.reason.startswith("ISSUER_UNREACHABLE: issuer answered HTTP")
    assert len(script.requests) == 3


def test_a_malformed_answer_then_a_good_one_is_success() -> None:
    """A garbled 200 is retried with the same key; the valid answer that follows counts."""
    script = Script(
        httpx.Response(200, content=b"{"),
        _ok({"result": "issued", "serial_numbers": ["S9"]}),
    )
    fact = _issuance(script, Sleeps()).handle(ISSUE)
    assert isinstance(fact, StampIssued)
    assert fact.serial_numbers == ("S9",)
    assert script.keys == ["A1/issue/1", "A1/issue/1"]


def test_the_client_raises_a_typed_error_for_a_malformed_answer() -> None:
    """The client itself raises MalformedAnswerError (a TransientError) on a bad body."""
    http = httpx.Client(transport=httpx.MockTransport(Script(_ok({"result": "issued"}))))
    with pytest.raises(MalformedAnswerError, match="malformed body"):
        IssuerClient(http, ISSUER).issue("A1/issue/1", "A1", 1)
    good = httpx.Client(
        transport=httpx.MockTransport(Script(_ok({"result": "partial", "serial_numbers": ["S"]})))
    )
    assert IssuerClient(good, ISSUER + "/").issue("A1/issue/1", "A1", 2) == IssuedAnswer(
        ("S",), partial=True
    )


def test_an_invalid_command_is_refused_without_calling_the_issuer() -> None:
    """A command lacking its quantity raises InvalidCommandError and makes no HTTP call."""
    script = Script(_ok({"result": "issued", "serial_numbers": ["S1"]}))
    command = {k: v for k, v in ISSUE.items() if k != "quantity"}
    with pytest.raises(InvalidCommandError, match="quantity"):
        _issuance(script, Sleeps()).handle(command)
    assert script.requests == []


# --- refunds ----------------------------------------------------------------------------


def test_refund_success_becomes_refund_succeeded() -> None:
    """200 succeeded -> RefundSucceeded with the PSP's reference and amount."""
    body = {"result": "succeeded", "psp_refund_ref": "R-77", "amount": 25000}
    script = Script(_ok(body))
    fact = _refunds(script, Sleeps()).handle(REFUND)
    assert fact == RefundSucceeded(
        event_id="P1/PAID_NOT_ISSUED/2/result",
        version=1,
        occurred_at=NOW,
        refund_id="P1/PAID_NOT_ISSUED",
        payment_id="P1",
        amount=25000,
        psp_refund_ref="R-77",
    )
    assert _roundtrip(fact) == fact
    assert str(script.requests[0].url) == f"{PSP}/v1/refunds"
    assert script.bodies() == [
        {
            "refund_id": "P1/PAID_NOT_ISSUED",
            "payment_id": "P1",
            "amount": 25000,
            "reason": "PAID_NOT_ISSUED",
        }
    ]


@pytest.mark.parametrize("retryable", [True, False])
def test_refund_failure_becomes_refund_failed(*, retryable: bool) -> None:
    """422 failed -> RefundFailed with the PSP's reason and retryable flag, one call only."""
    body = {"result": "failed", "reason": "ACCOUNT_CLOSED", "retryable": retryable}
    script = Script(_ok(body, status=422))
    fact = _refunds(script, Sleeps()).handle(REFUND)
    assert fact == RefundFailed(
        event_id="P1/PAID_NOT_ISSUED/2/result",
        version=1,
        occurred_at=NOW,
        refund_id="P1/PAID_NOT_ISSUED",
        payment_id="P1",
        reason="ACCOUNT_CLOSED",
        retryable=retryable,
    )
    assert len(script.requests) == 1
    assert _roundtrip(fact) == fact


def test_refund_key_is_the_refund_id_on_every_attempt() -> None:
    """Idempotency-Key is the refund_id (not the per-attempt command_id) on every retry."""
    script = Script(
        _ok({}, status=502),
        httpx.RemoteProtocolError("server disconnected"),
        _ok({"result": "succeeded", "psp_refund_ref": "R-1", "amount": 25000}),
    )
    fact = _refunds(script, Sleeps()).handle(REFUND)
    assert isinstance(fact, RefundSucceeded)
    assert script.keys == ["P1/PAID_NOT_ISSUED"] * 3
    assert all(body["refund_id"] == "P1/PAID_NOT_ISSUED" for body in script.bodies())


def test_refund_retry_after_is_honoured_up_to_the_cap() -> None:
    """503 with Retry-After 4 waits >= 4 s; Retry-After 3600 waits only the 10 s cap."""
    sleeps = Sleeps()
    script = Script(
        _ok({}, status=503, headers={"Retry-After": "4"}),
        _ok({}, status=503, headers={"Retry-After": "3600"}),
        _ok({"result": "succeeded", "psp_refund_ref": "R-1", "amount": 25000}),
    )
    fact = _refunds(script, sleeps).handle(REFUND)
    assert isinstance(fact, RefundSucceeded)
    assert sleeps.waits[0] >= 4.0
    assert sleeps.waits[1] == 10.0


def test_refund_transient_exhausted_becomes_retryable_psp_unreachable() -> None:
    """Connection errors to the end -> RefundFailed(PSP_UNREACHABLE: ..., retryable)."""
    script = Script(httpx.ConnectError("connection refused"))
    fact = _refunds(script, Sleeps()).handle(REFUND)
    assert isinstance(fact, RefundFailed)
    assert fact.reason == "PSP_UNREACHABLE: PSP unreachable: ConnectError: connection refused"
    assert fact.retryable is True
    assert fact.event_id == "P1/PAID_NOT_ISSUED/2/result"
    assert len(script.requests) == 5


MALFORMED_PSP_ANSWERS = [
    _ok({"result": "succeeded", "psp_refund_ref": "R-1", "amount": "25000"}),
    _ok({"result": "succeeded", "psp_refund_ref": "R-1", "amount": 0}),
    _ok({"result": "succeeded", "psp_refund_ref": "R-1", "amount": 25000.0}),
    _ok({"result": "succeeded", "amount": 25000}),
    _ok({"result": "succeeded", "psp_refund_ref": "", "amount": 25000}),
    _ok({"result": "failed", "reason": "x", "retryable": False}),
    _ok({"result": "failed", "reason": "x"}, status=422),
    _ok({"result": "succeeded", "psp_refund_ref": "R-1", "amount": 25000}, status=422),
    httpx.Response(200, content=b"null"),
    _ok({"result": "succeeded", "psp_refund_ref": "R-1", "amount": 25000}, status=409),
]


@pytest.mark.parametrize("answer", MALFORMED_PSP_ANSWERS)
def test_malformed_psp_answers_are_transient_never_success(answer: httpx.Response) -> None:
    """An answer off the contract never counts as money returned: a retryable failure."""
    script = Script(answer)
    fact = _refunds(script, Sleeps(), attempts=2).handle(REFUND)
    assert isinstance(fact, RefundFailed)
    assert fact.retryable is True
    assert fact.reason.startswith("PSP_UNREACHABLE: PSP answered HTTP")
    assert len(script.requests) == 2


# --- ids, headers, dispatch -------------------------------------------------------------


def test_result_event_id_is_deterministic_and_fits_the_envelope() -> None:
    """`<command_id>/result`; an over-long id is shortened with a digest, still stable."""
    assert result_event_id("A1/issue/1") == "A1/issue/1/result"
    long_id = "P" * 120 + "/ORPHAN_DEBIT/1"
    shortened = result_event_id(long_id)
    assert len(shortened) == 128
    assert shortened.endswith("/result")
    assert shortened == result_event_id(long_id)
    assert shortened != result_event_id(long_id[:-1] + "2")


def test_retry_after_header_forms() -> None:
    """Retry-After as seconds or an HTTP date is understood; anything else is ignored."""
    now = datetime(2024, 9, 4, 5, 0, tzinfo=UTC)
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("Wed, 04 Sep 2024 05:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Wed, 04 Sep 2024 04:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("nan") is None
    assert retry_after_seconds(None) is None


def _dispatcher(issuer: Script, psp: Script) -> Dispatcher:
    sleeps = Sleeps()
    return Dispatcher(_issuance(issuer, sleeps), _refunds(psp, sleeps))


def test_dispatch_routes_by_type_and_keys_results_by_order() -> None:
    """IssueStamps and RefundPayment reach their jobs; results are keyed by order id."""
    issuer = Script(_ok({"result": "issued", "serial_numbers": ["S1"]}))
    psp = Script(_ok({"result": "succeeded", "psp_refund_ref": "R", "amount": 25000}))
    dispatcher = _dispatcher(issuer, psp)
    issued = dispatcher.dispatch(ISSUE)
    refunded = dispatcher.dispatch(REFUND)
    assert isinstance(issued.fact, StampIssued)
    assert issued.key == "A1"
    assert isinstance(refunded.fact, RefundSucceeded)
    assert refunded.key == "A1"
    assert refunded.attempts == 1
    assert dispatcher.counts == {
        "IssueStamps:StampIssued": 1,
        "RefundPayment:RefundSucceeded": 1,
    }


def test_orphan_refund_results_are_keyed_by_payment() -> None:
    """A refund command without an order id gets its result keyed by the payment id."""
    psp = Script(_ok({"result": "succeeded", "psp_refund_ref": "R", "amount": 25000}))
    orphan = {**REFUND, "order_id": None}
    dispatched = _dispatcher(Script(_ok({})), psp).dispatch(orphan)
    assert dispatched.key == "P1"


@pytest.mark.parametrize(
    ("command", "counted"),
    [
        ({"command_id": "A1/OVER_ISSUED", "type": "Escalate", "order_id": "A1"}, "Escalate"),
        ({"command_id": "X/1", "type": "SomethingNew"}, "unknown"),
    ],
)
def test_escalations_and_unknown_commands_are_ignored_and_counted(
    command: dict[str, Any], counted: str
) -> None:
    """Escalate (for people) and unknown types produce no fact and call no provider."""
    issuer = Script(_ok({}))
    psp = Script(_ok({}))
    dispatcher = _dispatcher(issuer, psp)
    dispatched = dispatcher.dispatch(command)
    assert dispatched.fact is None
    assert dispatched.command_id == command["command_id"]
    assert dispatcher.counts == {f"{counted}:ignored": 1}
    assert issuer.requests == psp.requests == []


def test_a_refund_command_with_a_string_amount_is_invalid() -> None:
    """Commands are read strictly: an amount as a string is an invalid command, no call."""
    psp = Script(_ok({}))
    dispatch: Callable[[dict[str, Any]], object] = _dispatcher(Script(_ok({})), psp).dispatch
    with pytest.raises(InvalidCommandError, match="amount"):
        dispatch({**REFUND, "amount": "25000"})
    assert psp.requests == []


# --- issuances whose outcome is unknown: parked, inquired about, recovered --------------


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        """Start at 0 s."""
        self.now = 0.0

    def __call__(self) -> float:
        """The current fake time."""
        return self.now


ISSUED = {"result": "issued", "serial_numbers": ["S1", "S2"]}
UNKNOWN = {"error": "UNKNOWN_KEY"}


def _parking_job(
    script: Script, ticks: Ticks, *, interval_s: float = 5.0, settle_s: float = 60.0
) -> IssuanceJob:
    """An issuance job that gives up after 2 tries and inquires on the `ticks` clock."""
    http = httpx.Client(transport=httpx.MockTransport(script))
    return IssuanceJob(
        IssuerClient(http, ISSUER, timeout_s=3.0),
        _retrier(Sleeps(), attempts=2),
        clock=lambda: NOW,
        monotonic=ticks,
        inquiry_interval_s=interval_s,
        settle_s=settle_s,
    )


def _park(job: IssuanceJob, command: dict[str, Any] = ISSUE) -> None:
    """Run `command` into an unknown outcome (the script times out twice)."""
    fact = job.handle(command)
    assert isinstance(fact, StampIssuanceFailed)
    assert fact.retryable is True


def test_an_unknown_outcome_is_reported_retryable_and_parked() -> None:
    """Every try timing out: the usual retryable failure, and the command is parked."""
    script = Script(httpx.ReadTimeout("slow"))
    dispatcher = Dispatcher(_parking_job(script, Ticks()), _refunds(Script(_ok({})), Sleeps()))
    dispatched = dispatcher.dispatch(ISSUE)
    assert isinstance(dispatched.fact, StampIssuanceFailed)
    assert dispatched.fact.event_id == "A1/issue/1/result"
    assert dispatched.fact.reason.startswith("ISSUER_UNREACHABLE: issuer timed out")
    assert dispatched.parked is True
    assert dispatcher.parked == ("A1/issue/1",)


def test_an_answered_command_is_not_parked() -> None:
    """A command the issuer answered (stamps or a refusal) leaves nothing parked."""
    issued = _parking_job(Script(_ok(ISSUED)), Ticks())
    issued.handle(ISSUE)
    refused = _parking_job(
        Script(_ok({"result": "rejected", "reason": "X", "retryable": True}, status=422)), Ticks()
    )
    refused.handle(ISSUE)
    assert issued.parked == refused.parked == ()
    assert issued.recover() == refused.recover() == []


def test_the_late_stamps_are_found_by_inquiry_after_the_interval() -> None:
    """Inquired no sooner than the interval; stamps found -> StampIssued for that command."""
    ticks = Ticks()
    script = Script(httpx.ReadTimeout("slow"), httpx.ReadTimeout("slow"), _ok(ISSUED))
    job = _parking_job(script, ticks)
    _park(job)
    ticks.now = 4.9
    assert job.recover() == []
    assert len(script.requests) == 2
    ticks.now = 5.0
    (handled,) = job.recover()
    inquiry = script.requests[2]
    assert inquiry.method == "GET"
    assert inquiry.url.raw_path == b"/v1/stamps/issue/A1%2Fissue%2F1"
    assert handled.attempts == 1
    assert handled.fact == StampIssued(
        event_id="A1/issue/1/late/result",
        version=1,
        occurred_at=NOW,
        order_id="A1",
        serial_numbers=("S1", "S2"),
        command_id="A1/issue/1",
    )
    assert _roundtrip(handled.fact) == handled.fact


def test_a_late_fact_is_offered_until_acknowledged_without_asking_again() -> None:
    """Not acknowledged (not published): offered again each interval, no new inquiry."""
    ticks = Ticks()
    script = Script(httpx.ReadTimeout("slow"), httpx.ReadTimeout("slow"), _ok(ISSUED))
    job = _parking_job(script, ticks)
    _park(job)
    ticks.now = 5.0
    (first,) = job.recover()
    assert job.recover() == []  # offered once per interval
    ticks.now = 10.0
    assert job.recover() == [first]
    assert len(script.requests) == 3
    job.acknowledge("A1/issue/1")
    ticks.now = 100.0
    assert job.parked == ()
    assert job.recover() == []
    assert len(script.requests) == 3


def test_a_stored_refusal_lets_the_key_go_with_no_fact() -> None:
    """The issuer refused that key (422): nothing was issued, the key is unparked."""
    ticks = Ticks()
    refusal = _ok({"result": "rejected", "reason": "ORDER_NOT_ELIGIBLE", "retryable": False}, 422)
    script = Script(_ok({}, status=502), _ok({}, status=502), refusal)
    job = _parking_job(script, ticks)
    _park(job)
    ticks.now = 5.0
    assert job.recover() == []
    assert job.parked == ()


def test_an_unknown_key_is_kept_for_the_settle_period_then_let_go() -> None:
    """404 UNKNOWN_KEY: kept while a request may be in flight, let go `settle_s` after."""
    ticks = Ticks()
    script = Script(httpx.ConnectError("refused"), httpx.ConnectError("refused"), _ok(UNKNOWN, 404))
    job = _parking_job(script, ticks, interval_s=5.0, settle_s=20.0)
    _park(job)
    for now in (5.0, 10.0, 15.0, 20.0):
        ticks.now = now
        assert job.recover() == []
        assert job.parked == ("A1/issue/1",)
    ticks.now = 25.0
    assert job.recover() == []
    assert job.parked == ()
    assert len(script.requests) == 2 + 5


def test_an_unknown_key_that_turns_up_later_is_still_recovered() -> None:
    """404 first (the issue still in flight), then stamps stored: the late fact comes."""
    ticks = Ticks()
    script = Script(
        httpx.ReadTimeout("slow"), httpx.ReadTimeout("slow"), _ok(UNKNOWN, 404), _ok(ISSUED)
    )
    job = _parking_job(script, ticks)
    _park(job)
    ticks.now = 5.0
    assert job.recover() == []
    ticks.now = 10.0
    (handled,) = job.recover()
    assert handled.attempts == 2
    assert isinstance(handled.fact, StampIssued)


@pytest.mark.parametrize(
    "failure",
    [
        _ok({"error": "ISSUER_UNAVAILABLE"}, status=503),
        httpx.ReadTimeout("slow"),
        _ok({"detail": "Not Found"}, status=404),
        _ok({"result": "issued"}),
    ],
    ids=["503", "timeout", "404-not-unknown-key", "malformed"],
)
def test_an_inquiry_the_issuer_cannot_answer_keeps_the_key(failure: Step) -> None:
    """5xx, a timeout, a 404 that is not UNKNOWN_KEY, a bad body: the key stays, forever."""
    ticks = Ticks()
    script = Script(httpx.ReadTimeout("slow"), httpx.ReadTimeout("slow"), failure)
    job = _parking_job(script, ticks, settle_s=0.0)
    _park(job)
    for now in (5.0, 500.0, 5000.0):
        ticks.now = now
        assert job.recover() == []
    assert job.parked == ("A1/issue/1",)
    assert len(script.requests) == 2 + 3


def test_inquiries_per_call_are_bounded_and_stop_when_the_issuer_cannot_answer() -> None:
    """`limit` inquiries per call, each key in turn; a failed one ends the round."""
    ticks = Ticks()
    script = Script(httpx.ReadTimeout("slow"))
    job = _parking_job(script, ticks)
    for order in ("A1", "A2", "A3"):
        _park(job, {**ISSUE, "command_id": f"{order}/issue/1", "order_id": order})
    posts = len(script.requests)
    ticks.now = 5.0
    assert job.recover() == []  # the first inquiry fails: the others wait
    assert len(script.requests) == posts + 1
    script.steps = [_ok(UNKNOWN, 404)]
    ticks.now = 10.0
    assert job.recover(limit=2) == []
    inquired = [r.url.raw_path.decode().rsplit("/", 1)[1] for r in script.requests[posts:]]
    assert inquired == ["A1%2Fissue%2F1", "A2%2Fissue%2F1", "A3%2Fissue%2F1"]


def test_a_parked_command_answered_on_a_later_run_is_unparked() -> None:
    """The same command handled again and answered: its result is that answer, not a late one."""
    ticks = Ticks()
    script = Script(httpx.ReadTimeout("slow"), httpx.ReadTimeout("slow"), _ok(ISSUED))
    job = _parking_job(script, ticks)
    _park(job)
    fact = job.handle(ISSUE)
    assert isinstance(fact, StampIssued)
    assert fact.event_id == "A1/issue/1/result"
    ticks.now = 5.0
    assert job.parked == ()
    assert job.recover() == []


def test_dispatcher_recovers_late_facts_keyed_by_order_and_counts_them() -> None:
    """`Dispatcher.recover` gives Dispatched records keyed by order; `acknowledge` counts."""
    ticks = Ticks()
    script = Script(httpx.ReadTimeout("slow"), httpx.ReadTimeout("slow"), _ok(ISSUED))
    dispatcher = Dispatcher(
        _parking_job(script, ticks, interval_s=0.0), _refunds(Script(_ok({})), Sleeps())
    )
    dispatcher.dispatch(ISSUE)
    (late,) = dispatcher.recover()
    assert (late.command_type, late.command_id, late.key, late.attempts) == (
        "IssueStamps",
        "A1/issue/1",
        "A1",
        1,
    )
    assert isinstance(late.fact, StampIssued)
    assert late.fact.event_id == "A1/issue/1/late/result"
    dispatcher.acknowledge(late)
    assert dispatcher.parked == ()
    assert dispatcher.counts == {
        "IssueStamps:StampIssuanceFailed": 1,
        "IssueStamps:recovered": 1,
    }


def test_late_event_id_differs_from_the_result_and_fits_the_envelope() -> None:
    """`<command_id>/late/result`, never the command's own result id; long ids digested."""
    assert late_event_id("A1/issue/1") == "A1/issue/1/late/result"
    long_id = "O" * 118 + "/issue/1"
    assert len(late_event_id(long_id)) == 128
    assert late_event_id(long_id) == late_event_id(long_id)
    assert late_event_id(long_id) != result_event_id(long_id)


def test_inquiry_settings_must_not_be_negative() -> None:
    """A negative interval or settle period is refused when the job is built."""
    with pytest.raises(ValueError, match="must be >= 0"):
        _parking_job(Script(_ok({})), Ticks(), interval_s=-1.0)


# --- the inquiry against the real issuer app, in process ---------------------------------


class InProcess(httpx.BaseTransport):
    """Sends each request to an ASGI app in this process, to the end of its answer."""

    def __init__(self, app: FastAPI) -> None:
        """Answer every request with `app`."""
        self._app = app

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Run the app on the request."""

        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self._app)
            async with httpx.AsyncClient(transport=transport) as client:
                answer = await client.request(
                    request.method, request.url, headers=request.headers, content=request.read()
                )
                body = await answer.aread()
            return httpx.Response(answer.status_code, headers=answer.headers, content=body)

        return asyncio.run(send())


def test_inquire_reads_the_real_issuers_stored_answer_and_never_issues() -> None:
    """Against the issuer app: None before any issue, then the POST's answer; no new stamps."""
    app = create_issuer_app(IssuerConfig(seed=4, partial_rate=1.0))
    http = httpx.Client(transport=InProcess(app), base_url=ISSUER)
    client = IssuerClient(http, ISSUER)
    assert client.inquire("A1/issue/1") is None
    issued = client.issue("A1/issue/1", "A1", 3)
    before = http.get("/v1/stats").json()
    assert client.inquire("A1/issue/1") == issued
    assert isinstance(issued, IssuedAnswer)
    assert issued.partial is True
    after = http.get("/v1/stats").json()
    assert after["inquiries"] == before["inquiries"] + 1
    assert (after["stamps_issued"], after["requests"]) == (
        before["stamps_issued"],
        before["requests"],
    )


def test_inquire_reads_a_stored_refusal_and_an_outage_is_transient() -> None:
    """A refused key inquires as the same refusal; in the outage window, a TransientError."""
    refusing = IssuerClient(
        httpx.Client(transport=InProcess(create_issuer_app(IssuerConfig(reject_rate=1.0)))),
        ISSUER,
    )
    refused = refusing.issue("B1/issue/1", "B1", 1)
    assert refused == RejectedAnswer("ORDER_NOT_ELIGIBLE", retryable=False)
    assert refusing.inquire("B1/issue/1") == refused
    outage = DailyWindow(start=time(0, 0), minutes=MINUTES_PER_DAY)
    down = IssuerClient(
        httpx.Client(transport=InProcess(create_issuer_app(IssuerConfig(outage=outage)))),
        ISSUER,
    )
    with pytest.raises(ProviderUnavailableError, match="HTTP 503"):
        down.inquire("B1/issue/1")
