"""What one page of log records changes in the read models, gathered before it is written.

The model fills a `Changes` as it applies records; the writer turns it into upserts in
the page's transaction. Rows keyed by natural ids (a shard's order, hour, escalation)
hold their latest content, so writing a page twice, or in other page sizes, gives the
same rows. Only the outcome tallies are increments: they are applied exactly once
because they commit with the projection's position, or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from datetime import datetime

    from reconciler.domain.accounting import Money

OrderKey = tuple[str, str]
"""(source, order_id): orders are kept per shard, the way the engine decides them."""

OutcomeKey = tuple[str, str, str, str, int]
"""(source, kind, outcome, reason, retryable) of an `rm_outcomes` row."""


# The rows are named tuples: one is made for each order a record touches, and a named
# tuple of 14 fields builds in about a sixth of a frozen dataclass's time.
class OrderWrite(NamedTuple):
    """An `rm_orders` row as it stands after the page.

    `placed_at` and `remedied_at` are firsts: the stored value, once set, is kept.
    """

    source: str
    order_id: str
    status: str
    placed: bool
    quantity: int
    delivered: int
    money: Money
    cases: str
    expires_at: datetime | None
    placed_at: datetime | None
    paid_at: datetime | None
    first_debit_at: datetime | None
    remedied_at: datetime | None
    updated_at: datetime


class RemedyWrite(NamedTuple):
    """An `rm_remedy_times` row: the first time an order's money was remedied."""

    source: str
    order_id: str
    remedy: str
    first_debit_at: datetime
    remedied_at: datetime
    seconds: float


class CaseOpened(NamedTuple):
    """An escalation recorded by the engine."""

    source: str
    escalation_id: str
    reason: str
    order_id: str | None
    subject: str
    amount: int
    opened_at: datetime


class CaseClosed(NamedTuple):
    """An escalation's resolution recorded by the engine."""

    source: str
    escalation_id: str
    resolved_at: datetime
    outcome: str
    operator: str | None
    note: str


@dataclass(slots=True)
class Tally:
    """How many, how many stamps, how many rupiah: an increment to an `rm_outcomes` row."""

    count: int = 0
    stamps: int = 0
    amount: int = 0


class SourceWrite(NamedTuple):
    """An `rm_sources` row: a shard's clock, last record and money now."""

    source: str
    clock: datetime | None
    position: int
    money: Money


@dataclass(slots=True)
class Changes:
    """Everything a page changes, keyed so that a later record's row replaces an earlier one."""

    orders: dict[OrderKey, OrderWrite] = field(default_factory=dict)
    remedies: dict[OrderKey, RemedyWrite] = field(default_factory=dict)
    cases_opened: list[CaseOpened] = field(default_factory=list)
    cases_closed: list[CaseClosed] = field(default_factory=list)
    outcomes: dict[OutcomeKey, Tally] = field(default_factory=dict)
    hours: dict[tuple[str, datetime], Money] = field(default_factory=dict)
    sources: dict[str, SourceWrite] = field(default_factory=dict)
    story: set[tuple[str, int]] = field(default_factory=set)

    def count(self, key: OutcomeKey, *, stamps: int = 0, amount: int = 0) -> None:
        """Add one command or result to its outcome's tally."""
        tally = self.outcomes.get(key)
        if tally is None:
            tally = self.outcomes[key] = Tally()
        tally.count += 1
        tally.stamps += stamps
        tally.amount += amount
