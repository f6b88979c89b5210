"""HTTP clients of the stamp issuer and the payment provider (PSP), with typed answers.

Each call sends the command's idempotency key in the `Idempotency-Key` header, is
bounded by a timeout, and either returns what the provider decided (an answer) or
raises a `TransientError` subclass when the outcome is unknown or may change:

- `TransportFailureError`: a timeout, a refused or dropped connection;
- `ProviderUnavailableError`: a 5xx (or 408/429), with the Retry-After hint if given;
- `UnexpectedStatusError`: any other status the contract does not name;
- `MalformedAnswerError`: a 200 or 422 whose body does not match the contract.

A malformed answer is never taken as success: without a valid answer nobody knows
whether the stamps were issued or the money moved, and retrying with the same
idempotency key is what finds out.

The issuer also answers an inquiry, `GET {base}/v1/stamps/issue/{key}` (the key
URL-encoded), which never issues: the final answer it stored for that key, or 404
`{"error": "UNKNOWN_KEY"}` if it never settled it. `IssuerClient.inquire` reads it as the
same answer an issue would have given, None for that 404, and raises as above otherwise
(any other 404 included: a wrong URL or an issuer without inquiries is not "unknown").
"""

from __future__ import annotations

import json
import math
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from reconciler.jobs.retry import TransientError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

ISSUE_PATH = "/v1/stamps/issue"
REFUNDS_PATH = "/v1/refunds"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TIMEOUT_S = 10.0
UNKNOWN_KEY = "UNKNOWN_KEY"
_MIN_TIMEOUT_S = 0.001
_TRANSIENT_STATUSES = frozenset({408, 429})
_HTTP_OK = 200
_HTTP_NOT_FOUND = 404
_HTTP_UNPROCESSABLE = 422
_HTTP_SERVER_ERROR = 500
_DETAIL_LIMIT = 200

Identifier = Annotated[str, Field(min_length=1, max_length=128)]


class TransportFailureError(TransientError):
    """The call timed out, or the connection was refused or dropped."""


class ProviderUnavailableError(TransientError):
    """The provider answered 5xx (or 408/429): it may answer otherwise later."""


class UnexpectedStatusError(TransientError):
    """A status the contract does not name: the outcome is unknown."""


class MalformedAnswerError(TransientError):
    """A 200 or 422 whose body does not match the contract: the outcome is unknown."""


@dataclass(frozen=True)
class IssuedAnswer:
    """The issuer delivered stamps: all asked for (`partial` False) or some."""

    serial_numbers: tuple[str, ...]
    partial: bool


@dataclass(frozen=True)
class RejectedAnswer:
    """The issuer refused; `retryable` says whether a later attempt may succeed."""

    reason: str
    retryable: bool


@dataclass(frozen=True)
class RefundPaidAnswer:
    """The PSP returned `amount` to the payer under its reference `psp_refund_ref`."""

    psp_refund_ref: str
    amount: int


@dataclass(frozen=True)
class RefundDeclinedAnswer:
    """The PSP could not refund; `retryable` says whether a later attempt may succeed."""

    reason: str
    retryable: bool


IssueAnswer: TypeAlias = IssuedAnswer | RejectedAnswer
RefundAnswer: TypeAlias = RefundPaidAnswer | RefundDeclinedAnswer


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)


class _IssuedBody(_Body):
    result: Literal["issued", "partial"]
    serial_numbers: Annotated[list[Identifier], Field(min_length=1, max_length=1000)]

    @model_validator(mode="after")
    def _unique(self) -> _IssuedBody:
        if len(set(self.serial_numbers)) != len(self.serial_numbers):
            message = "serial_numbers are not unique"
            raise ValueError(message)
        return self


class _RejectedBody(_Body):
    result: Literal["rejected"]
    reason: str
    retryable: bool


class _SucceededBody(_Body):
    result: Literal["succeeded"]
    psp_refund_ref: Annotated[str, Field(min_length=1)]
    amount: Annotated[int, Field(gt=0, le=10**15)]


class _FailedBody(_Body):
    result: Literal["failed"]
    reason: str
    retryable: bool


def _short(text: str) -> str:
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 3] + "..."


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header as seconds to wait: delta-seconds or an HTTP date; else None."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def _post(  # noqa: PLR0913, PLR0917 - private; the request's parts, spelled out
    http: httpx.Client,
    url: str,
    key: str,
    body: Mapping[str, Any],
    timeout_s: float,
    provider: str,
) -> httpx.Response:
    """POST `body` with the idempotency key, bounded by `timeout_s`; transport errors typed."""
    return _send(
        lambda timeout: http.post(
            url, json=dict(body), headers={IDEMPOTENCY_HEADER: key}, timeout=timeout
        ),
        timeout_s,
        provider,
    )


def _send(
    request: Callable[[httpx.Timeout], httpx.Response], timeout_s: float, provider: str
) -> httpx.Response:
    """Make one request bounded by `timeout_s`; timeouts and transport errors typed."""
    try:
        return request(httpx.Timeout(max(timeout_s, _MIN_TIMEOUT_S)))
    except httpx.TimeoutException as error:
        message = f"{provider} timed out after {timeout_s:g} s ({type(error).__name__})"
        raise TransportFailureError(message) from error
    except httpx.RequestError as error:
        message = f"{provider} unreachable: {type(error).__name__}: {_short(str(error))}"
        raise TransportFailureError(message) from error


def _answer_body(
    response: httpx.Response,
    provider: str,
    models: tuple[type[_Body], type[_Body]],
) -> _Body:
    """The 200 or 422 body as its contract model; every other case raises a TransientError."""
    status = response.status_code
    if status >= _HTTP_SERVER_ERROR or status in _TRANSIENT_STATUSES:
        message = f"{provider} answered HTTP {status}"
        hint = retry_after_seconds(response.headers.get("Retry-After"))
        raise ProviderUnavailableError(message, retry_after_s=hint)
    if status not in {_HTTP_OK, _HTTP_UNPROCESSABLE}:
        message = f"{provider} answered HTTP {status}, which the contract does not name"
        raise UnexpectedStatusError(message)
    model = models[0] if status == _HTTP_OK else models[1]
    try:
        data = json.loads(response.content)
        return model.model_validate(data)
    except (ValueError, ValidationError) as error:
        detail = _short(" ".join(str(error).split()))
        message = f"{provider} answered HTTP {status} with a malformed body: {detail}"
        raise MalformedAnswerError(message) from error


class IssuerClient:
    """The stamp issuer: `POST {base}/v1/stamps/issue`, keyed by the command id."""

    def __init__(
        self, http: httpx.Client, base_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        """Call the issuer at `base_url` with `http`; every call bounded by `timeout_s`."""
        self._http = http
        self._url = base_url.rstrip("/") + ISSUE_PATH
        self.timeout_s = timeout_s

    def issue(
        self, command_id: str, order_id: str, quantity: int, *, timeout_s: float | None = None
    ) -> IssueAnswer:
        """Ask for `quantity` stamps for `order_id`; the issuer's decision.

        Raises a `TransientError` when the outcome is unknown. `timeout_s` (at most the
        client's own) shortens this one call, for a caller's deadline.
        """
        timeout = self.timeout_s if timeout_s is None else min(self.timeout_s, timeout_s)
        body = {"command_id": command_id, "order_id": order_id, "quantity": quantity}
        response = _post(self._http, self._url, command_id, body, timeout, "issuer")
        return _issue_answer(response)

    def inquire(self, command_id: str, *, timeout_s: float | None = None) -> IssueAnswer | None:
        """What the issuer decided for the key `command_id`; None if it never settled it.

        `GET {base}/v1/stamps/issue/{command_id}`: never issues. The answer is the one
        the issue call got (or would have got). Raises a `TransientError` when the
        issuer cannot say (5xx, a timeout, a body off the contract, a 404 other than
        UNKNOWN_KEY).
        """
        timeout = self.timeout_s if timeout_s is None else min(self.timeout_s, timeout_s)
        url = f"{self._url}/{urllib.parse.quote(command_id, safe='')}"
        response = _send(lambda limit: self._http.get(url, timeout=limit), timeout, "issuer")
        if response.status_code == _HTTP_NOT_FOUND and _error_code(response) == UNKNOWN_KEY:
            return None
        return _issue_answer(response)


def _issue_answer(response: httpx.Response) -> IssueAnswer:
    """The issuer's 200 or 422 as an answer; every other case raises a TransientError."""
    parsed = _answer_body(response, "issuer", (_IssuedBody, _RejectedBody))
    if isinstance(parsed, _IssuedBody):
        return IssuedAnswer(tuple(parsed.serial_numbers), partial=parsed.result == "partial")
    assert isinstance(parsed, _RejectedBody)  # noqa: S101 - the 422 model
    return RejectedAnswer(parsed.reason, retryable=parsed.retryable)


def _error_code(response: httpx.Response) -> object:
    """The `error` field of a JSON object body; None if the body is anything else."""
    try:
        data = json.loads(response.content)
    except ValueError:
        return None
    return data.get("error") if isinstance(data, dict) else None


class PspClient:
    """The payment provider: `POST {base}/v1/refunds`, keyed by the refund id."""

    def __init__(
        self, http: httpx.Client, base_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        """Call the PSP at `base_url` with `http`; every call bounded by `timeout_s`."""
        self._http = http
        self._url = base_url.rstrip("/") + REFUNDS_PATH
        self.timeout_s = timeout_s

    def refund(
        self,
        refund_id: str,
        payment_id: str,
        amount: int,
        reason: str,
        *,
        timeout_s: float | None = None,
    ) -> RefundAnswer:
        """Ask the PSP to return `amount` of `payment_id`; its decision.

        The idempotency key is the `refund_id`, the same on every attempt of one refund,
        so the PSP pays it at most once. Raises a `TransientError` when the outcome is
        unknown (a 502 or a dropped connection may come after the PSP paid: the retry
        with the same key gets the original answer).
        """
        timeout = self.timeout_s if timeout_s is None else min(self.timeout_s, timeout_s)
        body: dict[str, Any] = {
            "refund_id": refund_id,
            "payment_id": payment_id,
            "amount": amount,
            "reason": reason,
        }
        response = _post(self._http, self._url, refund_id, body, timeout, "PSP")
        parsed = _answer_body(response, "PSP", (_SucceededBody, _FailedBody))
        if isinstance(parsed, _SucceededBody):
            return RefundPaidAnswer(parsed.psp_refund_ref, parsed.amount)
        assert isinstance(parsed, _FailedBody)  # noqa: S101 - the 422 model
        return RefundDeclinedAnswer(parsed.reason, retryable=parsed.retryable)
