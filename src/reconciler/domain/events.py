"""The facts from outside, as frozen, strictly validated pydantic models.

One model per event type and schema version. The ingest boundary strips fields a
producer added beyond the contract (they are kept in the raw record) and validates the
rest with these models: a JSON string where an integer is due is a wrong type.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Annotated, Literal, TypeAlias

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

EventId = Annotated[str, Field(min_length=1, max_length=128)]
Identifier = Annotated[str, Field(min_length=1, max_length=128)]
Rupiah = Annotated[int, Field(ge=0, le=10**15)]
PositiveRupiah = Annotated[int, Field(gt=0, le=10**15)]


# Every fact of a second carries the same timestamps, and datetimes are immutable: one
# parsed datetime is shared by them all. And one tzinfo object per UTC offset, since
# CPython compares aware datetimes field by field only when their tzinfo is the same
# object; otherwise it asks both for their offset, which made the decider's timer heap
# the replay's costliest step.
_PARSED: dict[str, datetime] = {}
# The years a timestamp may fall in. The decider adds deadlines to the clock and Python's
# datetimes end in year 9999, so a tick in 9999 would overflow there: it is bad input.
# Checked when a string is first parsed, so a cached timestamp costs nothing more.
FIRST_YEAR, LAST_YEAR = 1970, 2999
_MAX_PARSED = 4096
_ZONES: dict[tzinfo, tzinfo] = {}
_MAX_ZONES = 256


def _parse_iso(value: object) -> datetime:
    """Accept an ISO 8601 string with a UTC offset (or such a datetime), nothing else."""
    # The common case first, in as few steps as can be: a string seen before.
    if type(value) is str and (parsed := _PARSED.get(value)) is not None:
        return parsed
    if isinstance(value, datetime):
        return _require_offset(value)
    if not isinstance(value, str):
        msg = "timestamp must be an ISO 8601 string"
        raise ValueError(msg)  # noqa: TRY004 - pydantic reports ValueError as a field error
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        msg = f"not an ISO 8601 timestamp: {value[:40]!r}"
        raise ValueError(msg) from None
    zone = _require_offset(parsed).tzinfo
    if zone is not None and (shared := shared_zone(zone)) is not zone:
        parsed = parsed.replace(tzinfo=shared)
    if len(_PARSED) >= _MAX_PARSED:
        _PARSED.clear()
    _PARSED[value] = parsed
    return parsed


def shared_zone(zone: tzinfo) -> tzinfo:
    """The one tzinfo object kept for `zone`'s offset (while fewer than _MAX_ZONES are)."""
    return _ZONES.setdefault(zone, zone) if len(_ZONES) < _MAX_ZONES else zone


def _require_offset(value: datetime) -> datetime:
    """Reject naive timestamps (SPEC: every one carries its offset) and far-off years."""
    if value.tzinfo is None or value.utcoffset() is None:
        msg = "timestamp must carry a UTC offset"
        raise ValueError(msg)
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        msg = f"timestamp {value.isoformat()} is outside the years {FIRST_YEAR}-{LAST_YEAR}"
        raise ValueError(msg)
    return value


def _array_as_tuple(value: object) -> object:
    """A JSON array arrives as a list; the frozen model keeps it as a tuple."""
    return tuple(value) if isinstance(value, list) else value


AwareDatetime = Annotated[datetime, BeforeValidator(_parse_iso)]
PaymentMethod = Literal["QRIS", "VA", "EWALLET", "CARD"]
PaymentSource = Literal["callback", "settlement", "inquiry"]


class Fact(BaseModel):
    """The envelope every event carries."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    event_id: EventId
    version: Literal[1]
    occurred_at: AwareDatetime

    # Each concrete event narrows this to a Literal of its own name.
    type: str


class OrderPlaced(Fact):
    """A buyer ordered stamps on the portal."""

    type: Literal["OrderPlaced"] = "OrderPlaced"
    order_id: Identifier
    customer_ref: str
    quantity: Annotated[int, Field(ge=1, le=100)]
    unit_price: PositiveRupiah
    unit_fee: Rupiah
    total: PositiveRupiah
    expires_at: AwareDatetime
    channel: str

    @model_validator(mode="after")
    def _total_is_consistent(self) -> OrderPlaced:
        expected = self.quantity * (self.unit_price + self.unit_fee)
        if self.total != expected:
            msg = f"total {self.total} != quantity*(unit_price+unit_fee) = {expected}"
            raise ValueError(msg)
        return self

    @property
    def unit_total(self) -> int:
        """What one stamp costs the buyer, duty and fee together."""
        return self.unit_price + self.unit_fee


class OrderCancelled(Fact):
    """The customer or the portal cancelled an order."""

    type: Literal["OrderCancelled"] = "OrderCancelled"
    order_id: Identifier
    reason: str


class PaymentDebited(Fact):
    """One debit of the payer's money, possibly reported by several sources."""

    type: Literal["PaymentDebited"] = "PaymentDebited"
    payment_id: Identifier
    order_id: Identifier | None = None
    amount: PositiveRupiah
    method: PaymentMethod
    payer_ref: str
    source: PaymentSource


class StampIssued(Fact):
    """Stamps were delivered to the buyer."""

    type: Literal["StampIssued"] = "StampIssued"
    order_id: Identifier
    serial_numbers: Annotated[
        tuple[Identifier, ...],
        Field(min_length=1, max_length=1000),
        BeforeValidator(_array_as_tuple),
    ]
    command_id: Identifier | None = None

    @model_validator(mode="after")
    def _serials_are_unique(self) -> StampIssued:
        if len(set(self.serial_numbers)) != len(self.serial_numbers):
            msg = "serial_numbers must be unique"
            raise ValueError(msg)
        return self


class StampIssuanceFailed(Fact):
    """The issuer refused or broke."""

    type: Literal["StampIssuanceFailed"] = "StampIssuanceFailed"
    order_id: Identifier
    reason: str
    retryable: bool
    command_id: Identifier | None = None


class RefundSucceeded(Fact):
    """Money is back with the payer."""

    type: Literal["RefundSucceeded"] = "RefundSucceeded"
    refund_id: Identifier
    payment_id: Identifier
    amount: PositiveRupiah
    psp_refund_ref: str


class RefundFailed(Fact):
    """The payment provider could not return the money."""

    type: Literal["RefundFailed"] = "RefundFailed"
    refund_id: Identifier
    payment_id: Identifier
    reason: str
    retryable: bool


class ClockTicked(Fact):
    """The engine's clock advanced; the only thing that moves time."""

    type: Literal["ClockTicked"] = "ClockTicked"
    at: AwareDatetime


# -- operator actions: facts too, so a replay sees every hand that moved money -------------

EscalationRef = Annotated[str, Field(min_length=1, max_length=400)]
OperatorName = Annotated[str, Field(min_length=1, max_length=128)]
Note = Annotated[str, Field(min_length=1, max_length=2000)]
ResolutionOutcome = Literal["REFUNDED_OUTSIDE", "RETRY_REFUND", "NO_MONEY_AT_STAKE"]


class EscalationResolved(Fact):
    """An operator closed an escalated case and said what became of its money.

    `REFUNDED_OUTSIDE`: the money at stake went back another way (`reference` names the
    transfer); `RETRY_REFUND`: command the failed refund once more; `NO_MONEY_AT_STAKE`:
    looked at, nothing to move. The engine refuses an outcome that would leave money at
    risk with no case open, and says so in its report.
    """

    type: Literal["EscalationResolved"] = "EscalationResolved"
    escalation_id: EscalationRef
    outcome: ResolutionOutcome
    operator: OperatorName
    note: Note
    reference: Annotated[str, Field(min_length=1, max_length=200)] | None = None

    @model_validator(mode="after")
    def _outside_refund_names_its_transfer(self) -> EscalationResolved:
        if self.outcome == "REFUNDED_OUTSIDE" and self.reference is None:
            msg = "outcome REFUNDED_OUTSIDE needs the transfer's reference"
            raise ValueError(msg)
        return self


class HeldRefundsApproved(Fact):
    """An operator approved the refunds held under a refund-flood incident: pay them."""

    type: Literal["HeldRefundsApproved"] = "HeldRefundsApproved"
    incident_id: EscalationRef
    operator: OperatorName
    note: Note


class HeldRefundsRejected(Fact):
    """An operator rejected the held refunds: each becomes a case to settle by hand."""

    type: Literal["HeldRefundsRejected"] = "HeldRefundsRejected"
    incident_id: EscalationRef
    operator: OperatorName
    note: Note


AnyFact: TypeAlias = (
    OrderPlaced
    | OrderCancelled
    | PaymentDebited
    | StampIssued
    | StampIssuanceFailed
    | RefundSucceeded
    | RefundFailed
    | ClockTicked
    | EscalationResolved
    | HeldRefundsApproved
    | HeldRefundsRejected
)

FACT_MODELS: dict[tuple[str, int], type[Fact]] = {
    (model.model_fields["type"].default, 1): model
    for model in (
        OrderPlaced,
        OrderCancelled,
        PaymentDebited,
        StampIssued,
        StampIssuanceFailed,
        RefundSucceeded,
        RefundFailed,
        ClockTicked,
        EscalationResolved,
        HeldRefundsApproved,
        HeldRefundsRejected,
    )
}
