"""`GET /api/v1/cases/open`: the escalations no one has closed yet, oldest first (viewer).

A stopgap until the finance read models serve open cases: it reads them from the log
with `reconciler.operators.open_cases` on every call. Pages are asked for with `limit`
and the previous page's `next_cursor`, as the read models' lists will be, so clients
keep working when they take over. The cursor is opaque; here it holds how many cases
came before, so a case closed while a client pages shifts the rest by one.
"""

import base64
import binascii
import json
from http import HTTPStatus
from typing import Annotated

from fastapi import APIRouter, Query

from reconciler.api.auth import ViewerAccess
from reconciler.api.context import PREFIX, Context
from reconciler.api.errors import ApiError, error_responses
from reconciler.api.models import OpenCase, OpenCasesPage
from reconciler.domain.decisions import Case
from reconciler.operators import open_cases

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
_CURSOR_KIND = "open_cases"

router = APIRouter(prefix=PREFIX, tags=["cases"])


@router.get(
    "/cases/open",
    summary="Open escalations, oldest first",
    responses=error_responses(400, 401, 403, 422, 503),
    openapi_extra={"x-required-role": "viewer"},
)
def list_open_cases(
    context: Context,
    _who: ViewerAccess,
    reason: Annotated[Case | None, Query(description="Only cases of this kind.")] = None,
    source: Annotated[
        str | None, Query(max_length=400, description="Only cases held by this shard.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Cases per page.")] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None, Query(max_length=200, description="`next_cursor` of the previous page.")
    ] = None,
) -> OpenCasesPage:
    """Open escalations, optionally of one reason or one shard, a page at a time."""
    start = _decode(cursor)
    found = [
        case
        for case in open_cases(context.store)
        if (reason is None or case.reason == reason) and (source is None or case.source == source)
    ]
    page = found[start : start + limit]
    more = start + limit < len(found)
    return OpenCasesPage(
        items=[
            OpenCase(
                escalation_id=case.escalation_id,
                reason=Case(case.reason),
                order_id=case.order_id,
                amount=case.amount,
                opened_at=case.at,
                source=case.source,
            )
            for case in page
        ],
        next_cursor=_encode(start + limit) if more else None,
    )


def _encode(offset: int) -> str:
    text = json.dumps([_CURSOR_KIND, offset], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(cursor: str | None) -> int:
    """The offset in a cursor of this list; 400 `invalid_query` for anything else."""
    if cursor is None:
        return 0
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        decoded = None
    match decoded:
        case [str(kind), int(offset)] if kind == _CURSOR_KIND and offset >= 0:
            return offset
    message = f"not a cursor of this list: {cursor[:60]!r}"
    raise ApiError(HTTPStatus.BAD_REQUEST, "invalid_query", message)
