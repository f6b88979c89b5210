"""Read-model rows as the database gives them back, turned into the typed rows of `rows`.

Columns come in the order the queries select them (see `queries`). SQLite hands back
times as text and flags as integers, PostgreSQL as datetimes and integers; both end as
aware UTC datetimes and booleans here.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from reconciler.projections.database import to_time
from reconciler.projections.rows import CaseRow, Figures, OpenCaseRow, OrderRow, SourceRow

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime


def required_time(value: object) -> datetime:
    """A time the table never leaves empty."""
    time = to_time(value)
    if time is None:
        msg = "a required time is missing in the read models"
        raise ValueError(msg)
    return time


def figures(row: Sequence[Any]) -> Figures:
    """The five money columns, in SPEC's order."""
    debited, kept, refunded, pending, at_risk = row
    return Figures(
        debited=debited, kept=kept, refunded=refunded, refund_pending=pending, at_risk=at_risk
    )


def source_row(row: tuple[Any, ...]) -> SourceRow:
    """An `rm_sources` row."""
    return SourceRow(source=row[0], clock=to_time(row[1]), position=row[2], money=figures(row[3:8]))


def order_row(row: tuple[Any, ...]) -> OrderRow:
    """An `rm_orders` row."""
    (source, order_id, status, placed, quantity, delivered, *money, cases) = row[:12]
    expires_at, placed_at, paid_at, first_debit_at, remedied_at, updated_at = row[12:]
    money_figures = figures(money)
    return OrderRow(
        source=source,
        order_id=order_id,
        status=status,
        placed=bool(placed),
        quantity=quantity,
        delivered=delivered,
        **money_figures.model_dump(),
        cases=json.loads(cases),
        expires_at=to_time(expires_at),
        placed_at=to_time(placed_at),
        paid_at=to_time(paid_at),
        first_debit_at=to_time(first_debit_at),
        remedied_at=to_time(remedied_at),
        updated_at=required_time(updated_at),
    )


def case_row(row: tuple[Any, ...]) -> CaseRow:
    """An `rm_cases` row."""
    source, escalation_id, reason, order_id, subject, amount, opened_at, resolved_at = row[:8]
    outcome, operator, note = row[8:]
    return CaseRow(
        source=source,
        escalation_id=escalation_id,
        reason=reason,
        order_id=order_id,
        subject=subject,
        amount=amount,
        opened_at=required_time(opened_at),
        resolved_at=to_time(resolved_at),
        outcome=outcome,
        operator=operator,
        note=note,
    )


def open_case_row(row: tuple[Any, ...]) -> OpenCaseRow:
    """An `rm_open_cases` row."""
    source, escalation_id, reason, order_id, subject, amount, opened_at, clock = row[:8]
    age_seconds, age_bucket = row[8:]
    return OpenCaseRow(
        source=source,
        escalation_id=escalation_id,
        reason=reason,
        order_id=order_id,
        subject=subject,
        amount=amount,
        opened_at=required_time(opened_at),
        clock=required_time(clock),
        age_seconds=float(age_seconds),
        age_bucket=age_bucket,
    )
