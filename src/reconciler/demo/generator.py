"""The day's external facts: orders, debits as the provider reports them, portal deliveries.

Each order's story is drawn once, in placement order, from one seeded generator. A fact
has two times: `occurred_at` (when it happened at the source) and its arrival (when it
reaches the engine). They differ where it matters: a debit whose webhook was lost is
known only when the settlement file arrives hours later, still dated at the debit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from random import Random
from typing import TYPE_CHECKING, Any, NamedTuple

from reconciler.demo.config import UNIT_FEE, UNIT_PRICE
from reconciler.demo.facts import Arrival, Numbering, SerialNumbers, build
from reconciler.demo.payers import METHOD_WEIGHTS, METHODS, Method, payer_ref
from reconciler.demo.traffic import order_times
from reconciler.domain.events import (
    OrderCancelled,
    OrderPlaced,
    PaymentDebited,
    StampIssuanceFailed,
    StampIssued,
)

if TYPE_CHECKING:
    from datetime import datetime

    from reconciler.demo.config import DemoConfig
    from reconciler.domain.events import Fact

# How long a payment code stays valid: QR codes and wallet pushes are short-lived, a
# virtual account stays open for an hour.
_EXPIRY = {
    "QRIS": timedelta(minutes=15),
    "EWALLET": timedelta(minutes=15),
    "CARD": timedelta(minutes=30),
    "VA": timedelta(minutes=60),
}
_QUANTITIES = (1, 2, 3, 4, 5)
_QUANTITY_WEIGHTS = (85, 8, 4, 2, 1)
_CHANNELS = ("web", "mobile")
_CHANNEL_WEIGHTS = (55, 45)
# A buyer who has no stamp this long after paying starts to wonder, and may cancel.
_PATIENCE = timedelta(minutes=10)


class Payment(NamedTuple):
    """One debit as the payment provider knows it."""

    payment_id: str
    order_id: str | None
    amount: int
    method: Method
    payer_ref: str
    paid_at: datetime


@dataclass
class GeneratedDay:
    """The day's external facts in arrival order, and what went wrong in it."""

    arrivals: list[Arrival]
    modes: Counter[str]
    payments: dict[str, Payment]
    portal_stamps: int


class _Draft(NamedTuple):
    arrives_at: datetime
    seq: int
    model: type[Fact]
    fields: dict[str, Any]


@dataclass
class _Order:
    """What the generator tracks while it writes one order's story."""

    order_id: str
    placed_at: datetime
    quantity: int
    method: Method
    expires_at: datetime
    payer_ref: str
    modes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.quantity * (UNIT_PRICE + UNIT_FEE)


def generate_day(config: DemoConfig) -> GeneratedDay:
    """Draw the whole day from `config.seed`; the same config always gives the same day."""
    return _DayWriter(config).write()


class _DayWriter:
    def __init__(self, config: DemoConfig) -> None:
        self._config = config
        self._rng = Random(f"{config.seed}/generator")  # noqa: S311 - a seeded simulation
        self._drafts: list[_Draft] = []
        self._modes: Counter[str] = Counter()
        self._payments: dict[str, Payment] = {}
        self._payment_ids = Numbering("PAY")
        self._serials = SerialNumbers(f"EM{config.day:%y%m%d}")
        self._delivered: list[str] = []

    def write(self) -> GeneratedDay:
        for number, placed_at in enumerate(order_times(self._config, self._rng), start=1):
            self._order(self._new_order(number, placed_at))
        self._drafts.sort(key=lambda draft: (draft.arrives_at, draft.seq))
        event_ids = Numbering("evt")
        arrivals = [
            Arrival(draft.arrives_at, build(draft.model, event_id=event_ids.next(), **draft.fields))
            for draft in self._drafts
        ]
        return GeneratedDay(
            arrivals=arrivals,
            modes=self._modes,
            payments=self._payments,
            portal_stamps=len(self._delivered),
        )

    def _new_order(self, number: int, placed_at: datetime) -> _Order:
        rng = self._rng
        method = rng.choices(METHODS, weights=METHOD_WEIGHTS)[0]
        return _Order(
            order_id=f"ORD-{self._config.day:%y%m%d}-{number:06d}",
            placed_at=placed_at,
            quantity=rng.choices(_QUANTITIES, weights=_QUANTITY_WEIGHTS)[0],
            method=method,
            expires_at=placed_at + _EXPIRY[method],
            payer_ref=payer_ref(method, rng),
        )

    def _order(self, order: _Order) -> None:
        config, rng = self._config, self._rng
        placed = self._placed_fields(order)
        roll = rng.random()
        if roll < config.delivered_unpaid_rate:
            self._emit(order.placed_at, OrderPlaced, placed)
            self._deliver_unpaid(order)
        elif roll < config.delivered_unpaid_rate + config.abandon_rate:
            self._emit(order.placed_at, OrderPlaced, placed)
            order.modes.append("abandoned")
        elif roll < config.delivered_unpaid_rate + config.abandon_rate + config.cancel_unpaid_rate:
            self._emit(order.placed_at, OrderPlaced, placed)
            self._cancel_unpaid(order)
        else:
            self._pay(order, placed)
        self._modes.update(set(order.modes) or {"healthy"})

    def _placed_fields(self, order: _Order) -> dict[str, Any]:
        return {
            "occurred_at": order.placed_at,
            "order_id": order.order_id,
            "customer_ref": f"APL-{self._rng.randrange(10**9):09d}",
            "quantity": order.quantity,
            "unit_price": UNIT_PRICE,
            "unit_fee": UNIT_FEE,
            "total": order.total,
            "expires_at": order.expires_at,
            "channel": self._rng.choices(_CHANNELS, weights=_CHANNEL_WEIGHTS)[0],
        }

    def _deliver_unpaid(self, order: _Order) -> None:
        # A portal bug: stamps go out for an order whose payment never came.
        order.modes.append("delivered_unpaid")
        self._issue(order, order.placed_at + self._between(30, 300), order.quantity)

    def _cancel_unpaid(self, order: _Order) -> None:
        order.modes.append("cancelled_unpaid")
        window = (order.expires_at - order.placed_at).total_seconds()
        cancel_at = order.placed_at + self._between(20, window * 0.9)
        self._cancel(order, cancel_at, "buyer cancelled before paying")

    def _pay(self, order: _Order, placed: dict[str, Any]) -> None:
        config, rng = self._config, self._rng
        paid_at = self._payment_time(order)
        if rng.random() < config.order_event_late_rate:
            # The portal's order stream lagged: the debit reaches us before the order.
            order.modes.append("order_event_late")
            order_arrives = paid_at + self._between(60, 1200)
        else:
            order_arrives = order.placed_at
        self._emit(order_arrives, OrderPlaced, placed)

        if rng.random() < config.amount_mismatch_rate:
            order.modes.append("amount_mismatch")
            self._debit(order, paid_at, amount=order.quantity * UNIT_PRICE)
            if rng.random() < 0.4:  # noqa: PLR2004 - most give up after a wrong amount
                return
            paid_at += self._between(120, 600)
        if rng.random() < config.orphan_debit_rate:
            # Paid into the virtual account without the order reference.
            order.modes.append("orphan_debit")
            self._debit(order, paid_at, amount=order.total, orphan=True)
            return

        self._pay_in_full(order, paid_at, order_arrives)

    def _pay_in_full(self, order: _Order, paid_at: datetime, order_arrives: datetime) -> None:
        """The right amount reaches the provider; the stamps may still not come."""
        config, rng = self._config, self._rng
        noticed = self._debit(order, paid_at, amount=order.total)
        late = paid_at > order.expires_at
        if self._unnoticed(noticed, late=late):
            double_rate = config.double_debit_when_unnoticed_rate
        else:
            double_rate = config.double_debit_rate
        if rng.random() < double_rate:
            # Nothing happened on screen, so the buyer paid again.
            order.modes.append("double_debit")
            second = self._debit(order, paid_at + self._between(60, 600), amount=order.total)
            noticed = min((t for t in (noticed, second) if t is not None), default=None)
        # The portal sells nothing on an expired order, even when the money came.
        delivery = None if late or noticed is None else self._portal_delivery(order, noticed)
        if delivery is not None:
            delivery = (max(delivery[0], order_arrives + timedelta(seconds=1)), delivery[1])
        if self._buyer_gives_up(paid_at, None if delivery is None else delivery[0]):
            cancel_at = paid_at + _PATIENCE + self._between(0, 2100)
            if delivery is None or delivery[0] > cancel_at:
                order.modes.append("cancelled_after_payment")
                self._cancel(order, cancel_at, "buyer cancelled: paid, no stamp received")
                return
        if delivery is not None:
            self._issue(order, *delivery)

    def _payment_time(self, order: _Order) -> datetime:
        if self._rng.random() < self._config.late_payment_rate:
            # The QR expired on screen, but the buyer's bank app still paid it.
            order.modes.append("late_payment")
            return order.expires_at + self._between(60, 7200)
        window = (order.expires_at - order.placed_at).total_seconds() - 5
        delay = min(window, self._rng.lognormvariate(4.5, 0.8))
        return order.placed_at + timedelta(seconds=round(delay, 3))

    def _unnoticed(self, noticed: datetime | None, *, late: bool) -> bool:
        return late or noticed is None or self._config.in_outage(noticed)

    def _debit(
        self,
        order: _Order,
        paid_at: datetime,
        *,
        amount: int,
        orphan: bool = False,
    ) -> datetime | None:
        """Report one debit by every source that sees it; return when the portal learns of it."""
        config, rng = self._config, self._rng
        payment = Payment(
            payment_id=self._payment_ids.next(),
            order_id=None if orphan else order.order_id,
            amount=amount,
            method=order.method,
            payer_ref=order.payer_ref,
            paid_at=paid_at,
        )
        self._payments[payment.payment_id] = payment
        self._report(payment, "settlement", self._settlement_file_at(paid_at))
        loss_rate = config.webhook_loss_rate
        if config.in_outage(paid_at):
            loss_rate = config.webhook_loss_rate_in_outage
        if rng.random() >= loss_rate:
            return self._report(payment, "callback", paid_at + self._between(1, 8))
        order.modes.append("webhook_lost")
        if payment.order_id is not None and rng.random() < config.inquiry_rate:
            # The buyer pressed "check payment status" and the portal asked the provider.
            order.modes.append("inquiry")
            return self._report(payment, "inquiry", paid_at + self._between(180, 1200))
        return None

    def _report(self, payment: Payment, source: str, arrives_at: datetime) -> datetime:
        self._emit(
            arrives_at,
            PaymentDebited,
            {
                "occurred_at": payment.paid_at,
                "payment_id": payment.payment_id,
                "order_id": payment.order_id,
                "amount": payment.amount,
                "method": payment.method,
                "payer_ref": payment.payer_ref,
                "source": source,
            },
        )
        return arrives_at

    def _settlement_file_at(self, paid_at: datetime) -> datetime:
        """The provider's settlement file covers fixed cut-offs and arrives after a lag."""
        config = self._config
        periods = (paid_at - config.opening) // config.settlement_every + 1
        return config.opening + periods * config.settlement_every + config.settlement_lag

    def _portal_delivery(self, order: _Order, noticed: datetime) -> tuple[datetime, int] | None:
        """When the portal delivers after noticing the payment, and how many stamps."""
        config, rng = self._config, self._rng
        attempt_at = noticed + self._between(2, 30)
        if not config.in_outage(attempt_at):
            quantity = order.quantity
            if quantity > 1 and rng.random() < config.portal_partial_delivery_rate:
                order.modes.append("partial_delivery")
                quantity = rng.randrange(1, quantity)
            return attempt_at, quantity
        order.modes.append("outage_unissued")
        if rng.random() < config.portal_failure_report_rate:
            self._emit(
                attempt_at,
                StampIssuanceFailed,
                {
                    "occurred_at": attempt_at,
                    "order_id": order.order_id,
                    "reason": "ISSUER_UNAVAILABLE",
                    "retryable": True,
                    "command_id": None,
                },
            )
        if rng.random() < config.portal_backlog_rate:
            # After the outage the portal worked through part of its backlog, late.
            order.modes.append("portal_backlog")
            _, outage_end = config.outage
            return outage_end + self._between(60, 5400), order.quantity
        return None

    def _buyer_gives_up(self, paid_at: datetime, delivered_at: datetime | None) -> bool:
        waited_in_vain = delivered_at is None or delivered_at > paid_at + _PATIENCE
        return waited_in_vain and self._rng.random() < self._config.cancel_after_payment_rate

    def _issue(self, order: _Order, at: datetime, quantity: int) -> datetime:
        serials = list(self._serials.take(quantity))
        if self._delivered and self._rng.random() < self._config.duplicate_serial_rate:
            order.modes.append("duplicate_serial")
            serials[0] = self._rng.choice(self._delivered)
        self._delivered.extend(serials)
        self._emit(
            at,
            StampIssued,
            {
                "occurred_at": at,
                "order_id": order.order_id,
                "serial_numbers": tuple(serials),
                "command_id": None,
            },
        )
        return at

    def _cancel(self, order: _Order, at: datetime, reason: str) -> None:
        self._emit(
            at, OrderCancelled, {"occurred_at": at, "order_id": order.order_id, "reason": reason}
        )

    def _emit(self, arrives_at: datetime, model: type[Fact], fields: dict[str, Any]) -> None:
        self._drafts.append(_Draft(arrives_at, len(self._drafts), model, fields))

    def _between(self, low_seconds: float, high_seconds: float) -> timedelta:
        """A random duration, to the millisecond."""
        return timedelta(milliseconds=round(self._rng.uniform(low_seconds, high_seconds) * 1000))
