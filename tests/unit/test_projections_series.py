"""The pure parts of the read models' queries: percentiles, hours and days, cursors, DDL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from reconciler.domain.accounting import OrderStatus
from reconciler.projections import InvalidQueryError
from reconciler.projections.cursors import (
    MAX_LIMIT,
    checked_limit,
    decode_cursor,
    encode_cursor,
    member,
    one_of,
)
from reconciler.projections.rows import MoneyAt
from reconciler.projections.series import by_day, nearest_rank, summed_hours
from reconciler.projections.sql import TABLES, VIEWS, ddl_statements

WIB = timezone(timedelta(hours=7))


def hour(h: int, day: int = 4) -> datetime:
    """A UTC hour start on a September 2024 day."""
    return datetime(2024, 9, day, h, tzinfo=UTC)


def money(at: datetime, debited: int) -> MoneyAt:
    """An hour's figures with only `debited` and `at_risk` set (the rest zero)."""
    return MoneyAt(hour=at, debited=debited, kept=0, refunded=0, refund_pending=0, at_risk=debited)


@pytest.mark.parametrize(
    ("percent", "expected"),
    [(50, 50.0), (90, 90.0), (99, 100.0), (100, 100.0), (1, 10.0)],
)
def test_nearest_rank_on_ten_values(percent: int, expected: float) -> None:
    """p-th percentile of 10..100 is the smallest value with p% at or below it."""
    assert nearest_rank([10.0 * n for n in range(1, 11)], percent) == expected


def test_nearest_rank_rounds_the_rank_up() -> None:
    """Of seven values, p50 is the 4th and p90 the 7th (ranks ceil(3.5) and ceil(6.3))."""
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    assert (nearest_rank(values, 50), nearest_rank(values, 90)) == (4.0, 7.0)


def test_nearest_rank_of_nothing_is_none() -> None:
    """No values, no percentile."""
    assert nearest_rank([], 50) is None


def test_summed_hours_carry_each_shards_last_row_forward() -> None:
    """A shard with no row for an hour counts with its latest earlier row."""
    rows = [
        ("a", hour(2), 100, 0, 0, 0, 100),
        ("b", hour(3), 10, 0, 0, 0, 10),
        ("a", hour(4), 300, 0, 0, 0, 300),
        ("b", hour(4), 20, 0, 0, 0, 20),
    ]
    sums = summed_hours(rows)
    assert [(row.hour, row.debited) for row in sums] == [
        (hour(2), 100),
        (hour(3), 110),
        (hour(4), 320),
    ]


def test_a_day_is_its_last_hour_in_the_zone_asked_for() -> None:
    """Days read in WIB end at 17:00 UTC; each day's figures are its last hour's."""
    hours = [money(hour(16), 1), money(hour(17), 2), money(hour(23), 3), money(hour(1, 5), 4)]
    days = by_day(hours, WIB)
    assert [(row.day, row.debited) for row in days] == [
        (date(2024, 9, 4), 1),
        (date(2024, 9, 5), 4),
    ]
    assert [(row.day, row.debited) for row in by_day(hours, UTC)] == [
        (date(2024, 9, 4), 3),
        (date(2024, 9, 5), 4),
    ]


def test_days_in_a_zone_with_a_half_hour_offset_are_refused() -> None:
    """UTC hours cannot be split into days that start on the half hour."""
    with pytest.raises(InvalidQueryError, match="whole hours"):
        by_day([money(hour(1), 1)], timezone(timedelta(hours=5, minutes=30)))


def test_a_cursor_gives_back_its_key() -> None:
    """A cursor decodes to the sort key it was made from."""
    cursor = encode_cursor("orders", ["A-1", "topic:3"])
    assert decode_cursor("orders", cursor, (str, str)) == ["A-1", "topic:3"]


@pytest.mark.parametrize(
    "cursor",
    [encode_cursor("escalations", ["A", "b"]), encode_cursor("orders", ["A", 1]), "%%%", "e30"],
)
def test_a_cursor_of_another_query_or_shape_is_refused(cursor: str) -> None:
    """Another query's cursor, a wrong key and garbage all raise InvalidQueryError."""
    with pytest.raises(InvalidQueryError, match="not a cursor"):
        decode_cursor("orders", cursor, (str, str))


@pytest.mark.parametrize("limit", [0, -1, MAX_LIMIT + 1])
def test_a_limit_out_of_bounds_is_refused(limit: int) -> None:
    """Page sizes run from 1 to MAX_LIMIT."""
    with pytest.raises(InvalidQueryError, match="limit"):
        checked_limit(limit)


def test_filters_take_spec_names_only() -> None:
    """A status is one of SPEC's; anything else is refused, naming the choices."""
    assert member(OrderStatus, "REFUNDED", "status") is OrderStatus.REFUNDED
    assert member(OrderStatus, None, "status") is None
    with pytest.raises(InvalidQueryError, match="AWAITING_PAYMENT"):
        member(OrderStatus, "refunded", "status")
    with pytest.raises(InvalidQueryError, match="<1h"):
        one_of("2h", ("<1h", ">24h"), "age_bucket")


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_both_dialects_create_every_table_and_view(dialect: str) -> None:
    """Each DDL file creates all the tables a rebuild drops, and the open-cases view."""
    statements = ddl_statements(dialect)  # type: ignore[arg-type]
    created = " ".join(statements)
    for name in (*TABLES, *VIEWS):
        assert f"{name} (" in created or f"{name} AS" in created, name
    assert not any("--" in statement for statement in statements)
