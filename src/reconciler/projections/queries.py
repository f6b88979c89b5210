"""The finance read models' query interface: typed rows, validated filters, keyset pages.

`ReadModels(store)` reads the views beside a log store (SQLite or PostgreSQL), each call
in one consistent snapshot. The first call creates the tables if the projector has not
run yet, so an empty log reads as empty rather than failing. Filters take SPEC's names
(`OrderStatus`, `Case`, age buckets) and refuse anything else with InvalidQueryError;
paged calls return a `Page` whose `next_cursor` gives the next rows.

What the rows mean is in `projections/README.md`; `reconciler project` keeps them up
to date.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from reconciler.domain.accounting import OrderStatus
from reconciler.domain.decisions import Case
from reconciler.projections import decoding
from reconciler.projections.cursors import (
    DEFAULT_LIMIT,
    InvalidQueryError,
    checked_limit,
    decode_cursor,
    encode_cursor,
    member,
    one_of,
)
from reconciler.projections.database import view_database
from reconciler.projections.rows import (
    AGE_BUCKETS,
    CaseCount,
    CaseRow,
    DeadLetterRow,
    Figures,
    MoneyAt,
    MoneyOnDay,
    OpenCaseRow,
    OrderRow,
    OutcomeRow,
    Page,
    RemedyPercentiles,
    RowT,
    StoryEntry,
    Summary,
)
from reconciler.projections.series import by_day, nearest_rank, summed_hours
from reconciler.projections.shard import REMEDIES

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from contextlib import AbstractContextManager
    from datetime import tzinfo

    from reconciler.projections.database import Session
    from reconciler.store import LogStore

_ORDER_COLUMNS = (
    "source, order_id, status, placed, quantity, delivered, debited, kept, refunded,"
    " refund_pending, at_risk, cases, expires_at, placed_at, paid_at, first_debit_at,"
    " remedied_at, updated_at"
)
_CASE_COLUMNS = (
    "source, escalation_id, reason, order_id, subject, amount, opened_at, resolved_at,"
    " outcome, operator, note"
)
_OPEN_CASE_COLUMNS = (
    "source, escalation_id, reason, order_id, subject, amount, opened_at, clock,"
    " age_seconds, age_bucket"
)
_MONEY = "debited, kept, refunded, refund_pending, at_risk"
_PREVIEW_BYTES = 200
_REMEDIES = tuple(sorted(status.value for status in REMEDIES))


class AmbiguousOrderError(LookupError):
    """An order id that more than one shard holds: name the source too."""

    def __init__(self, order_id: str, sources: Sequence[str]) -> None:
        """Name the order and the shards that hold it."""
        super().__init__(f"order {order_id!r} is held by {', '.join(sources)}: give its source")
        self.order_id = order_id
        self.sources = list(sources)


class ReadModels:
    """Queries over the finance read models beside a log store."""

    def __init__(self, store: LogStore) -> None:
        """Read the views beside `store`'s log; nothing is read yet."""
        self._store = store
        self._views = view_database(store)
        self._tables_ready = False

    # -- the front page ---------------------------------------------------------------

    def summary(self) -> Summary:
        """Totals, orders by status, open escalations, dead letters and the projection's lag."""
        with self._read() as session:
            sources = [decoding.source_row(row) for row in session.rows(_SELECT_SOURCES)]
            statuses = dict(session.rows(_COUNT_BY_STATUS))
            open_cases, open_amount = session.rows(_COUNT_OPEN_CASES)[0]
            (dead_letters,) = session.rows(_COUNT_DEAD_LETTERS)[0]
            (log_position,) = session.rows(_LOG_POSITION)[0]
            position = session.tracked()
        totals = Figures(
            **{
                name: sum(getattr(source.money, name) for source in sources)
                for name in Figures.model_fields
            }
        )
        clocks = [source.clock for source in sources if source.clock is not None]
        return Summary(
            clock=max(clocks, default=None),
            sources=sources,
            totals=totals,
            orders=sum(statuses.values()),
            orders_by_status={
                status.value: statuses.get(status.value, 0) for status in OrderStatus
            },
            open_cases=open_cases,
            open_cases_amount=open_amount,
            at_risk=totals.at_risk,
            dead_letters=dead_letters,
            position=position,
            log_position=log_position,
        )

    # -- orders -----------------------------------------------------------------------

    def orders(
        self,
        *,
        status: str | None = None,
        case: str | None = None,
        source: str | None = None,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> Page[OrderRow]:
        """Orders by id, optionally of one SPEC status, with one case, or of one shard."""
        wanted_status = member(OrderStatus, status, "status")
        wanted_case = member(Case, case, "case")
        limit = checked_limit(limit)
        after = decode_cursor("orders", cursor, (str, str))
        where: list[str] = []
        parameters: list[object] = []
        if wanted_status is not None:
            where.append("status = ?")
            parameters.append(wanted_status.value)
        if wanted_case is not None:
            where.append("cases LIKE ? ESCAPE '!'")
            parameters.append(f'%"{_like_escaped(wanted_case.value)}"%')
        if source is not None:
            where.append("source = ?")
            parameters.append(source)
        if after is not None:
            where.append("(order_id, source) > (?, ?)")
            parameters.extend(after)
        statement = (
            f"SELECT {_ORDER_COLUMNS} FROM {{schema}}.rm_orders{_where(where)}"  # noqa: S608 - fixed fragments and placeholders only
            " ORDER BY order_id, source LIMIT ?"
        )
        with self._read() as session:
            rows = session.rows(statement, [*parameters, limit + 1])
        return _page(
            "orders",
            [decoding.order_row(row) for row in rows],
            limit,
            lambda r: [r.order_id, r.source],
        )

    def order(self, order_id: str, *, source: str | None = None) -> OrderRow | None:
        """One order's row; None if no shard holds it. AmbiguousOrderError if several do."""
        statement = f"SELECT {_ORDER_COLUMNS} FROM {{schema}}.rm_orders WHERE order_id = ?"  # noqa: S608 - fixed text only
        parameters: list[object] = [order_id]
        if source is not None:
            statement += " AND source = ?"
            parameters.append(source)
        with self._read() as session:
            rows = [
                decoding.order_row(row)
                for row in session.rows(statement + " ORDER BY source", parameters)
            ]
        if len(rows) > 1:
            raise AmbiguousOrderError(order_id, [row.source for row in rows])
        return rows[0] if rows else None

    def order_story(self, order_id: str) -> list[StoryEntry]:
        """Every fact and decision about an order (its payments' too), in log order."""
        with self._read() as session:
            rows = session.rows(_SELECT_STORY, (order_id,))
        return [
            StoryEntry(
                position=position,
                kind=kind,
                type=type_,
                record_id=record_id,
                source=source,
                payload=json.loads(bytes(payload)),
            )
            for position, kind, record_id, type_, payload, source in rows
        ]

    # -- escalations ------------------------------------------------------------------

    def open_cases(
        self,
        *,
        kind: str | None = None,
        age_bucket: str | None = None,
        source: str | None = None,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> Page[OpenCaseRow]:
        """Open escalations, oldest first, optionally of one kind or age bucket."""
        wanted_kind = member(Case, kind, "kind")
        wanted_bucket = one_of(age_bucket, AGE_BUCKETS, "age_bucket")
        where, parameters = _case_filters(wanted_kind, source)
        if wanted_bucket is not None:
            where.append("age_bucket = ?")
            parameters.append(wanted_bucket)
        rows = self._cases_page(
            "open_cases",
            columns=_OPEN_CASE_COLUMNS,
            table="rm_open_cases",
            where=where,
            parameters=parameters,
            limit=limit,
            cursor=cursor,
        )
        return _page("open_cases", [decoding.open_case_row(row) for row in rows], limit, _case_key)

    def open_case_counts(self) -> list[CaseCount]:
        """Open escalations counted by kind and age bucket, with the money in them."""
        with self._read() as session:
            rows = session.rows(_COUNT_OPEN_BY_BUCKET)
        counts = [
            CaseCount(kind=kind, age_bucket=bucket, count=count, amount=amount)
            for kind, bucket, count, amount in rows
        ]
        return sorted(counts, key=lambda c: (c.kind, AGE_BUCKETS.index(c.age_bucket)))

    def escalations(
        self,
        *,
        resolved: bool | None = None,
        kind: str | None = None,
        source: str | None = None,
        limit: int = DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> Page[CaseRow]:
        """Escalations, oldest first, with their resolution once closed."""
        where, parameters = _case_filters(member(Case, kind, "kind"), source)
        if resolved is not None:
            where.append("resolved_at IS NOT NULL" if resolved else "resolved_at IS NULL")
        rows = self._cases_page(
            "escalations",
            columns=_CASE_COLUMNS,
            table="rm_cases",
            where=where,
            parameters=parameters,
            limit=limit,
            cursor=cursor,
        )
        return _page("escalations", [decoding.case_row(row) for row in rows], limit, _case_key)

    # -- money over time, outcomes, remedy times ---------------------------------------

    def money_by_hour(
        self,
        *,
        source: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[MoneyAt]:
        """The money at the end of each engine-clock hour (all shards, or one), oldest first."""
        where: list[str] = []
        parameters: list[object] = []
        if source is not None:
            where.append("source = ?")
            parameters.append(source)
        if until is not None:
            where.append("hour <= ?")
            parameters.append(_aware(until, "until"))
        statement = f"SELECT source, hour, {_MONEY} FROM {{schema}}.rm_money_hourly{_where(where)}"  # noqa: S608 - fixed fragments and placeholders only
        with self._read() as session:
            rows = session.rows(statement, parameters)
        hours = summed_hours((row[0], decoding.required_time(row[1]), *row[2:]) for row in rows)
        if since is not None:
            start = _aware(since, "since")
            hours = [row for row in hours if row.hour >= start]
        return hours

    def money_by_day(self, *, zone: tzinfo = UTC, source: str | None = None) -> list[MoneyOnDay]:
        """The money at the end of each day (its last hour), days read in `zone`."""
        return by_day(self.money_by_hour(source=source), zone)

    def outcomes(self, *, source: str | None = None) -> list[OutcomeRow]:
        """Commands and results by kind, outcome and reason (all shards, or one)."""
        where, parameters = (["source = ?"], [source]) if source is not None else ([], [])
        statement = (
            "SELECT kind, outcome, reason, retryable, sum(count), sum(stamps), sum(amount)"  # noqa: S608 - fixed fragments and placeholders only
            f" FROM {{schema}}.rm_outcomes{_where(where)}"
            " GROUP BY kind, outcome, reason, retryable ORDER BY kind, outcome, reason, retryable"
        )
        with self._read() as session:
            rows = session.rows(statement, parameters)
        return [
            OutcomeRow(
                kind=kind,
                outcome=outcome,
                reason=reason,
                retryable=bool(retryable),
                count=int(count),
                stamps=int(stamps),
                amount=int(amount),
            )
            for kind, outcome, reason, retryable, count, stamps, amount in rows
        ]

    def remedy_percentiles(
        self, *, remedy: str | None = None, source: str | None = None
    ) -> RemedyPercentiles:
        """Seconds from first debit to remedy: p50, p90, p99 and the longest."""
        wanted = one_of(remedy, _REMEDIES, "remedy")
        where: list[str] = []
        parameters: list[object] = []
        if wanted is not None:
            where.append("remedy = ?")
            parameters.append(wanted)
        if source is not None:
            where.append("source = ?")
            parameters.append(source)
        with self._read() as session:
            if self._views.dialect == "postgresql":
                statement = f"{_PERCENTILES_SQL} FROM {{schema}}.rm_remedy_times{_where(where)}"
                count, p50, p90, p99, longest = session.rows(statement, parameters)[0]
                return RemedyPercentiles(
                    remedy=wanted, count=count, p50=p50, p90=p90, p99=p99, max=longest
                )
            statement = (
                f"SELECT seconds FROM {{schema}}.rm_remedy_times{_where(where)} ORDER BY seconds"  # noqa: S608 - fixed fragments and placeholders only
            )
            seconds = [float(row[0]) for row in session.rows(statement, parameters)]
        return RemedyPercentiles(
            remedy=wanted,
            count=len(seconds),
            p50=nearest_rank(seconds, 50),
            p90=nearest_rank(seconds, 90),
            p99=nearest_rank(seconds, 99),
            max=seconds[-1] if seconds else None,
        )

    # -- dead letters -----------------------------------------------------------------

    def dead_letters(
        self, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
    ) -> Page[DeadLetterRow]:
        """Input the engine could not use, in the order it was kept, with the reason."""
        limit = checked_limit(limit)
        after = decode_cursor("dead_letters", cursor, (int,))
        after_id = int(after[0]) if after is not None else 0
        letters = self._store.dead_letters(after_id=after_id, limit=limit + 1)
        rows = [
            DeadLetterRow(
                id=letter.id,
                source=letter.source,
                locator=letter.locator,
                reason=letter.reason,
                size=len(letter.raw),
                preview=letter.raw[:_PREVIEW_BYTES].decode("utf-8", errors="replace"),
            )
            for letter in letters
        ]
        return _page("dead_letters", rows, limit, lambda row: [row.id])

    # -- plumbing ---------------------------------------------------------------------

    def _read(self) -> AbstractContextManager[Session]:
        if not self._tables_ready:
            self._views.create_tables()
            self._tables_ready = True
        return self._views.read()

    def _cases_page(  # noqa: PLR0913 - one query shape for both escalation lists
        self,
        query: str,
        *,
        columns: str,
        table: str,
        where: list[str],
        parameters: list[object],
        limit: int,
        cursor: str | None,
    ) -> list[tuple[Any, ...]]:
        limit = checked_limit(limit)
        after = decode_cursor(query, cursor, (str, str, str))
        if after is not None:
            where.append("(opened_at, source, escalation_id) > (?, ?, ?)")
            parameters.extend([datetime.fromisoformat(str(after[0])), *after[1:]])
        statement = (
            f"SELECT {columns} FROM {{schema}}.{table}{_where(where)}"  # noqa: S608 - fixed fragments and placeholders only
            " ORDER BY opened_at, source, escalation_id LIMIT ?"
        )
        with self._read() as session:
            return session.rows(statement, [*parameters, limit + 1])


_SELECT_SOURCES = (
    f"SELECT source, clock, position, {_MONEY} FROM {{schema}}.rm_sources ORDER BY source"  # noqa: S608 - fixed text only
)
_COUNT_BY_STATUS = "SELECT status, count(*) FROM {schema}.rm_orders GROUP BY status"
_COUNT_OPEN_CASES = (
    "SELECT count(*), coalesce(sum(amount), 0) FROM {schema}.rm_cases WHERE resolved_at IS NULL"
)
_COUNT_DEAD_LETTERS = "SELECT count(*) FROM {schema}.dead_letters"
_LOG_POSITION = "SELECT coalesce(max(position), 0) FROM {schema}.records"
_COUNT_OPEN_BY_BUCKET = (
    "SELECT reason, age_bucket, count(*), coalesce(sum(amount), 0)"
    " FROM {schema}.rm_open_cases GROUP BY reason, age_bucket"
)
_SELECT_STORY = (
    "SELECT r.position, r.kind, r.record_id, r.type, r.payload, r.source"
    " FROM {schema}.rm_order_records AS s JOIN {schema}.records AS r ON r.position = s.position"
    " WHERE s.order_id = ? ORDER BY s.position"
)
_PERCENTILES_SQL = (
    "SELECT count(*),"
    " percentile_disc(0.5) WITHIN GROUP (ORDER BY seconds),"
    " percentile_disc(0.9) WITHIN GROUP (ORDER BY seconds),"
    " percentile_disc(0.99) WITHIN GROUP (ORDER BY seconds),"
    " max(seconds)"
)


def _where(conditions: Sequence[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def _like_escaped(text: str) -> str:
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def _case_filters(kind: Case | None, source: str | None) -> tuple[list[str], list[object]]:
    where: list[str] = []
    parameters: list[object] = []
    if kind is not None:
        where.append("reason = ?")
        parameters.append(kind.value)
    if source is not None:
        where.append("source = ?")
        parameters.append(source)
    return where, parameters


def _page(
    query: str, rows: list[RowT], limit: int, key: Callable[[RowT], list[str | int]]
) -> Page[RowT]:
    if len(rows) <= limit:
        return Page[RowT](items=rows, next_cursor=None)
    items = rows[:limit]
    return Page[RowT](items=items, next_cursor=encode_cursor(query, key(items[-1])))


def _case_key(row: CaseRow | OpenCaseRow) -> list[str | int]:
    return [row.opened_at.isoformat(), row.source, row.escalation_id]


def _aware(value: datetime, name: str) -> datetime:
    if value.utcoffset() is None:
        msg = f"{name} must carry a UTC offset: {value.isoformat()}"
        raise InvalidQueryError(msg)
    return value
