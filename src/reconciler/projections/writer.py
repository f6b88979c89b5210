"""Writing one page's changes: upserts keyed by natural ids, in the page's transaction.

Each table is written with one upsert of the page's rows (on PostgreSQL, a COPY into a
temporary table and one INSERT ... SELECT when there are many), so a row appears once
per page however often the page touched it. Rows carry their whole content, so writing
them again changes nothing. Firsts (`placed_at`, `remedied_at`, an order's remedy time,
an escalation) keep the value stored first. Outcome tallies add up, which is safe only
because they commit with the projection's position. Escalations are inserted before
resolutions are applied, so a case opened and closed in the same page ends closed.

`page_writer` gives where pages are written: a thread of their own on PostgreSQL, so
the server writes one page while the projector applies the next.
"""

from __future__ import annotations

from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from reconciler.projections.database import Upsert

if TYPE_CHECKING:
    from collections.abc import Callable

    from reconciler.domain.accounting import Money
    from reconciler.projections.changes import CaseOpened, Changes
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
    f"{column} = coalesce(t.{column}, excluded.{column})"
    if column in _FIRSTS
    else f"{column} = excluded.{column}"
    for column in _ORDER_COLUMNS[2:]
)
_MONEY_UPDATES = ", ".join(f"{column} = excluded.{column}" for column in _MONEY)

UPSERT_ORDER = Upsert(
    "rm_orders", _ORDER_COLUMNS, f"(source, order_id) DO UPDATE SET {_ORDER_UPDATES}"
)
INSERT_REMEDY = Upsert(
    "rm_remedy_times",
    ("source", "order_id", "remedy", "first_debit_at", "remedied_at", "seconds"),
    "(source, order_id) DO NOTHING",
)
INSERT_CASE = Upsert(
    "rm_cases",
    ("source", "escalation_id", "reason", "order_id", "subject", "amount", "opened_at"),
    "(source, escalation_id) DO NOTHING",
)
RESOLVE_CASE = (
    "UPDATE {schema}.rm_cases SET resolved_at = ?, outcome = ?, operator = ?, note = ?"
    " WHERE source = ? AND escalation_id = ?"
)
ADD_OUTCOMES = Upsert(
    "rm_outcomes",
    ("source", "kind", "outcome", "reason", "retryable", "count", "stamps", "amount"),
    "(source, kind, outcome, reason, retryable) DO UPDATE SET"
    " count = t.count + excluded.count, stamps = t.stamps + excluded.stamps,"
    " amount = t.amount + excluded.amount",
)
UPSERT_HOUR = Upsert(
    "rm_money_hourly",
    ("source", "hour", *_MONEY),
    f"(source, hour) DO UPDATE SET {_MONEY_UPDATES}",
)
UPSERT_SOURCE = Upsert(
    "rm_sources",
    ("source", "clock", "position", *_MONEY),
    "(source) DO UPDATE SET clock = excluded.clock, position = excluded.position,"
    f" {_MONEY_UPDATES}",
)
INSERT_STORY = Upsert(
    "rm_order_records", ("order_id", "position"), "(order_id, position) DO NOTHING"
)


def write_changes(session: Session, changes: Changes) -> None:
    """Write every row a page changed, in the session's transaction."""
    session.upsert(
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
    session.upsert(
        INSERT_REMEDY,
        [
            (r.source, r.order_id, r.remedy, r.first_debit_at, r.remedied_at, r.seconds)
            for r in changes.remedies.values()
        ],
    )
    session.upsert(
        INSERT_CASE,
        [
            (c.source, c.escalation_id, c.reason, c.order_id, c.subject, c.amount, c.opened_at)
            for c in _first_of_each(changes.cases_opened)
        ],
    )
    session.run_many(
        RESOLVE_CASE,
        [
            (c.resolved_at, c.outcome, c.operator, c.note, c.source, c.escalation_id)
            for c in changes.cases_closed
        ],
    )
    session.upsert(
        ADD_OUTCOMES,
        [(*key, t.count, t.stamps, t.amount) for key, t in sorted(changes.outcomes.items())],
    )
    session.upsert(
        UPSERT_HOUR,
        [(source, hour, *_figures(money)) for (source, hour), money in changes.hours.items()],
    )
    session.upsert(
        UPSERT_SOURCE,
        [
            (s.source, s.clock, s.position, *_figures(s.money))
            for s in sorted(changes.sources.values(), key=lambda s: s.source)
        ],
    )
    session.upsert(INSERT_STORY, sorted(changes.story))


def _first_of_each(cases: list[CaseOpened]) -> list[CaseOpened]:
    """Each escalation once, as first recorded: the rows of one statement share no key."""
    first: dict[tuple[str, str], CaseOpened] = {}
    for case in cases:
        first.setdefault((case.source, case.escalation_id), case)
    return list(first.values())


def _figures(money: Money) -> tuple[int, int, int, int, int]:
    return (money.debited, money.kept, money.refunded, money.refund_pending, money.at_risk)


_P = ParamSpec("_P")
_T = TypeVar("_T")


class _Inline(Executor):
    """Runs each call at once, in the caller's thread: a page written before the next is read."""

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        """Call `fn` now; its result or its error is in the future returned."""
        future: Future[_T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - handed back through the future
            future.set_exception(error)
        return future


def page_writer(*, threaded: bool) -> Executor:
    """Where pages are written: one thread of their own, in order, or the caller's thread."""
    if threaded:
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="projector-writer")
    return _Inline()
