"""`/api/v1/...`: the finance read models over HTTP, for a viewer (read only).

    GET /summary                      money figures, orders by status, open cases, lag
    GET /orders                       ?status= &case= &source= &limit= &cursor=
    GET /orders/{order_id}            one order's row (?source= when several shards hold it)
    GET /orders/{order_id}/story      every fact and decision about it, in log order
    GET /cases                        open escalations, oldest first: ?kind= &age_bucket= ...
    GET /cases/counts                 open escalations by kind and age bucket
    GET /escalations                  every escalation: ?resolved= &kind= ...
    GET /money/hourly                 the money at the end of each engine-clock hour
    GET /money/daily                  the money at the end of each day, in ?zone=+07:00
    GET /outcomes                     commands and results counted
    GET /remedy-times                 seconds from first debit to remedy, percentiles
    GET /dead-letters                 input the engine could not use

The rows are the read models' own (`reconciler.projections.rows`). Lists come in pages:
pass the page's `next_cursor` back as `cursor`. A filter outside SPEC's names, a bad
limit or a cursor of another list is 400 `invalid_query`; an unknown order is 404
`order_not_found`; an order id several shards hold, without `source`, is 409
`ambiguous_order`. Before reading, each route lets the app's `ReadModelRefresher` catch
the read models up with the log (`freshness`); `use_refresher` sets one up for an app.
"""

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from http import HTTPStatus
from typing import Annotated, Any

from eventsourcing.persistence import PersistenceError
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from pydantic import BaseModel, ConfigDict

from reconciler.api.auth import ViewerAccess
from reconciler.api.context import PREFIX, api_context
from reconciler.api.errors import ApiError, ErrorResponse, error_responses
from reconciler.api.freshness import ReadModelRefresher
from reconciler.projections import AmbiguousOrderError, InvalidQueryError, ReadModels
from reconciler.projections.cursors import DEFAULT_LIMIT, MAX_LIMIT
from reconciler.projections.rows import (
    CaseCount,
    CaseRow,
    DeadLetterRow,
    MoneyAt,
    MoneyOnDay,
    OpenCaseRow,
    OrderRow,
    OutcomeRow,
    Page,
    RemedyPercentiles,
    StoryEntry,
    Summary,
)

_ROLE = {"x-required-role": "viewer"}
_RESPONSES = error_responses(400, 401, 403, 422, 503)
_ORDER_RESPONSES: dict[int | str, dict[str, Any]] = {
    **error_responses(400, 401, 403, 404, 422, 503),
    409: {"model": ErrorResponse, "description": "Several shards hold the order: give `source`."},
}
_ZONE = re.compile(r"(?P<sign>[+-])(?P<hours>\d{2}):(?P<minutes>\d{2})")
_SETUP = threading.Lock()

router = APIRouter(prefix=PREFIX, tags=["finance"])


class FinanceViews:
    """The read models of an app's store, and what keeps them up to date."""

    def __init__(self, models: ReadModels, refresher: ReadModelRefresher) -> None:
        """Read through `models`, after `refresher` has caught them up."""
        self.models = models
        self.refresher = refresher


class OrderStory(BaseModel):
    """One order's story: every fact and decision about it and its payments, in log order."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    entries: list[StoryEntry]


def use_refresher(app: FastAPI, refresher: ReadModelRefresher) -> None:
    """Make the finance routes of `app` catch up with `refresher` (a warm or tuned one)."""
    context = app.state.api_context
    app.state.finance_views = FinanceViews(ReadModels(context.store), refresher)


def finance_views(request: Request, _who: ViewerAccess) -> ReadModels:
    """The app's read models, caught up with the log (at most once a second).

    It asks for a viewer itself, so that the token is checked before the catch-up: a
    caller without one gets its 401 without making the API read the log.
    """
    app = request.app
    views: FinanceViews | None = getattr(app.state, "finance_views", None)
    if views is None:
        with _SETUP:
            views = getattr(app.state, "finance_views", None)
            if views is None:
                context = api_context(request)
                views = FinanceViews(
                    ReadModels(context.store), ReadModelRefresher(context.store, context.rules)
                )
                app.state.finance_views = views
    views.refresher.refresh()
    return views.models


Views = Annotated[ReadModels, Depends(finance_views)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Rows per page.")]
Cursor = Annotated[
    str | None, Query(max_length=400, description="`next_cursor` of the previous page.")
]
Source = Annotated[
    str | None, Query(max_length=400, description="Only this shard (a file or topic:partition).")
]
Kind = Annotated[str | None, Query(max_length=64, description="Only this case kind.")]


@contextmanager
def _answering() -> Iterator[None]:
    """Turn the read models' refusals and a store that does not answer into JSON errors."""
    try:
        yield
    except InvalidQueryError as error:
        raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_query", str(error)) from None
    except PersistenceError:
        message = "the store does not answer; try again"
        raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, "store_unavailable", message) from None


@router.get(
    "/summary",
    summary="The money figures, orders by status, open cases, projection lag",
    responses=_RESPONSES,
    openapi_extra=_ROLE,
)
def summary(views: Views, _who: ViewerAccess) -> Summary:
    """SPEC rule 11's five figures over every shard, and what the front page shows."""
    with _answering():
        return views.summary()


@router.get("/orders", summary="Orders by id, filtered", responses=_RESPONSES, openapi_extra=_ROLE)
def orders(  # noqa: PLR0913 - one parameter per filter
    *,
    views: Views,
    _who: ViewerAccess,
    status: Annotated[str | None, Query(max_length=64, description="A SPEC status.")] = None,
    case: Annotated[str | None, Query(max_length=64, description="Opened this case.")] = None,
    source: Source = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[OrderRow]:
    """Orders in id order, a page at a time."""
    with _answering():
        return views.orders(status=status, case=case, source=source, limit=limit, cursor=cursor)


OrderId = Annotated[str, Path(min_length=1, max_length=128, description="The order's id.")]


@router.get(
    "/orders/{order_id}",
    summary="One order as `reconcile` reports it",
    responses=_ORDER_RESPONSES,
    openapi_extra=_ROLE,
)
def order(views: Views, _who: ViewerAccess, order_id: OrderId, source: Source = None) -> OrderRow:
    """The order's row; 404 if no shard holds it, 409 if several do and no source is given."""
    with _answering():
        try:
            found = views.order(order_id, source=source)
        except AmbiguousOrderError as error:
            raise ApiError(
                HTTPStatus.CONFLICT,
                "ambiguous_order",
                str(error),
                details={"sources": error.sources},
            ) from None
    if found is None:
        raise _no_order(order_id)
    return found


@router.get(
    "/orders/{order_id}/story",
    summary="Every fact and decision about one order, in log order",
    responses=error_responses(401, 403, 404, 422, 503),
    openapi_extra=_ROLE,
)
def story(views: Views, _who: ViewerAccess, order_id: OrderId) -> OrderStory:
    """The log's records about the order and its payments; 404 if the log has none."""
    with _answering():
        entries = views.order_story(order_id)
    if not entries:
        raise _no_order(order_id)
    return OrderStory(order_id=order_id, entries=entries)


@router.get(
    "/cases",
    summary="Open escalations, oldest first, aged on the engine clock",
    responses=_RESPONSES,
    openapi_extra=_ROLE,
)
def cases(  # noqa: PLR0913 - one parameter per filter
    *,
    views: Views,
    _who: ViewerAccess,
    kind: Kind = None,
    age_bucket: Annotated[
        str | None, Query(max_length=16, description="`<1h`, `1-6h`, `6-24h` or `>24h`.")
    ] = None,
    source: Source = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[OpenCaseRow]:
    """The open-case queue, a page at a time."""
    with _answering():
        return views.open_cases(
            kind=kind, age_bucket=age_bucket, source=source, limit=limit, cursor=cursor
        )


@router.get(
    "/cases/counts",
    summary="Open escalations by kind and age bucket, with their money",
    responses=_RESPONSES,
    openapi_extra=_ROLE,
)
def case_counts(views: Views, _who: ViewerAccess) -> list[CaseCount]:
    """One row per kind and age bucket that has open escalations."""
    with _answering():
        return views.open_case_counts()


@router.get(
    "/escalations",
    summary="Every escalation, oldest first, with its resolution",
    responses=_RESPONSES,
    openapi_extra=_ROLE,
)
def escalations(  # noqa: PLR0913 - one parameter per filter
    *,
    views: Views,
    _who: ViewerAccess,
    resolved: Annotated[
        bool | None, Query(description="true: closed ones only; false: open ones only.")
    ] = None,
    kind: Kind = None,
    source: Source = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[CaseRow]:
    """Escalations, open and closed, a page at a time."""
    with _answering():
        return views.escalations(
            resolved=resolved, kind=kind, source=source, limit=limit, cursor=cursor
        )


@router.get(
    "/money/hourly",
    summary="The money at the end of each engine-clock hour",
    responses=_RESPONSES,
    openapi_extra=_ROLE,
)
def money_hourly(
    views: Views,
    _who: ViewerAccess,
    source: Source = None,
    since: Annotated[datetime | None, Query(description="From this hour on (with offset).")] = None,
    until: Annotated[datetime | None, Query(description="Up to this hour (with offset).")] = None,
) -> list[MoneyAt]:
    """The five figures hour by hour, oldest first; hours are UTC starts."""
    with _answering():
        return views.money_by_hour(source=source, since=since, until=until)


@router.get(
    "/money/daily",
    summary="The money at the end of each day",
    responses=_RESPONSES,
    openapi_extra=_ROLE,
)
def money_daily(
    views: Views,
    _who: ViewerAccess,
    zone: Annotated[
        str, Query(max_length=16, description="The days' UTC offset, `+07:00` (WIB) or `Z`.")
    ] = "Z",
    source: Source = None,
) -> list[MoneyOnDay]:
    """Each day's figures as its last engine-clock hour closed, the day read in `zone`."""
    with _answering():
        return views.money_by_day(zone=_zone(zone), source=source)


@router.get(
    "/outcomes",
    summary="Issuance and refund commands and results, counted",
    responses=_RESPONSES,
    openapi_extra=_ROLE,
)
def outcomes(views: Views, _who: ViewerAccess, source: Source = None) -> list[OutcomeRow]:
    """Counts, stamps and rupiah by kind, outcome, reason and retryable."""
    with _answering():
        return views.outcomes(source=source)


@router.get(
    "/remedy-times",
    summary="Seconds from first debit to remedy: p50, p90, p99, longest",
    responses=_RESPONSES,
    openapi_extra=_ROLE,
)
def remedy_times(
    views: Views,
    _who: ViewerAccess,
    remedy: Annotated[
        str | None,
        Query(max_length=32, description="`FULFILLED`, `PARTIALLY_FULFILLED` or `REFUNDED`."),
    ] = None,
    source: Source = None,
) -> RemedyPercentiles:
    """Nearest-rank percentiles over every remedied order (of one remedy, if given)."""
    with _answering():
        return views.remedy_percentiles(remedy=remedy, source=source)


@router.get(
    "/dead-letters",
    summary="Input the engine could not use, with the reason",
    responses=_RESPONSES,
    openapi_extra=_ROLE,
)
def dead_letters(
    views: Views, _who: ViewerAccess, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Page[DeadLetterRow]:
    """Dead letters in the order they were kept; `preview` is the start of the raw input."""
    with _answering():
        return views.dead_letters(limit=limit, cursor=cursor)


def _no_order(order_id: str) -> ApiError:
    return ApiError(
        HTTPStatus.NOT_FOUND, "order_not_found", f"no order {order_id!r} in the read models"
    )


def _zone(text: str) -> tzinfo:
    """`Z`, `UTC` or `±HH:MM` as a fixed offset; 400 `invalid_query` otherwise.

    A `+` typed into a URL arrives as a space: ` 07:00` is read as `+07:00`.
    """
    if text.startswith(" "):
        text = "+" + text[1:]
    if text.upper() in {"Z", "UTC"}:
        return UTC
    match = _ZONE.fullmatch(text)
    if match is None:
        message = f"zone must be Z or an offset like +07:00; got {text!r}"
        raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_query", message)
    offset = timedelta(hours=int(match["hours"]), minutes=int(match["minutes"]))
    if offset >= timedelta(hours=24):
        message = f"zone offset must be under 24 hours; got {text!r}"
        raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_query", message)
    return timezone(-offset if match["sign"] == "-" else offset)
