"""Writing one page's changes: upserts keyed by natural ids, in the page's transaction.

Rows carry their whole content, so writing them again changes nothing. Firsts
(`placed_at`, `remedied_at`, an order's remedy time, an escalation) keep the value
stored first. Outcome tallies add up, which is safe only because they commit with the
projection's position. Escalations are inserted before resolutions are applied, so a
case opened and closed in the same page ends closed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.domain.accounting import Money
    from reconciler.projections.changes import Changes
    from reconciler.projections.database import Session

_MONEY = ("debited", "kept", "refunded", "refund_pending", "at_risk")
_ORDER_COLUMNS = (
    "source",
    "order_id",
    "status",
    "placed",
    "quantity",
    "delivered",
    *_MONEY,
    "cases",
    "expires_at",
    "placed_at",
    "paid_at",
    "first_debit_at",
    "remedied_at",
    "updated_at",
)
_FIRSTS = ("placed_at", "remedied_at")
_ORDER_UPDATES = ", ".join(
    f"{column} = coalesce(o.{column}, excluded.{column})"
    if column in _FIRSTS
    else f"{column} = excluded.{column}"
    for column in _ORDER_COLUMNS[2:]
)
UPSERT_ORDER = (
    f"INSERT INTO {{schema}}.rm_orders AS o ({', '.join(_ORDER_COLUMNS)})"  # noqa: S608 - fixed text only
    f" VALUES ({', '.join('?' * len(_ORDER_COLUMNS))})"
    f" ON CONFLICT (source, order_id) DO UPDATE SET {_ORDER_UPDATES}"
)
INSERT_REMEDY = (
    "INSERT INTO {schema}.rm_remedy_times"
    " (source, order_id, remedy, first_debit_at, remedied_at, seconds)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source, order_id) DO NOTHING"
)
INSERT_CASE = (
    "INSERT INTO {schema}.rm_cases"
    " (source, escalation_id, reason, order_id, subject, amount, opened_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (source, escalation_id) DO NOTHING"
)
RESOLVE_CASE = (
    "UPDATE {schema}.rm_cases SET resolved_at = ?, outcome = ?, operator = ?, note = ?"
    " WHERE source = ? AND escalation_id = ?"
)
ADD_OUTCOMES = (
    "INSERT INTO {schema}.rm_outcomes AS t"
    " (source, kind, outcome, reason, retryable, count, stamps, amount)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (source, kind, outcome, reason, retryable) DO UPDATE SET"
    " count = t.count + excluded.count, stamps = t.stamps + excluded.stamps,"
    " amount = t.amount + excluded.amount"
)
_MONEY_UPDATES = ", ".join(f"{column} = excluded.{column}" for column in _MONEY)
UPSERT_HOUR = (
    f"INSERT INTO {{schema}}.rm_money_hourly (source, hour, {', '.join(_MONEY)})"  # noqa: S608 - fixed text only
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
    f" ON CONFLICT (source, hour) DO UPDATE SET {_MONEY_UPDATES}"
)
UPSERT_SOURCE = (
    f"INSERT INTO {{schema}}.rm_sources (source, clock, position, {', '.join(_MONEY)})"  # noqa: S608 - fixed text only
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    f" ON CONFLICT (source) DO UPDATE SET clock = excluded.clock,"
    f" position = excluded.position, {_MONEY_UPDATES}"
)
INSERT_STORY = (
    "INSERT INTO {schema}.rm_order_records (order_id, position) VALUES (?, ?)"
    " ON CONFLICT (order_id, position) DO NOTHING"
)


def write_changes(session: Session, changes: Changes) -> None:
    """Write every row a page changed, in the session's transaction."""
    session.run_many(
        UPSERT_ORDER,
        [
            (
                row.source,
                row.order_id,
                row.status,
                int(row.placed),
                row.quantity,
                row.delivered,
                *_figures(row.money),
                row.cases,
                row.expires_at,
                row.placed_at,
                row.paid_at,
                row.first_debit_at,
                row.remedied_at,
                row.updated_at,
            )
            for row in changes.orders.values()
        ],
    )
    session.run_many(
        INSERT_REMEDY,
        [
            (r.source, r.order_id, r.remedy, r.first_debit_at, r.remedied_at, r.seconds)
            for r in changes.remedies.values()
        ],
    )
    session.run_many(
        INSERT_CASE,
        [
            (c.source, c.escalation_id, c.reason, c.order_id, c.subject, c.amount, c.opened_at)
            for c in changes.cases_opened
        ],
    )
    session.run_many(
        RESOLVE_CASE,
        [
            (c.resolved_at, c.outcome, c.operator, c.note, c.source, c.escalation_id)
            for c in changes.cases_closed
        ],
    )
    session.run_many(
        ADD_OUTCOMES,
        [(*key, t.count, t.stamps, t.amount) for key, t in sorted(changes.outcomes.items())],
    )
    session.run_many(
        UPSERT_HOUR,
        [(source, hour, *_figures(money)) for (source, hour), money in changes.hours.items()],
    )
    session.run_many(
        UPSERT_SOURCE,
        [
            (s.source, s.clock, s.position, *_figures(s.money))
            for s in sorted(changes.sources.values(), key=lambda s: s.source)
        ],
    )
    session.run_many(INSERT_STORY, sorted(changes.story))


def _figures(money: Money) -> tuple[int, int, int, int, int]:
    return (money.debited, money.kept, money.refunded, money.refund_pending, money.at_risk)
