"""The period's money by day and its orders, from the finance read models.

`ReadModels.money_by_day` gives, for each day the log's clock moved, the money at the end
of that day's last engine-clock hour, all shards summed: states, not flows. A day's
opening is the close of the day before (zero before the log began); a day the clock did
not move keeps the close before it. Movements are closing less opening.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from reconciler.audit.model import DayBalance
from reconciler.domain.accounting import Money

if TYPE_CHECKING:
    from reconciler.audit.period import Period
    from reconciler.projections.queries import ReadModels
    from reconciler.projections.rows import MoneyOnDay

_ORDERS_PAGE = 1000


def balances(views: ReadModels, period: Period) -> tuple[DayBalance, ...]:
    """Each day of the period: its opening and closing money."""
    closes = {row.day: _money(row) for row in views.money_by_day(zone=period.zone)}
    opening = Money()
    for day in sorted(closes):
        if day < period.start:
            opening = closes[day]
    days: list[DayBalance] = []
    for day in period.days():
        closing = closes.get(day, opening)
        days.append(DayBalance(day, opening, closing, recorded=day in closes))
        opening = closing
    return tuple(days)


def orders_placed(views: ReadModels, period: Period) -> Counter[str]:
    """Orders placed in the period (on the engine clock), counted by their status now."""
    statuses: Counter[str] = Counter()
    cursor: str | None = None
    while True:
        page = views.orders(limit=_ORDERS_PAGE, cursor=cursor)
        for order in page.items:
            if order.placed and order.placed_at is not None and period.contains(order.placed_at):
                statuses[order.status] += 1
        if (cursor := page.next_cursor) is None:
            return statuses


def _money(row: MoneyOnDay) -> Money:
    return Money(row.debited, row.kept, row.refunded, row.refund_pending, row.at_risk)
