"""The jobs' HTTP clients and handlers: each provider answer becomes the right fact.

The providers are stood in for by `httpx.MockTransport` scripts written to the HTTP
contract; the real simulators are tested separately.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
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
    PspClient,
    retry_after_seconds,
)
from reconciler.jobs.handlers import (
    Dispatcher,
    InvalidCommandError,
    IssuanceJob,
    RefundJob,
    result_event_id,
)
from reconciler.jobs.retry import BackoffPolicy, Retrier

if TYPE_CHECKING:
    from collections.abc import Callable

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
