"""One command in, one result fact out: the issuance job and the refund job.

Each job calls its provider through a `Retrier` (transient failures are retried with
backoff, under an attempt count and a deadline), and turns the outcome into the fact
the engine expects back. The fact's `event_id` is `<command_id>/result`: a command
handled twice (a job restarted before committing its offset) gives the same id, and the
engine keeps the first.

**An issuance whose outcome stays unknown.** When every try of an issue call fails
transiently (each timed out while the issuer was slowly answering, or a 502 came after
it had issued), nobody knows whether stamps were issued. The job still reports a
retryable `StampIssuanceFailed`, so the engine's rules move on (SPEC rule 2: the next
attempt, or a refund), but the next attempt has a new command id, which is the issuer's
idempotency key: the issuer issues again, and whatever it issued under the first key
would never be reported. Refunds do not have this problem: their key, the `refund_id`,
is the same on every attempt, so the PSP pays at most once.

So the issuance job *parks* such a command, and `IssuanceJob.recover` (the runners
call it once per loop) asks the issuer about each parked key with an inquiry that never
issues (`GET /v1/stamps/issue/{key}`), at most every `inquiry_interval_s`:

- stamps issued under it: a `StampIssued` for that earlier `command_id`, with the
  event_id `<command_id>/late/result` (see `late_event_id`), which the caller publishes
  and then acknowledges; the engine counts the serials as delivered and escalates
  OVER_ISSUED or DOUBLE_REMEDY if the order now has too many;
- refused under it (a stored 422): nothing was issued, the key is let go;
- never settled (404) for `settle_s` after the first 404: the issue never reached the
  issuer (or never got through it), the key is let go;
- the issuer cannot say (5xx, timeout): the key stays parked.

A command handled again that gets an answer is unparked: its result is the answer.

**Parked commands live in memory only.** A job process that is killed, restarted, or
stopped (`jobs run --once` included) while it holds parked keys forgets them, and
stamps issued under those keys are again never reported (the `issuance_parked` log line
names each one, for a person to follow up). Making this durable needs the parked keys
to outlive the process: on the embedded default they can be derived from the log itself
(every `StampIssuanceFailed` result whose reason starts with `ISSUER_UNREACHABLE` and
that has no `/late/result` fact yet), on Kafka a compacted topic keyed by command id
would hold them; either way the restarted job would inquire about each once more.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reconciler.domain.events import (
    RefundFailed,
    RefundSucceeded,
    StampIssuanceFailed,
    StampIssued,
)
from reconciler.jobs.clients import IssuedAnswer, RefundPaidAnswer
from reconciler.jobs.retry import RetriesExhaustedError, TransientError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from reconciler.jobs.clients import IssuerClient, PspClient
    from reconciler.jobs.retry import Retrier

log = structlog.get_logger("reconciler.jobs")

ISSUER_UNREACHABLE = "ISSUER_UNREACHABLE"
PSP_UNREACHABLE = "PSP_UNREACHABLE"
EVENT_ID_MAX = 128
_RESULT_SUFFIX = "/result"
_LATE_SUFFIX = "/late"
INQUIRY_INTERVAL_S = 5.0
"""The shortest wait between two inquiries about one parked issuance key."""
INQUIRIES_PER_CALL = 10
"""The most inquiries one `recover` call makes, so that a runner's loop goes on."""
SETTLE_S = 60.0
"""How long a parked key may stay unknown to the issuer (404) before it is let go: an
issue request may still be on its way to, or inside, the issuer."""
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


def late_event_id(command_id: str) -> str:
    """The `event_id` of a result found late, by inquiry: `<command_id>/late/result`.

    It differs from the command's `<command_id>/result` (a `StampIssuanceFailed` already
    recorded under that id), so the engine records both.
    """
    return result_event_id(command_id + _LATE_SUFFIX)


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


@dataclass
class _Parked:
    """An issue command whose outcome is unknown, and what the inquiries found so far."""

    command_id: str
    order_id: str
    due: float
    """When (monotonic seconds) it may next be inquired about, or its late fact offered."""
    inquiries: int = 0
    unknown_since: float | None = None
    """When the issuer first said it never settled the key (404)."""
    found: Handled | None = None
    """The late fact, offered until acknowledged."""


class IssuanceJob:
    """Turns an `IssueStamps` command into `StampIssued` or `StampIssuanceFailed`.

    Commands whose outcome stays unknown are parked and inquired about by `recover`.
    """

    def __init__(  # noqa: PLR0913 - the job's collaborators and knobs, each injectable
        self,
        client: IssuerClient,
        retrier: Retrier,
        *,
        clock: Callable[[], datetime] = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        inquiry_interval_s: float = INQUIRY_INTERVAL_S,
        settle_s: float = SETTLE_S,
    ) -> None:
        """Call the issuer through `client` under `retrier`; `clock` stamps the facts.

        `monotonic` paces the inquiries about parked commands: at most one per key every
        `inquiry_interval_s`; a key the issuer never settled is let go after `settle_s`.
        """
        if inquiry_interval_s < 0 or settle_s < 0:
            message = "inquiry_interval_s and settle_s must be >= 0"
            raise ValueError(message)
        self._client = client
        self._retrier = retrier
        self._clock = clock
        self._monotonic = monotonic
        self._interval_s = inquiry_interval_s
        self._settle_s = settle_s
        self._parked: dict[str, _Parked] = {}

    @property
    def parked(self) -> tuple[str, ...]:
        """The command ids parked (outcome unknown, or a late fact not yet acknowledged)."""
        return tuple(self._parked)

    def is_parked(self, command_id: str) -> bool:
        """Whether `command_id` is parked."""
        return command_id in self._parked

    def handle(self, command: Mapping[str, Any] | IssueStampsCommand) -> IssuanceResult:
        """The result fact of one `IssueStamps` command (raises `InvalidCommandError`)."""
        fact = self.run(command).fact
        assert isinstance(fact, StampIssued | StampIssuanceFailed)  # noqa: S101 - run's type
        return fact

    def run(self, command: Mapping[str, Any] | IssueStampsCommand) -> Handled:
        """The result fact of one `IssueStamps` command, with the attempts it took.

        When the outcome stays unknown, the command is also parked for `recover`.
        """
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
            self._park(cmd)
            return Handled(failed, exhausted.attempts)
        # The issuer answered: whatever an earlier try left unknown, this is its outcome.
        self._parked.pop(cmd.command_id, None)
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

    def recover(self, limit: int = INQUIRIES_PER_CALL) -> list[Handled]:
        """Inquire about the parked commands that are due; the late `StampIssued` found.

        At most `limit` inquiries per call, oldest first, and none after one the issuer
        could not answer (it is likely down for all): the caller's loop is never held up
        long. Each fact found is offered again (every `inquiry_interval_s`) until the
        caller `acknowledge`s it, that is until it was published: a failed publish loses
        nothing. `Handled.attempts` counts the inquiries. With nothing parked, this
        costs nothing.
        """
        if not self._parked:
            return []
        found: list[Handled] = []
        budget = limit
        for parked in list(self._parked.values()):
            now = self._monotonic()
            if now < parked.due:
                continue
            if parked.found is None:
                if budget <= 0:
                    continue
                budget -= 1
                parked.due = now + self._interval_s
                # Inquired: to the back of the queue, so that every key gets its turn.
                self._parked[parked.command_id] = self._parked.pop(parked.command_id)
                if not self._inquire(parked, now):
                    budget = 0
                    continue
            if parked.found is not None:
                parked.due = now + self._interval_s
                found.append(parked.found)
        return found

    def acknowledge(self, command_id: str) -> None:
        """The late fact of `command_id` was published: forget the command."""
        self._parked.pop(command_id, None)

    def _park(self, cmd: IssueStampsCommand) -> None:
        """Remember a command whose outcome is unknown, to inquire about it later."""
        if cmd.command_id in self._parked:
            return  # handled again, still unknown: keep what the inquiries found so far
        now = self._monotonic()
        self._parked[cmd.command_id] = _Parked(
            cmd.command_id, cmd.order_id, due=now + self._interval_s
        )
        log.warning(
            "issuance_parked",
            command_id=cmd.command_id,
            order_id=cmd.order_id,
            parked=len(self._parked),
        )

    def _inquire(self, parked: _Parked, now: float) -> bool:
        """Ask the issuer about one parked key; settle, keep, or let go of it.

        False if the issuer could not answer (a transient failure): the key stays.
        """
        command_id = parked.command_id
        where = {"command_id": command_id, "order_id": parked.order_id}
        parked.inquiries += 1
        try:
            answer = self._client.inquire(command_id)
        except TransientError as error:
            log.info("issuance_inquiry_failed", reason=str(error), **where)
            return False
        if answer is None:
            if parked.unknown_since is None:
                parked.unknown_since = now
            if now - parked.unknown_since >= self._settle_s:
                del self._parked[command_id]
                log.warning("issuance_never_settled", inquiries=parked.inquiries, **where)
            return True
        if not isinstance(answer, IssuedAnswer):
            del self._parked[command_id]
            log.info("issuance_settled_refused", reason=answer.reason, **where)
            return True
        late = StampIssued(
            event_id=late_event_id(command_id),
            version=1,
            occurred_at=self._clock(),
            order_id=parked.order_id,
            serial_numbers=answer.serial_numbers,
            command_id=command_id,
        )
        parked.found = Handled(late, parked.inquiries)
        return True


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
    `parked`: the outcome is unknown, and the issuance job will inquire about it.
    """

    command_type: str
    command_id: str | None
    fact: ResultFact | None
    key: str | None
    attempts: int = 0
    parked: bool = False

    def log_fields(self) -> dict[str, Any]:
        """What a runner's `command_handled` line says about this outcome."""
        fact = self.fact
        return {
            "command_id": self.command_id,
            "type": self.command_type,
            "result": fact.type if fact is not None else None,
            "event_id": fact.event_id if fact is not None else None,
            "reason": getattr(fact, "reason", None),
            "retryable": getattr(fact, "retryable", None),
            "attempts": self.attempts,
            "parked": self.parked,
        }


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
            parked = self._issuance.is_parked(issue.command_id)
            return Dispatched(
                kind, command_id, handled.fact, issue.order_id, handled.attempts, parked=parked
            )
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

    @property
    def parked(self) -> tuple[str, ...]:
        """The issue command ids whose outcome the issuance job is still inquiring about."""
        return self._issuance.parked

    def is_parked(self, command_id: str) -> bool:
        """Whether the issuance job is still inquiring about `command_id`."""
        return self._issuance.is_parked(command_id)

    def recover(self) -> list[Dispatched]:
        """The late `StampIssued` facts of parked issue commands, keyed by order id.

        Publish each, then `acknowledge` it; one not acknowledged is offered again.
        """
        recovered: list[Dispatched] = []
        for handled in self._issuance.recover():
            fact = handled.fact
            assert isinstance(fact, StampIssued)  # noqa: S101 - recover's type
            recovered.append(
                Dispatched("IssueStamps", fact.command_id, fact, fact.order_id, handled.attempts)
            )
        return recovered

    def acknowledge(self, dispatched: Dispatched) -> None:
        """A late fact from `recover` was published: the issuance job lets its command go."""
        if dispatched.command_id is not None:
            self._issuance.acknowledge(dispatched.command_id)
            self.counts["IssueStamps:recovered"] += 1
