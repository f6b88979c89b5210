"""What the decider remembers between facts: orders, debits, refunds, attempts, timers.

Mutable by design: the decider updates one `State` in place, since copying the whole
state for every fact would cost more than the rules themselves. Nothing here does I/O,
so a state rebuilt from the same log is the same state.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

    from reconciler.domain.archive import OrderArchive
    from reconciler.domain.decisions import Case
    from reconciler.domain.events import Fact


# Amounts repeat (a few prices times a few quantities): sharing one int object per value
# rather than keeping one per fact saves 32 bytes an order and a debit. Bounded, like the
# timestamp cache in events.py.
_INTS: dict[int, int] = {}
_MAX_INTS = 4096


def shared_int(value: int) -> int:
    """`value`, as the one int object kept for it while the cache holds it."""
    found = _INTS.get(value)
    if found is not None:
        return found
    if len(_INTS) >= _MAX_INTS:
        _INTS.clear()
    _INTS[value] = value
    return value


class RefundStatus(Enum):
    """Where a commanded refund stands."""

    AWAITING_RESULT = "awaiting_result"
    AWAITING_RETRY = "awaiting_retry"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # The refund-flood guard holds it: not commanded, the money at risk under an incident.
    HELD = "held"
    # An operator rejected it while held: at risk, under a case of its own.
    REJECTED = "rejected"
    # Held, then dropped: the stamps it would have paid back arrived after all.
    WITHDRAWN = "withdrawn"


PENDING_REFUND = (RefundStatus.AWAITING_RESULT, RefundStatus.AWAITING_RETRY)


@dataclass(slots=True)
class Refund:
    """One refund per (payment, reason); retried under the same id."""

    refund_id: str
    payment_id: str
    order_id: str | None
    amount: int
    reason: Case
    attempt: int = 1
    status: RefundStatus = RefundStatus.AWAITING_RESULT
    refunded: int = 0
    # The escalation a person must close while this refund is at risk, if one is open.
    escalation: str | None = None

    @property
    def pending(self) -> bool:
        """Commanded and not yet settled either way."""
        return self.status in PENDING_REFUND


@dataclass(slots=True)
class Debit:
    """One debit of a payer's money, however many sources reported it."""

    payment_id: str
    order_id: str | None
    amount: int
    recorded_at: datetime
    refund: Refund | None = None
    orphan: bool = False


@dataclass(slots=True)
class Attempt:
    """One issuance command and whether its result is still awaited."""

    number: int
    command_id: str
    quantity: int
    open: bool = True


@dataclass(slots=True)
class Order:
    """An order as the engine knows it; `placed` is False for ids seen only in other facts.

    Millions of these stay in memory for a long replay, so an order keeps no empty
    containers: a single debit is held as itself, and `cases` and `escalations` are the
    shared empty tuple until something is added (then a list). Its unit total is derived
    from `total` and `quantity` rather than kept as an int object of its own.
    """

    order_id: str
    placed: bool = False
    quantity: int = 0
    total: int = 0
    expires_at: datetime | None = None
    cancelled: bool = False
    payment: Debit | None = None
    paid_at: datetime | None = None
    delivered: int = 0
    first_delivery_at: datetime | None = None
    attempts: int = 0
    open_attempt: Attempt | None = None
    # Set once a refund was commanded for the stamps not delivered (rules 2, 6, 9):
    # from then on a delivery is a double remedy (rule 10).
    undelivered_refunded: bool = False
    cases: list[Case] | tuple[()] = ()
    # The escalations open on this order (closed ones are removed when resolved).
    escalations: list[str] | tuple[()] = ()
    # The debits attached, in attach order: none, one debit as itself, or a tuple.
    held_debits: Debit | tuple[Debit, ...] | None = field(default=None, repr=False)

    @property
    def unit_total(self) -> int:
        """What one stamp costs the buyer; 0 for an order never placed."""
        # OrderPlaced guarantees total == quantity * (unit_price + unit_fee).
        return self.total // self.quantity if self.quantity else 0

    @property
    def debits(self) -> tuple[Debit, ...]:
        """The debits attached to this order, in the order they were attached."""
        held = self.held_debits
        if held is None:
            return ()
        if isinstance(held, tuple):
            return held
        return (held,)

    def attach_debit(self, debit: Debit) -> None:
        """Add a debit to the order's debits."""
        held = self.held_debits
        if held is None:
            self.held_debits = debit
        elif isinstance(held, tuple):
            self.held_debits = (*held, debit)
        else:
            self.held_debits = (held, debit)

    def add_case(self, case: Case) -> None:
        """Note a case opened on this order, once."""
        if not self.cases:
            self.cases = [case]
        elif case not in self.cases:
            self.cases.append(case)

    def add_escalation(self, escalation_id: str) -> None:
        """Note an escalation opened on this order."""
        if self.escalations:
            self.escalations.append(escalation_id)
        else:
            self.escalations = [escalation_id]

    def remove_escalation(self, escalation_id: str | None) -> None:
        """Take a closed escalation off the order's open list, if it is there."""
        escalations = self.escalations
        if isinstance(escalations, list) and escalation_id in escalations:
            escalations.remove(escalation_id)
            if not escalations:
                self.escalations = ()


@dataclass(frozen=True, slots=True)
class Unmatched:
    """A result the engine recorded but could not tie to a command it is waiting on."""

    event_id: str
    type: str
    subject: str
    why: str


@dataclass(frozen=True, slots=True)
class Escalation:
    """An open escalation: what it is about, so an operator's resolution can be judged."""

    escalation_id: str
    reason: Case
    order_id: str | None
    refund_id: str | None


@dataclass(slots=True)
class Incident:
    """A refund flood: the refunds held under one escalation until it is released."""

    incident_id: str
    held: list[str] = field(default_factory=list)
    orders: set[str] = field(default_factory=set)


class TimerKind(Enum):
    """The deadlines SPEC defines, each checked again when it falls due."""

    ISSUE_SLA = 1
    ATTEMPT_TIMEOUT = 2
    ORPHAN_WINDOW = 3
    PAYMENT_GRACE = 4
    REFUND_RETRY = 5


@dataclass(slots=True)
class State:
    """Everything the rules need; the clock is the last tick's `at`."""

    clock: datetime | None = None
    before_first_tick: list[Fact] = field(default_factory=list)
    orders: dict[str, Order] = field(default_factory=dict)
    payments: dict[str, Debit] = field(default_factory=dict)
    # Debits naming an order not (yet) placed, waiting out ORPHAN_WINDOW, by order id;
    # those with no order id at all wait under the empty key.
    orphans: dict[str, list[Debit]] = field(default_factory=dict)
    refunds: dict[str, Refund] = field(default_factory=dict)
    serials: set[str] = field(default_factory=set)
    escalated: set[str] = field(default_factory=set)
    open_escalations: dict[str, Escalation] = field(default_factory=dict)
    # How often a decision id was taken, for decisions that may recur about one subject
    # (a refund held again, a case escalated again after an operator retried it).
    occurrences: Counter[str] = field(default_factory=Counter)
    # The refund-flood guard: when recent refunds were commanded, and the open incident.
    recent_refunds: deque[datetime] = field(default_factory=deque)
    incident: Incident | None = None
    unmatched: list[Unmatched] = field(default_factory=list)
    timers: list[tuple[datetime, int, TimerKind, str, int]] = field(default_factory=list)
    timer_seq: int = 0
    # A cold tier for long runs (archive.py), if the caller gave one: settled orders move
    # there past its bound, and every lookup above still finds them.
    archive: OrderArchive | None = None

    def __post_init__(self) -> None:
        """Wire the archive, if any, into the lookups."""
        if self.archive is not None:
            self.archive.attach(self)

    def archive_settled(self) -> int:
        """Move settled orders to the archive if memory is past its bound; how many moved.

        Call it between facts, never while a fact is being decided.
        """
        return 0 if self.archive is None else self.archive.spill()

    def order(self, order_id: str) -> Order:
        """The order with this id, created as not placed if never seen."""
        found = self.orders.get(order_id)
        if found is None:
            found = self.orders[order_id] = Order(order_id)
        return found

    def schedule(self, due: datetime, kind: TimerKind, key: str, token: int = 0) -> None:
        """Arm a deadline; it is checked at the first tick whose `at` is >= `due`."""
        self.timer_seq += 1
        heapq.heappush(self.timers, (due, self.timer_seq, kind, key, token))

    def pop_due(self) -> tuple[TimerKind, str, int] | None:
        """The earliest deadline that has fallen due at the current clock, if any."""
        if not self.timers or self.clock is None or self.timers[0][0] > self.clock:
            return None
        _, _, kind, key, token = heapq.heappop(self.timers)
        return kind, key, token
