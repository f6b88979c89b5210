"""Figures over time and distributions, computed from read-model rows in memory.

Each shard's hourly row holds its money at the end of that hour; a shard without a
row for an hour has not moved since its last row. So the money of all shards at the
end of an hour is the sum of each shard's latest row at or before it. A day's figures
are those of its last hour, the day read in any time zone whose offset is whole hours
(Indonesia's are), since hours are UTC hours.

Percentiles are nearest-rank: the smallest value with at least p% of the values at or
below it, PostgreSQL's `percentile_disc`. The rank is computed in integers, so it is
exact.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from reconciler.projections.cursors import InvalidQueryError
from reconciler.projections.rows import MoneyAt, MoneyOnDay

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from datetime import datetime, tzinfo

HourRow = tuple[str, "datetime", int, int, int, int, int]
"""(source, hour, debited, kept, refunded, refund_pending, at_risk)."""

_HOUR = timedelta(hours=1)


def summed_hours(rows: Iterable[HourRow]) -> list[MoneyAt]:
    """All shards' money at the end of each hour any of them has a row for, in time order."""
    latest: dict[str, tuple[int, int, int, int, int]] = {}
    sums: list[MoneyAt] = []
    ordered = sorted(rows, key=lambda row: (row[1], row[0]))
    for index, (source, hour, *figures) in enumerate(ordered):
        latest[source] = (figures[0], figures[1], figures[2], figures[3], figures[4])
        if index + 1 < len(ordered) and ordered[index + 1][1] == hour:
            continue  # more shards' rows for this hour follow
        debited, kept, refunded, pending, at_risk = (
            sum(column) for column in zip(*latest.values(), strict=True)
        )
        sums.append(
            MoneyAt(
                hour=hour,
                debited=debited,
                kept=kept,
                refunded=refunded,
                refund_pending=pending,
                at_risk=at_risk,
            )
        )
    return sums


def by_day(hours: Sequence[MoneyAt], zone: tzinfo) -> list[MoneyOnDay]:
    """Each day's last hour, the day read in `zone` (whole-hour offsets only)."""
    days: dict[object, MoneyOnDay] = {}
    for row in hours:
        offset = zone.utcoffset(row.hour)
        if offset is not None and offset % _HOUR:
            msg = f"days need a time zone whose offset is whole hours; {zone} is {offset}"
            raise InvalidQueryError(msg)
        day = row.hour.astimezone(zone).date()
        days[day] = MoneyOnDay(day=day, **row.model_dump())
    return list(days.values())


def nearest_rank(ordered: Sequence[float], percent: int) -> float | None:
    """The `percent`-th percentile of values sorted ascending; None if there are none."""
    if not ordered:
        return None
    rank = -(-percent * len(ordered) // 100)  # ceil(percent/100 * n), in integers
    return ordered[max(rank, 1) - 1]
