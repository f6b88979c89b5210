"""One command in, one result fact out: the issuance job and the refund job.

Each job calls its provider through a `Retrier` (transient failures are retried with
backoff, under an attempt count and a deadline), and turns the outcome into the fact
the engine expects back. The fact's `event_id` is `<command_id>/result`: a command
handled twice (a job restarted before committing its offset) gives the same id, and the
engine keeps the first.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reconciler.domain.events import (
    RefundFailed,
    RefundSucceeded,
    StampIssuanceFailed,
    StampIssued,
)
from reconciler.jobs.clients import IssuedAnswer, RefundPaidAnswer
from reconciler.jobs.retry import RetriesExhaustedError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from reconciler.jobs.clients import IssuerClient, PspClient
    from reconciler.jobs.retry import Retrier

ISSUER_UNREACHABLE = "ISSUER_UNREACHABLE"
PSP_UNREACHABLE = "PSP_UNREACHABLE"
EVENT_ID_MAX = 128
_RESULT_SUFFIX = "/result"
_DIGEST_CHARS = 32

Identifier = Annotated[str, Field(min_length=1, max_length=128)]
IssuanceResult: TypeAlias = StampIssued | StampIssuanceFailed
RefundResult: TypeAlias = RefundSucceeded | RefundFailed
ResultFact: TypeAlias = IssuanceResult | RefundResult


class InvalidCommandError(ValueError):
    """A command record that is not a command the jobs understand (the reason says why)."""


class _Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    command_id: Identifier
    attempt: int | None = None


class IssueStampsCommand(_Command):
    """The engine's `IssueStamps` command, as the jobs read it."""

    type: Literal["IssueStamps"]
    order_id: Identifier
    quantity: Annotated[int, Field(ge=1)]


class RefundPaymentCommand(_Command):
    """The engine's `RefundPayment` command, as the jobs read it."""

    type: Literal["RefundPayment"]
    refund_id: Identifier
    order_id: Identifier | None = None
    payment_id: Identifier
    amount: Annotated[int, Field(gt=0)]
    reason: str


def _utc_now() -> datetime:
    return datetime.now(UTC)


def result_event_id(command_id: str) -> str:
    """The deterministic `event_id` of a command's result: `<command_id>/result`.

    An id that would exceed the 128 characters an `event_id` may have keeps a prefix of
    the command id and a digest of all of it, still deterministic.
    """
    candidate = command_id + _RESULT_SUFFIX
    if len(candidate) <= EVENT_ID_MAX:
        return candidate
    digest = hashlib.sha256(command_id.encode()).hexdigest()[:_DIGEST_CHARS]
    keep = EVENT_ID_MAX - len(_RESULT_SUFFIX) - _DIGEST_CHARS - 1
    return f"{command_id[:keep]}~{digest}{_RESULT_SUFFIX}"


def _parse(model: type[_Command], command: Mapping[str, Any] | _Command) -> Any:  # noqa: ANN401 - the model given
    if isinstance(command, model):
        return command
    data = command.model_dump() if isinstance(command, _Command) else dict(command)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        message = f"not a valid {model.__name__}: {' '.join(str(error).split())[:300]}"
        raise InvalidCommandError(message) from error


@dataclass(frozen=True)
class Handled:
    """What handling one command gave: the fact and the attempts it took."""

    fact: ResultFact
    attempts: int


class IssuanceJob:
    """Turns an `IssueStamps` command into `StampIssued` or `StampIssuanceFailed`."""

    def __init__(
        self,
        client: IssuerClient,
        retrier: Retrier,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        """Call the issuer through `client` under `retrier`; `clock` stamps the facts."""
        self._client = client
        self._retrier = retrier
        self._clock = clock

    def handle(self, command: Mapping[str, Any] | IssueStampsCommand) -> IssuanceResult:
        """The result fact of one `IssueStamps` command (raises `InvalidCommandError`)."""
        fact = self.run(command).fact
        assert isinstance(fact, StampIssued | StampIssuanceFailed)  # noqa: S101 - run's type
        return fact

    def run(self, command: Mapping[str, Any] | IssueStampsCommand) -> Handled:
        """The result fact of one `IssueStamps` command, with the attempts it took."""
        cmd: IssueStampsCommand = _parse(IssueStampsCommand, command)
        event_id = result_event_id(cmd.command_id)
        try:
            answer, attempts = self._retrier.call(
                lambda remaining: self._client.issue(
                    cmd.command_id, cmd.order_id, cmd.quantity, timeout_s=remaining
                )
            )
        except RetriesExhaustedError as exhausted:
            failed = StampIssuanceFailed(
                event_id=event_id,
                version=1,
                occurred_at=self._clock(),
                order_id=cmd.order_id,
                reason=f"{ISSUER_UNREACHABLE}: {exhausted.last_error}",
                retryable=True,
                command_id=cmd.command_id,
            )
            return Handled(failed, exhausted.attempts)
        fact: IssuanceResult
        if isinstance(answer, IssuedAnswer):
            fact = StampIssued(
                event_id=event_id,
                version=1,
                occurred_at=self._clock(),
                order_id=cmd.order_id,
                serial_numbers=answer.serial_numbers,
                command_id=cmd.command_id,
            )
        else:
            fact = StampIssuanceFailed(
                event_id=event_id,
                version=1,
                occurred_at=self._clock(),
                order_id=cmd.order_id,
                reason=answer.reason,
                retryable=answer.retryable,
                command_id=cmd.command_id,
            )
        return Handled(fact, attempts)


class RefundJob:
    """Turns a `RefundPayment` command into `RefundSucceeded` or `RefundFailed`."""

    def __init__(
        self,
        client: PspClient,
        retrier: Retrier,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        """Call the PSP through `client` under `retrier`; `clock` stamps the facts."""
        self._client = client
        self._retrier = retrier
        self._clock = clock

    def handle(self, command: Mapping[str, Any] | RefundPaymentCommand) -> RefundResult:
        """The result fact of one `RefundPayment` command (raises `InvalidCommandError`)."""
        fact = self.run(command).fact
        assert isinstance(fact, RefundSucceeded | RefundFailed)  # noqa: S101 - run's type
        return fact

    def run(self, command: Mapping[str, Any] | RefundPaymentCommand) -> Handled:
        """The result fact of one `RefundPayment` command, with the attempts it took."""
        cmd: RefundPaymentCommand = _parse(RefundPaymentCommand, command)
        event_id = result_event_id(cmd.command_id)
        try:
            answer, attempts = self._retrier.call(
                lambda remaining: self._client.refund(
                    cmd.refund_id, cmd.payment_id, cmd.amount, cmd.reason, timeout_s=remaining
                )
            )
        except RetriesExhaustedError as exhausted:
            failed = RefundFailed(
                event_id=event_id,
                version=1,
                occurred_at=self._clock(),
                refund_id=cmd.refund_id,
                payment_id=cmd.payment_id,
                reason=f"{PSP_UNREACHABLE}: {exhausted.last_error}",
                retryable=True,
            )
            return Handled(failed, exhausted.attempts)
        fact: RefundResult
        if isinstance(answer, RefundPaidAnswer):
            fact = RefundSucceeded(
                event_id=event_id,
                version=1,
                occurred_at=self._clock(),
                refund_id=cmd.refund_id,
                payment_id=cmd.payment_id,
                amount=answer.amount,
                psp_refund_ref=answer.psp_refund_ref,
            )
        else:
            fact = RefundFailed(
                event_id=event_id,
                version=1,
                occurred_at=self._clock(),
                refund_id=cmd.refund_id,
                payment_id=cmd.payment_id,
                reason=answer.reason,
                retryable=answer.retryable,
            )
        return Handled(fact, attempts)


@dataclass(frozen=True)
class Dispatched:
    """One command record's outcome: its type and id, and the result to publish, if any.

    `key` is the Kafka key of the result: the command's order id, or its payment id.
    `fact` is None for commands the jobs do not act on (`Escalate`, unknown types).
    """

    command_type: str
    command_id: str | None
    fact: ResultFact | None
    key: str | None
    attempts: int = 0


class Dispatcher:
    """Routes each command to its job by `type`; counts what it handled and ignored."""

    def __init__(self, issuance: IssuanceJob, refunds: RefundJob) -> None:
        """Send `IssueStamps` to `issuance` and `RefundPayment` to `refunds`."""
        self._issuance = issuance
        self._refunds = refunds
        self.counts: Counter[str] = Counter()

    def dispatch(self, command: Mapping[str, Any]) -> Dispatched:
        """Handle one decoded command; raises `InvalidCommandError` for a malformed one."""
        kind = command.get("type")
        raw_id = command.get("command_id")
        command_id = raw_id if isinstance(raw_id, str) else None
        if kind == "IssueStamps":
            issue: IssueStampsCommand = _parse(IssueStampsCommand, command)
            handled = self._issuance.run(issue)
            self.counts[f"{kind}:{handled.fact.type}"] += 1
            return Dispatched(kind, command_id, handled.fact, issue.order_id, handled.attempts)
        if kind == "RefundPayment":
            refund: RefundPaymentCommand = _parse(RefundPaymentCommand, command)
            handled = self._refunds.run(refund)
            self.counts[f"{kind}:{handled.fact.type}"] += 1
            key = refund.order_id or refund.payment_id
            return Dispatched(kind, command_id, handled.fact, key, handled.attempts)
        if kind == "Escalate":
            self.counts["Escalate:ignored"] += 1
            return Dispatched(kind, command_id, None, None)
        self.counts["unknown:ignored"] += 1
        return Dispatched(str(kind), command_id, None, None)
