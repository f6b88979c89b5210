"""What the read models' queries return: frozen, typed rows, ready for an HTTP API.

Money is whole rupiah; times are aware UTC datetimes on the engine's clock; durations
are seconds. A `Page` carries an opaque `next_cursor` to pass back for the next page,
None on the last one.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

AgeBucket = Literal["<1h", "1-6h", "6-24h", ">24h"]
AGE_BUCKETS: tuple[AgeBucket, ...] = ("<1h", "1-6h", "6-24h", ">24h")
"""Ages of open escalations on their shard's engine clock: under 1 hour, 1 to 6, 6 to 24, more."""


class Row(BaseModel):
    """A read-model row: immutable, no extra fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Figures(Row):
    """SPEC rule 11's five figures: debited = kept + refunded + refund_pending + at_risk."""

    debited: int
    kept: int
    refunded: int
    refund_pending: int
    at_risk: int


class SourceRow(Row):
    """One shard: its engine clock, the last log position projected, its money now."""

    source: str
    clock: datetime | None
    position: int
    money: Figures


class Summary(Row):
    """The finance front page: totals, orders by status, open escalations, lag."""

    clock: datetime | None
    sources: list[SourceRow]
    totals: Figures
    orders: int
    orders_by_status: dict[str, int]
    open_cases: int
    open_cases_amount: int
    at_risk: int
    dead_letters: int
    position: int
    log_position: int


class OrderRow(Row):
    """An order as `reconcile` reports it, with its shard and when things happened to it."""

    source: str
    order_id: str
    status: str
    placed: bool
    quantity: int
    delivered: int
    debited: int
    kept: int
    refunded: int
    refund_pending: int
    at_risk: int
    cases: list[str]
    expires_at: datetime | None
    placed_at: datetime | None
    paid_at: datetime | None
    first_debit_at: datetime | None
    remedied_at: datetime | None
    updated_at: datetime


class StoryEntry(Row):
    """One fact or decision about an order, as the log holds it."""

    position: int
    kind: Literal["fact", "decision"]
    type: str
    record_id: str
    source: str
    payload: dict[str, Any]


class CaseRow(Row):
    """An escalation and, once closed, how it was resolved."""

    source: str
    escalation_id: str
    reason: str
    order_id: str | None
    subject: str
    amount: int
    opened_at: datetime
    resolved_at: datetime | None
    outcome: str | None
    operator: str | None
    note: str | None


class OpenCaseRow(Row):
    """An open escalation, aged on its shard's engine clock."""

    source: str
    escalation_id: str
    reason: str
    order_id: str | None
    subject: str
    amount: int
    opened_at: datetime
    clock: datetime
    age_seconds: float
    age_bucket: AgeBucket


class CaseCount(Row):
    """How many open escalations of one kind are in one age bucket, and the money in them."""

    kind: str
    age_bucket: AgeBucket
    count: int
    amount: int


class MoneyAt(Row):
    """The money as it stood at the end of an engine-clock hour (`hour` is its UTC start)."""

    hour: datetime
    debited: int
    kept: int
    refunded: int
    refund_pending: int
    at_risk: int


class MoneyOnDay(Row):
    """The money at the end of a day: its last hour's figures (`hour` is that hour's start)."""

    day: date
    hour: datetime
    debited: int
    kept: int
    refunded: int
    refund_pending: int
    at_risk: int


class OutcomeRow(Row):
    """How many commands or results of one kind, outcome and reason; stamps and rupiah."""

    kind: str
    outcome: str
    reason: str
    retryable: bool
    count: int
    stamps: int
    amount: int


class RemedyPercentiles(Row):
    """Seconds from an order's first debit to its remedy (nearest-rank percentiles)."""

    remedy: str | None
    count: int
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None


class DeadLetterRow(Row):
    """Input the engine could not use, with the reason; `preview` is the start of its bytes."""

    id: int
    source: str
    locator: str
    reason: str
    size: int
    preview: str


RowT = TypeVar("RowT", bound=Row)


class Page(BaseModel, Generic[RowT]):
    """Some rows, and the cursor that gives the next ones (None on the last page)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    items: list[RowT]
    next_cursor: str | None
